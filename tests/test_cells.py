"""The explicit cells equal PyTorch's own modules: forward, every parameter gradient, both dtypes."""
import pytest
import torch

from gridcast.kinds import CELL_KINDS
from gridcast.nn import CELLS, GRUCell, LSTMCell, Recurrent, RNNCell

PAIRS = {"rnn": (RNNCell, torch.nn.RNNCell), "lstm": (LSTMCell, torch.nn.LSTMCell), "gru": (GRUCell, torch.nn.GRUCell)}
MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _max_diff(a, b):
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_equals_torch_cell(kind, dtype):
    torch.manual_seed(0)
    ours_cls, theirs_cls = PAIRS[kind]
    theirs = theirs_cls(3, 7).to(dtype)
    ours = ours_cls(3, 7).to(dtype)
    ours.load_state_dict(theirs.state_dict())  # contract: the same names and shapes
    x = torch.randn(5, 3, dtype=dtype)
    h = torch.randn(5, 7, dtype=dtype)
    state = (h, torch.randn(5, 7, dtype=dtype)) if kind == "lstm" else h
    out_ours, out_theirs = ours(x, state), theirs(x, state)
    outs_o = out_ours if kind == "lstm" else (out_ours,)
    outs_t = out_theirs if kind == "lstm" else (out_theirs,)
    assert _max_diff(outs_o, outs_t) <= TOL[dtype]
    loss_o = sum((o * torch.linspace(-1, 1, 7, dtype=dtype)).sum() for o in outs_o)
    loss_t = sum((o * torch.linspace(-1, 1, 7, dtype=dtype)).sum() for o in outs_t)
    loss_o.backward()
    loss_t.backward()
    for name, p in theirs.named_parameters():
        assert float((dict(ours.named_parameters())[name].grad - p.grad).abs().max()) <= TOL[dtype], name


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_state_dict_moves_both_ways(kind):
    ours_cls, theirs_cls = PAIRS[kind]
    ours = ours_cls(4, 6)
    theirs = theirs_cls(4, 6)
    theirs.load_state_dict(ours.state_dict())
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    x = torch.randn(2, 4)
    a, b = ours(x), theirs(x)
    a, b = (a[0], b[0]) if kind == "lstm" else (a, b)
    assert torch.allclose(a, b, atol=1e-6)


@torch.no_grad()
def test_gates_are_named_as_in_the_notes():
    x = torch.randn(2, 3)
    _, lstm_gates = LSTMCell(3, 4)(x, return_gates=True)
    assert set(lstm_gates) == {"input", "forget", "candidate", "output", "cell", "hidden"}
    _, gru_gates = GRUCell(3, 4)(x, return_gates=True)
    assert set(gru_gates) == {"reset", "update", "candidate", "hidden"}
    _, rnn_gates = RNNCell(3, 4)(x, return_gates=True)
    assert set(rnn_gates) == {"hidden"}
    for name in ("input", "forget", "output"):
        assert float(lstm_gates[name].min()) >= 0.0 and float(lstm_gates[name].max()) <= 1.0
    # The LSTM's cell state is the additive update the notes describe: c = f*c_prev + i*g (c_prev = 0 here).
    assert torch.allclose(lstm_gates["cell"], lstm_gates["input"] * lstm_gates["candidate"])


def test_lstm_variants_change_only_the_forget_gate():
    torch.manual_seed(1)
    base = LSTMCell(3, 4)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    for variant, expected in [("no_forget", lambda g: torch.ones_like(g["input"])), ("coupled", lambda g: 1 - g["input"])]:
        cell = LSTMCell(3, 4, variant=variant)
        cell.load_state_dict(base.state_dict())
        _, gates = cell(x, (h, c), return_gates=True)
        assert torch.allclose(gates["forget"], expected(gates))
        assert torch.allclose(gates["cell"], gates["forget"] * c + gates["input"] * gates["candidate"])


def test_bad_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 3\)"):
        LSTMCell(3, 4)(torch.randn(2, 5))


