"""`LSTMLayer` runs each step as one matmul over ``[h_{t-1} | x_t | 1]`` and takes every weight and
bias gradient from one GEMM over those rows: held here to the gate-by-gate `LSTMCell` under
autograd for each subset of inputs that asks for a gradient (the kernel computes only those), and
to refuse an in-place change of its output (a view of that buffer, which backward reads)."""
import itertools

import pytest
import torch

from gridcast.nn import LSTMCell, LSTMLayer

T, B, INPUTS, H = 5, 3, 2, 4


def _inputs(bias: bool):
    torch.manual_seed(7)
    cell = LSTMCell(INPUTS, H, bias=bias).double()
    x = torch.randn(T, B, INPUTS, dtype=torch.float64)
    h0, c0 = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    return cell, x, h0, c0


def _stepwise(cell: LSTMCell, x, h0, c0):
    """The cells' own equations, one step at a time, under autograd."""
    state, outs = (h0, c0), []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        outs.append(state[0])
    return torch.stack(outs), state[0], state[1]


def _kernel(cell: LSTMCell, x, h0, c0):
    bias = cell.bias_ih + cell.bias_hh if cell.bias else None
    return LSTMLayer.apply(x, cell.weight_ih, bias, h0, c0, cell.weight_hh, None, "standard")


def _loss(out, h, c):
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return (out * weight).sum() + (h * h).sum() + (c * c).sum()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("wanted", [w for n in range(1, 4) for w in itertools.combinations(("x", "weight_ih", "bias", "weight_hh"), n)])
def test_each_gradient_subset_equals_the_stepwise_cell(bias, wanted):
    if not bias and "bias" in wanted:
        pytest.skip("no bias to differentiate")
    grads = []
    for run in (_stepwise, _kernel):
        cell, x, h0, c0 = _inputs(bias)
        leaves = {"x": x, "weight_ih": cell.weight_ih, "weight_hh": cell.weight_hh}
        if bias:
            leaves["bias"] = cell.bias_ih
        for name, leaf in leaves.items():
            leaf.requires_grad_(name in wanted)
        if bias:
            cell.bias_hh.requires_grad_("bias" in wanted)
        outputs = run(cell, x, h0, c0)
        _loss(*outputs).backward()
        grads.append(({n: leaves[n].grad for n in wanted}, outputs[0].detach()))
    (stepwise, out_s), (kernel, out_k) = grads
    assert torch.allclose(out_s, out_k, atol=1e-12)
    for name in wanted:
        assert kernel[name] is not None, name
        assert torch.allclose(stepwise[name], kernel[name], atol=1e-10), (name, float((stepwise[name] - kernel[name]).abs().max()))


def test_changing_the_output_in_place_is_refused():
    cell, x, h0, c0 = _inputs(True)
    out, h, c = _kernel(cell, x, h0, c0)
    with pytest.raises(RuntimeError, match="inplace"):
        out.mul_(2.0)  # would corrupt the rows backward reads; torch refuses it for a Function's view outputs
