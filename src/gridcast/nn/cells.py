"""RNN, LSTM and GRU cells written gate by gate.

Each cell follows the textbook equations step for step, and keeps PyTorch's parameter layout (**contract**):
`weight_ih` (gates*H, I), `weight_hh` (gates*H, H), `bias_ih`, `bias_hh` (gates*H), with the gates
stacked in PyTorch's order (LSTM: input, forget, candidate, output; GRU: reset, update, new).
So weights move both ways::

    >>> import torch
    >>> from gridcast.nn import LSTMCell
    >>> ours, theirs = LSTMCell(3, 5), torch.nn.LSTMCell(3, 5)
    >>> ours.load_state_dict(theirs.state_dict())
    <All keys matched successfully>
    >>> x = torch.randn(2, 3)
    >>> torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-6)
    True

The notes describe each gate as a layer over ``concat(h, x)``. Splitting that one weight matrix into
an input part and a hidden part gives exactly the same numbers (``W @ [x; h] = W_ih @ x + W_hh @ h``),
and lets the input part be computed for every time step at once, outside the time loop
(`project_input`), which is where most of the explicit path's speed comes from. `step` then does one
matmul per time step and writes every gate out by name.

Where the gates live. The gate arithmetic is written four times, for speed; each copy is held equal
to these cells by a test, so a change here must be made in all four (or the tests fail):

=============================  ===========================================  ================================
implementation                 used by                                      held equal by
=============================  ===========================================  ================================
``cells.py`` (this module)     gate traces (``return_gates=True``),         ``tests/test_cells.py``
                               `Recurrent` with ``explicit_kernels=False``,  (equal to ``torch.nn.*Cell``)
                               ``insight.gates.unroll``, diagrams
``kernels.py``: `LSTMLayer`,   `Recurrent`'s explicit path without a gate   ``tests/test_fused_explicit.py``
`GRULayer`, `RNNLayer` (LSTM   request (LSTM variants, ``fused=False``);    (``test_kernels_equal_stepwise_
gates reordered o, i, f, g)    hand-written backward                        and_fused``, gradcheck)
PyTorch's fused ``_VF``        `Recurrent`'s default path for standard      ``tests/test_cells.py``
kernels (``recurrent.py``:     cells (training, prediction) and             (``test_fused_equals_explicit_
``_VF.lstm``, ``lstm_cell``..)  `Recurrent.step` (beams)                     ...``, ``test_stacked_...``)
``nextcell/streaming.py``      `StreamingPredictor` (NumPy, one step per    ``tests/test_streaming.py``
(``_PackedLayer``, sigmoid as  point)                                       (``test_each_update_equals_
tanh of halved weights)                                                     predict_next_on_the_prefix``)
=============================  ===========================================  ================================

So editing, say, the forget-gate line below changes only the paths in the first row (gate tracing,
the step-by-step explicit path and the insight experiments built on it): a standard model trains
and predicts on PyTorch's kernels, and `test_kernels_equal_stepwise_and_fused` will point at the
mismatch with `kernels.py`.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Gates = dict[str, Tensor]
LSTMState = tuple[Tensor, Tensor]


class CellBase(nn.Module):
    """Holds the four parameters of a recurrent cell, sized by the number of gate chunks (1, 3 or 4)."""

    num_chunks: int = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = self.num_chunks * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates))
            self.bias_hh = nn.Parameter(torch.empty(gates))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every parameter."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def project_input(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` for all gates at once; works on (..., I), e.g. a whole (B, T, I) sequence."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def project_hidden(self, h: Tensor) -> Tensor:
        """``W_hh h + b_hh`` for all gates at once."""
        return F.linear(h, self.weight_hh, self.bias_hh)

    def zero_state(self, batch: int, like: Tensor):
        return like.new_zeros(batch, self.hidden_size)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects input of shape (batch, {self.input_size}), got {tuple(x.shape)}")


class RNNCell(CellBase):
    r"""The plain recurrent cell: the new hidden state is ``tanh`` of the input and the old state.

    .. math:: h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    Args:
        input_size: features per input vector.
        hidden_size: size of the hidden state (the network's memory).
        nonlinearity: ``"tanh"`` (the notes' choice, bounded) or ``"relu"`` (unbounded; kept for the
            "why tanh and not ReLU?" experiment).

    Shapes: x (B, I), h (B, H) -> h' (B, H). Gates returned: ``{"hidden": h'}`` (an RNN has no gates).
    """

    num_chunks = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: Literal["tanh", "relu"] = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(self, x: Tensor, state: Tensor | None = None, return_gates: bool = False):
        self._check_input(x)
        return self.step(self.project_input(x), state, return_gates)

    def step(self, x_proj: Tensor, state: Tensor | None = None, return_gates: bool = False):
        """One time step from a pre-computed input projection ``W_ih x + b_ih``."""
        h = self.zero_state(x_proj.shape[0], x_proj) if state is None else state
        pre = x_proj + self.project_hidden(h)                      # W_ih x + b_ih + W_hh h + b_hh
        h_new = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return (h_new, {"hidden": h_new}) if return_gates else h_new


class LSTMCell(CellBase):
    r"""Long short-term memory: a cell state updated additively, read out through gates.

    .. math::
        i_t &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi})   && \text{input gate: what to write} \\
        f_t &= \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf})   && \text{forget gate: what to keep} \\
        g_t &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg})    && \text{candidate values} \\
        o_t &= \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho})   && \text{output gate} \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t               && \text{additive update} \\
        h_t &= o_t \odot \tanh(c_t)

    Args:
        input_size, hidden_size, bias: as in ``torch.nn.LSTMCell``.
        variant: ``"standard"``; ``"no_forget"`` (f = 1: the cell state only accumulates) or
            ``"coupled"`` (f = 1 - i: writing and forgetting tied together), both for the notes'
            question "isn't the forget gate redundant with the input gate?". The parameter layout is
            the same for every variant; the unused forget rows simply receive no gradient.

    Shapes: x (B, I), state (h, c) each (B, H) -> (h', c'). Gates returned:
    ``{"input", "forget", "candidate", "output", "cell", "hidden"}``.
    """

    num_chunks = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 variant: Literal["standard", "no_forget", "coupled"] = "standard") -> None:
        if variant not in ("standard", "no_forget", "coupled"):
            raise ValueError(f"variant must be 'standard', 'no_forget' or 'coupled', got {variant!r}")
        self.variant = variant
        super().__init__(input_size, hidden_size, bias)

    def zero_state(self, batch: int, like: Tensor) -> LSTMState:
        zeros = like.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    def forward(self, x: Tensor, state: LSTMState | None = None, return_gates: bool = False):
        self._check_input(x)
        return self.step(self.project_input(x), state, return_gates)

    def step(self, x_proj: Tensor, state: LSTMState | None = None, return_gates: bool = False):
        """One time step from a pre-computed input projection ``W_ih x + b_ih``."""
        h, c = self.zero_state(x_proj.shape[0], x_proj) if state is None else state
        pre = x_proj + self.project_hidden(h)       # one matmul for all four gates: W [x; h] + b
        i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
        input_gate = torch.sigmoid(i_pre)           # i = sigma(...): which values to update
        if self.variant == "standard":
            forget_gate = torch.sigmoid(f_pre)      # f = sigma(...): 0 forgets, 1 keeps
        elif self.variant == "no_forget":
            forget_gate = torch.ones_like(input_gate)
        else:
            forget_gate = 1.0 - input_gate          # coupled: forget exactly what is written
        candidate = torch.tanh(g_pre)               # g = tanh(...): new values, scaled to [-1, 1]
        output_gate = torch.sigmoid(o_pre)          # o = sigma(...): what the hidden state shows
        c_new = forget_gate * c + input_gate * candidate   # additive: the gradient highway
        h_new = output_gate * torch.tanh(c_new)
        if not return_gates:
            return h_new, c_new
        gates = {"input": input_gate, "forget": forget_gate, "candidate": candidate,
                 "output": output_gate, "cell": c_new, "hidden": h_new}
        return (h_new, c_new), gates


class GRUCell(CellBase):
    r"""Gated recurrent unit: no cell state; an update gate blends the old state with a candidate.

    .. math::
        r_t &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr})            && \text{reset gate} \\
        z_t &= \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz})            && \text{update gate} \\
        n_t &= \tanh(W_{in} x + b_{in} + r_t \odot (W_{hn} h + b_{hn})) && \text{candidate} \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    The reset gate multiplies the *projected* old state (``W_hn h + b_hn``), exactly as PyTorch and
    cuDNN do, so the weights are interchangeable with ``torch.nn.GRUCell``.

    Shapes: x (B, I), h (B, H) -> h' (B, H). Gates returned: ``{"reset", "update", "candidate", "hidden"}``.
    """

    num_chunks = 3

    def forward(self, x: Tensor, state: Tensor | None = None, return_gates: bool = False):
        self._check_input(x)
        return self.step(self.project_input(x), state, return_gates)

    def step(self, x_proj: Tensor, state: Tensor | None = None, return_gates: bool = False):
        """One time step from a pre-computed input projection ``W_ih x + b_ih``."""
        h = self.zero_state(x_proj.shape[0], x_proj) if state is None else state
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = self.project_hidden(h).chunk(3, dim=-1)
        reset_gate = torch.sigmoid(x_r + h_r)               # r: how much of the past feeds the candidate
        update_gate = torch.sigmoid(x_z + h_z)              # z: keep the old state (1) or take the new (0)
        candidate = torch.tanh(x_n + reset_gate * h_n)      # n: the proposed new state
        h_new = (1.0 - update_gate) * candidate + update_gate * h
        if not return_gates:
            return h_new
        return h_new, {"reset": reset_gate, "update": update_gate, "candidate": candidate, "hidden": h_new}


CELLS: dict[str, type[CellBase]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(kind: str, input_size: int, hidden_size: int, **options) -> CellBase:
    """Build a cell by name (``"rnn"``, ``"lstm"`` or ``"gru"``)."""
    try:
        cls = CELLS[kind]
    except KeyError:
        raise ValueError(f"unknown cell kind {kind!r}; choose one of {sorted(CELLS)}") from None
    return cls(input_size, hidden_size, **options)