def _copy_to_torch(rec: Recurrent, module: torch.nn.Module) -> None:
    with torch.no_grad():
        for layer, cell in enumerate(rec.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, f"{name}_l{layer}").copy_(getattr(cell, name))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_stacked_sequences_equal_torch_module(kind, fused, dtype):
    torch.manual_seed(2)
    rec = Recurrent(kind, 3, 8, num_layers=2).to(dtype)
    ref = MODULES[kind](3, 8, num_layers=2, batch_first=True).to(dtype)
    _copy_to_torch(rec, ref)
    x = torch.randn(4, 6, 3, dtype=dtype)
    ours = rec(x, fused=fused)
    theirs_out, theirs_state = ref(x)
    assert float((ours.output - theirs_out).detach().abs().max()) <= TOL[dtype]
    states_o = ours.state if kind == "lstm" else (ours.state,)
    states_t = theirs_state if kind == "lstm" else (theirs_state,)
    assert _max_diff(states_o, states_t) <= TOL[dtype]
    weight = torch.randn_like(theirs_out)
    ((ours.output * weight).sum() + sum(s.sum() for s in states_o)).backward()
    ((theirs_out * weight).sum() + sum(s.sum() for s in states_t)).backward()
    for layer, cell in enumerate(rec.layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            diff = float((getattr(cell, name).grad - getattr(ref, f"{name}_l{layer}").grad).abs().max())
            assert diff <= TOL[dtype], (layer, name, diff)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_padding_never_changes_a_result(kind, fused):
    torch.manual_seed(3)
    rec = Recurrent(kind, 2, 5, num_layers=2).double()
    lengths = torch.tensor([6, 2, 4])
    seqs = [torch.randn(int(n), 2, dtype=torch.float64) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=123.0)  # garbage padding
    batch = rec(padded, lengths=lengths, fused=fused)
    for i, seq in enumerate(seqs):
        alone = rec(seq.unsqueeze(0), fused=fused)
        n = int(lengths[i])
        assert torch.allclose(batch.output[i, :n], alone.output[0], atol=1e-12)
        assert batch.output[i, n:].abs().sum().item() == 0.0
        finals_b = batch.state if kind == "lstm" else (batch.state,)
        finals_a = alone.state if kind == "lstm" else (alone.state,)
        for fb, fa in zip(finals_b, finals_a):
            assert torch.allclose(fb[:, i], fa[:, 0], atol=1e-12)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_fused_equals_explicit_with_lengths_forward_and_backward(kind):
    torch.manual_seed(4)
    rec = Recurrent(kind, 3, 6, num_layers=2, init_state="learned").double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 1, 3, 7, 5])
    outputs, grads = [], []
    for fused in (False, True):
        rec.zero_grad()
        out = rec(x, lengths=lengths, fused=fused)
        states = out.state if kind == "lstm" else (out.state,)
        (out.output.pow(2).sum() + sum(s.sum() for s in states)).backward()
        outputs.append(out.output.detach())
        grads.append({n: p.grad.clone() for n, p in rec.named_parameters()})
    assert torch.allclose(outputs[0], outputs[1], atol=1e-10)
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-10), name


def test_gates_over_a_sequence_and_step_match_forward():
    torch.manual_seed(5)
    rec = Recurrent("lstm", 2, 4)
    x = torch.randn(2, 3, 2)
    out = rec(x, return_gates=True)
    assert out.gates[0]["forget"].shape == (2, 3, 4)
    state, h = None, None
    for t in range(3):
        h, state = rec.step(x[:, t], state)
    assert torch.allclose(h, out.output[:, -1], atol=1e-6)


def test_noise_initial_state_only_while_training():
    rec = Recurrent("gru", 2, 4, init_state="noise", noise_std=0.5)
    x = torch.zeros(3, 2, 2)
    rec.train()
    assert not torch.allclose(rec(x).output, rec(x).output)
    rec.eval()
    assert torch.allclose(rec(x).output, rec(x).output)


def test_cells_are_the_cell_kinds():
    """`nn.cells.CELLS` and the torch-free `gridcast.kinds.CELL_KINDS` name the same kinds."""
    assert sorted(CELLS) == sorted(CELL_KINDS) and sorted(PAIRS) == sorted(CELL_KINDS)
