"""The three paths of `Recurrent` compute one function: the stepwise cells (autograd over a time
loop), the explicit whole-layer kernels (hand-written backward) and PyTorch's fused kernels.

Forward values, final states and every parameter gradient are compared, for every cell kind,
ragged lengths, learned initial states, stacked layers and the LSTM variants; `gradcheck` checks the
hand-written backward against finite differences.
"""
import pytest
import torch

from gridcast.nn import GRULayer, LSTMLayer, Recurrent, RNNLayer

KINDS = ["rnn", "lstm", "gru"]


def _run(rec: Recurrent, x, lengths, *, fused: bool, stepwise: bool = False, state=None):
    """Output, final states and parameter gradients of one path, from the same weighted loss."""
    rec.zero_grad()
    saved = Recurrent.explicit_kernels
    Recurrent.explicit_kernels = not stepwise
    try:
        out = rec(x, lengths=lengths, fused=fused, state=state)
    finally:
        Recurrent.explicit_kernels = saved
    states = out.state if rec.is_lstm else (out.state,)
    weight = torch.linspace(-1, 1, out.output.numel(), dtype=x.dtype).view_as(out.output)
    ((out.output * weight).sum() + sum((s * s).sum() for s in states)).backward()
    grads = {n: p.grad.clone() for n, p in rec.named_parameters()}
    return out.output.detach(), [s.detach() for s in states], grads


def _assert_same(a, b, atol):
    out_a, states_a, grads_a = a
    out_b, states_b, grads_b = b
    assert torch.allclose(out_a, out_b, atol=atol), float((out_a - out_b).abs().max())
    for sa, sb in zip(states_a, states_b):
        assert torch.allclose(sa, sb, atol=atol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=atol), (name, float((grads_a[name] - grads_b[name]).abs().max()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ragged", [False, True])
def test_kernels_equal_stepwise_and_fused(kind, ragged):
    torch.manual_seed(10)
    rec = Recurrent(kind, 3, 6, num_layers=2, init_state="learned").double()
    with torch.no_grad():
        rec.h0.normal_()
        if kind == "lstm":
            rec.c0.normal_()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([3, 7, 1, 7, 5]) if ragged else None
    kernels = _run(rec, x, lengths, fused=False)
    _assert_same(kernels, _run(rec, x, lengths, fused=False, stepwise=True), 1e-10)
    _assert_same(kernels, _run(rec, x, lengths, fused=True), 1e-10)


@pytest.mark.parametrize("variant", ["no_forget", "coupled"])
@pytest.mark.parametrize("ragged", [False, True])
def test_lstm_variants_kernels_equal_stepwise(variant, ragged):
    torch.manual_seed(11)
    rec = Recurrent("lstm", 2, 5, num_layers=2, variant=variant).double()
    assert not rec.fused_available()
    x = torch.randn(4, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4, 1]) if ragged else None
    kernels = _run(rec, x, lengths, fused=False)
    _assert_same(kernels, _run(rec, x, lengths, fused=False, stepwise=True), 1e-10)
    assert rec(x, lengths=lengths).output.shape == (4, 6, 5)  # default path falls back to explicit


@pytest.mark.parametrize("kind", KINDS)
def test_kernels_without_bias_and_relu(kind):
    torch.manual_seed(12)
    options = {"nonlinearity": "relu"} if kind == "rnn" else {}
    rec = Recurrent(kind, 3, 4, bias=False, **options).double()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 4])
    _assert_same(_run(rec, x, lengths, fused=False), _run(rec, x, lengths, fused=True), 1e-10)
    _assert_same(_run(rec, x, lengths, fused=False), _run(rec, x, lengths, fused=False, stepwise=True), 1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_kernels_match_torch_modules(kind):
    torch.manual_seed(13)
    rec = Recurrent(kind, 2, 16)
    ref = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](2, 16, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, f"{name}_l0").copy_(getattr(rec.layers[0], name))
    x = torch.randn(8, 12, 2)
    ours = rec(x, fused=False)
    theirs, _ = ref(x)
    assert torch.allclose(ours.output, theirs, atol=1e-5)
    ours.output.pow(2).sum().backward()
    theirs.pow(2).sum().backward()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.allclose(getattr(rec.layers[0], name).grad, getattr(ref, f"{name}_l0").grad, atol=1e-4), name


def test_initial_state_and_input_gradients_flow():
    torch.manual_seed(14)
    rec = Recurrent("lstm", 3, 4).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    grads = []
    for fused in (False, True):
        for t in (x, h0, c0):
            t.grad = None
        rec(x, lengths=torch.tensor([5, 3]), state=(h0, c0), fused=fused).output.sum().backward()
        grads.append([t.grad.clone() for t in (x, h0, c0)])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_of_the_hand_written_backward(kind):
    torch.manual_seed(15)
    hidden, inputs, gates = 3, 2, {"rnn": 1, "lstm": 4, "gru": 3}[kind] * 3

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    x, w_ih, b, h0, w_hh, b_hh = rand(4, 3, inputs), rand(gates, inputs), rand(gates), rand(3, hidden), rand(gates, hidden), rand(gates)
    for sizes in (None, [3, 2, 2, 1]):  # equal lengths; rows sorted longest first with lengths 4, 3, 1
        if kind == "lstm":
            c0 = rand(3, hidden)
            for variant in ("standard", "no_forget", "coupled"):
                fn = lambda *a: LSTMLayer.apply(*a, sizes, variant)  # noqa: E731
                assert torch.autograd.gradcheck(fn, (x, w_ih, b, h0, c0, w_hh))
        elif kind == "gru":
            assert torch.autograd.gradcheck(lambda *a: GRULayer.apply(*a, sizes), (x, w_ih, b, h0, w_hh, b_hh))
        else:
            for relu in (False, True):
                assert torch.autograd.gradcheck(lambda *a: RNNLayer.apply(*a, sizes, relu), (x, w_ih, b, h0, w_hh))


def test_outputs_after_each_length_are_zero_and_padding_is_ignored():
    torch.manual_seed(16)
    rec = Recurrent("gru", 2, 4)
    x = torch.randn(3, 6, 2)
    lengths = torch.tensor([2, 6, 4])
    out = rec(x, lengths=lengths, fused=False)
    x2 = x.clone()
    x2[0, 2:] = 1e3
    x2[2, 4:] = float("nan")
    x2.requires_grad_(True)
    out2 = rec(x2, lengths=lengths, fused=False)
    assert torch.equal(out.output, out2.output)
    out2.output.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in rec.parameters())
    assert x2.grad[0, 2:].abs().sum() == 0 and torch.isfinite(x2.grad).all()
    assert out.output[0, 2:].abs().sum() == 0 and out.output[2, 4:].abs().sum() == 0
