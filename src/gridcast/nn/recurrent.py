"""Stacked recurrent layers of one cell kind over batches of variable-length sequences.

Two paths share one set of parameters:

* the **explicit** path runs the gate equations of `gridcast.nn.cells` written out by us (needed for
  cell variants, gate traces and teaching). Without a gate request it runs them as whole-layer autograd
  Functions with a hand-written backward (`LSTMLayer`, `GRULayer`, `RNNLayer` in `kernels`; 2-3x faster
  than autograd over a Python time loop); with ``return_gates=True`` it calls the cells step by step;
* the **fused** path hands the very same `Parameter` objects to PyTorch's RNN kernels
  (``torch._VF.lstm/gru/rnn_tanh/rnn_relu``, what ``torch.nn.LSTM`` itself calls), with packed
  sequences for variable lengths. No weights are copied, so gradients land on the same parameters.

The fused path is taken automatically when it computes the same function (standard cells, no gate
request); the tests prove both paths equal, forward and backward.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from gridcast.nn.cells import LSTMCell, RNNCell, make_cell
from gridcast.nn.kernels import GRULayer, LSTMLayer, RNNLayer

State = Tensor | tuple[Tensor, Tensor]
InitState = Literal["zeros", "learned", "noise"]


class RecurrentOutput(NamedTuple):
    """``output`` (B, T, H) top-layer hidden states (zero after each sequence's length);
    ``state`` the final state per layer at each sequence's own length, in PyTorch's layout
    ((h, c) each (L, B, H) for LSTM, h (L, B, H) otherwise); ``gates`` per layer a dict of (B, T, H)
    tensors when requested, else None."""

    output: Tensor
    state: State
    gates: list[dict[str, Tensor]] | None = None


class Recurrent(nn.Module):
    """Layers of RNN, LSTM or GRU cells, batch first, with variable lengths.

    Args:
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        input_size, hidden_size, num_layers: as in ``torch.nn.LSTM``.
        dropout: dropout on the outputs of every layer but the last.
        init_state: ``"zeros"`` (usual), ``"learned"`` (a trained initial state per layer) or
            ``"noise"`` (Gaussian noise of std ``noise_std`` while training, zeros at evaluation:
            a regulariser for small datasets of long sequences, as in the r2rt blog's recipe).
        cell_options: passed to every cell (``nonlinearity="relu"`` for RNN, ``variant=...`` for LSTM).

    Shapes: x (B, T, I), lengths (B,) -> `RecurrentOutput`.

    Attributes:
        explicit_kernels: class-wide switch; False makes the explicit path call the cells step by step
            under autograd even without a gate request (the slow, literal version, for comparisons).

    Example:
        >>> rec = Recurrent("gru", 2, 16, num_layers=2)
        >>> out = rec(torch.randn(3, 5, 2), lengths=torch.tensor([5, 2, 4]))
        >>> out.output.shape, out.state.shape
        (torch.Size([3, 5, 16]), torch.Size([2, 3, 16]))
    """

    explicit_kernels: bool = True

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, init_state: InitState = "zeros", noise_std: float = 0.1,
                 **cell_options) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if init_state not in ("zeros", "learned", "noise"):
            raise ValueError(f"init_state must be 'zeros', 'learned' or 'noise', got {init_state!r}")
        self.kind = kind
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.init_state = init_state
        self.noise_std = float(noise_std)
        self.layers = nn.ModuleList(
            make_cell(kind, input_size if i == 0 else hidden_size, hidden_size, **cell_options)
            for i in range(num_layers)
        )
        self.between_layers = nn.Dropout(self.dropout)
        if init_state == "learned":
            self.h0 = nn.Parameter(torch.zeros(num_layers, hidden_size))
            if kind == "lstm":
                self.c0 = nn.Parameter(torch.zeros(num_layers, hidden_size))

    # ----------------------------------------------------------------------------------- state
    @property
    def is_lstm(self) -> bool:
        return self.kind == "lstm"

    def initial_state(self, batch: int, like: Tensor) -> State:
        """The state before the first step, shaped like PyTorch's (L, B, H)."""
        shape = (self.num_layers, batch, self.hidden_size)
        if self.init_state == "learned":
            h = self.h0.unsqueeze(1).expand(shape)
            return (h, self.c0.unsqueeze(1).expand(shape)) if self.is_lstm else h
        if self.init_state == "noise" and self.training:
            h = like.new_empty(shape).normal_(0.0, self.noise_std)
            return (h, like.new_empty(shape).normal_(0.0, self.noise_std)) if self.is_lstm else h
        zeros = like.new_zeros(shape)
        return (zeros, zeros) if self.is_lstm else zeros

    def _layer_state(self, state: State, layer: int):
        return (state[0][layer], state[1][layer]) if self.is_lstm else state[layer]

    def _stack_states(self, per_layer: list) -> State:
        if self.is_lstm:
            return torch.stack([s[0] for s in per_layer]), torch.stack([s[1] for s in per_layer])
        return torch.stack(per_layer)

    # ---------------------------------------------------------------------------------- checks
    def _check(self, x: Tensor, lengths: Tensor | None) -> Tensor | None:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input of shape (batch, time, {self.input_size}), got {tuple(x.shape)}")
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=x.device)
        if lengths.shape != (x.shape[0],):
            raise ValueError(f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")
        if x.shape[0] and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
            raise ValueError(f"every length must be in [1, {x.shape[1]}], got {lengths.tolist()}")
        return lengths

    def fused_available(self) -> bool:
        """True when PyTorch's kernels compute exactly what the explicit cells compute."""
        cell = self.layers[0]
        if isinstance(cell, LSTMCell):
            return cell.variant == "standard"
        return True

    # --------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, lengths: Tensor | None = None, state: State | None = None,
                return_gates: bool = False, fused: bool | None = None) -> RecurrentOutput:
        """Run all layers over a padded batch.

        Args:
            x: (B, T, I) padded inputs.
            lengths: (B,) true lengths; ``None`` means all are T. Padding never changes a result.
            state: initial state in PyTorch's layout; default from ``init_state``.
            return_gates: also return every gate activation (explicit path only).
            fused: force a path; default is fused unless gates are requested or a cell variant
                has no fused kernel.
        """
        lengths = self._check(x, lengths)
        if state is None:
            state = self.initial_state(x.shape[0], x)
        if fused is None:
            fused = not return_gates and self.fused_available()
        if fused:
            if return_gates:
                raise ValueError("gates are only available on the explicit path (fused=False)")
            if not self.fused_available():
                raise ValueError("this cell variant has no fused kernel; use fused=False")
            return self._forward_fused(x, lengths, state)
        return self._forward_explicit(x, lengths, state, return_gates)

    def _forward_explicit(self, x: Tensor, lengths: Tensor | None, state: State,
                          return_gates: bool) -> RecurrentOutput:
        if return_gates or not self.explicit_kernels or x.shape[1] == 0:
            return self._forward_stepwise(x, lengths, state, return_gates)
        return self._forward_layers(x, lengths, state)

    def _forward_layers(self, x: Tensor, lengths: Tensor | None, state: State) -> RecurrentOutput:
        """The explicit equations through `LSTMLayer` / `GRULayer` / `RNNLayer`, time-major inside."""
        batch, steps, _ = x.shape
        layer_input = x.transpose(0, 1).contiguous()  # (T, B, I): each step's rows contiguous
        order, batch_sizes = None, None
        if lengths is not None and bool((lengths != steps).any()):
            order = torch.argsort(lengths, descending=True, stable=True)  # longest first, like packing
            running = lengths.index_select(0, order).unsqueeze(0) > torch.arange(steps, device=x.device).unsqueeze(1)
            batch_sizes = running.sum(1).tolist()
            layer_input = layer_input.index_select(1, order)
            # Padding never reaches a result, but 0 * NaN would reach dW_ih: clear it.
            layer_input = layer_input.masked_fill(~running.unsqueeze(-1), 0.0)
            state = tuple(s.index_select(1, order) for s in state) if self.is_lstm else state.index_select(1, order)
        finals = []
        for index, cell in enumerate(self.layers):
            s = self._layer_state(state, index)
            if self.kind == "lstm":
                bias = cell.bias_ih + cell.bias_hh if cell.bias else None
                out, h, c = LSTMLayer.apply(layer_input, cell.weight_ih, bias, s[0].contiguous(), s[1].contiguous(),
                                            cell.weight_hh, batch_sizes, cell.variant)
                finals.append((h, c))
            elif self.kind == "gru":
                out, h = GRULayer.apply(layer_input, cell.weight_ih, cell.bias_ih, s.contiguous(), cell.weight_hh,
                                        cell.bias_hh, batch_sizes)
                finals.append(h)
            else:
                bias = cell.bias_ih + cell.bias_hh if cell.bias else None
                out, h = RNNLayer.apply(layer_input, cell.weight_ih, bias, s.contiguous(), cell.weight_hh,
                                        batch_sizes, cell.nonlinearity == "relu")
                finals.append(h)
            layer_input = self.between_layers(out) if index < self.num_layers - 1 else out
        output, final = layer_input.transpose(0, 1).contiguous(), self._stack_states(finals)
        if order is not None:
            unorder = torch.argsort(order)
            output = output.index_select(0, unorder)
            final = tuple(s.index_select(1, unorder) for s in final) if self.is_lstm else final.index_select(1, unorder)
        return RecurrentOutput(output, final)

    def _forward_stepwise(self, x: Tensor, lengths: Tensor | None, state: State,
                          return_gates: bool) -> RecurrentOutput:
        """The cells' own `step`, one time step at a time under autograd: needed for gate traces."""
        batch, steps, _ = x.shape
        ragged = lengths is not None and bool((lengths != steps).any())
        masks = (torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1) if ragged else None
        layer_input, final, all_gates = x, [], []
        for index, cell in enumerate(self.layers):
            x_proj = cell.project_input(layer_input)  # hoisted out of the time loop: (B, T, gates*H)
            s = self._layer_state(state, index)
            outputs, gate_steps = [], []
            for t in range(steps):
                result = cell.step(x_proj[:, t], s, return_gates)
                new, gates = result if return_gates else (result, None)
                if ragged:
                    keep = masks[t]  # sequences that have ended keep their last state
                    new = tuple(torch.where(keep, n, o) for n, o in zip(new, s)) if self.is_lstm else torch.where(keep, new, s)
                s = new
                h = s[0] if self.is_lstm else s
                outputs.append(h * keep if ragged else h)
                if gates is not None:
                    gate_steps.append(gates)
            layer_output = torch.stack(outputs, dim=1)
            final.append(s)
            if return_gates:
                all_gates.append({name: torch.stack([g[name] for g in gate_steps], dim=1) for name in gate_steps[0]})
            layer_input = self.between_layers(layer_output) if index < self.num_layers - 1 else layer_output
        return RecurrentOutput(layer_input, self._stack_states(final), all_gates if return_gates else None)

    def flat_weights(self) -> list[Tensor]:
        """Parameters in the order PyTorch's kernels expect: per layer w_ih, w_hh, b_ih, b_hh."""
        weights = []
        for cell in self.layers:
            weights += [cell.weight_ih, cell.weight_hh]
            if cell.bias:
                weights += [cell.bias_ih, cell.bias_hh]
        return weights

    def _kernel(self):
        if self.kind == "lstm":
            return _VF.lstm
        if self.kind == "gru":
            return _VF.gru
        first = self.layers[0]
        return _VF.rnn_relu if isinstance(first, RNNCell) and first.nonlinearity == "relu" else _VF.rnn_tanh

    def _cell_kernel(self):
        if self.kind == "lstm":
            return _VF.lstm_cell
        if self.kind == "gru":
            return _VF.gru_cell
        first = self.layers[0]
        return _VF.rnn_relu_cell if isinstance(first, RNNCell) and first.nonlinearity == "relu" else _VF.rnn_tanh_cell

    def _forward_fused(self, x: Tensor, lengths: Tensor | None, state: State) -> RecurrentOutput:
        kernel, weights = self._kernel(), self.flat_weights()
        bias = self.layers[0].bias
        dropout, training = self.dropout, self.training
        hx = tuple(s.contiguous() for s in state) if self.is_lstm else state.contiguous()
        if lengths is None:
            result = kernel(x, hx, weights, bias, self.num_layers, dropout, training, False, True)
            output, final = result[0], (result[1], result[2]) if self.is_lstm else result[1]
            return RecurrentOutput(output, final)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        hx = tuple(s.index_select(1, order) for s in hx) if self.is_lstm else hx.index_select(1, order)
        result = kernel(packed.data, packed.batch_sizes, hx, weights, bias, self.num_layers, dropout, training, False)
        out = PackedSequence(result[0], packed.batch_sizes, order, unorder)
        output, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        if self.is_lstm:
            final = (result[1].index_select(1, unorder), result[2].index_select(1, unorder))
        else:
            final = result[1].index_select(1, unorder)
        return RecurrentOutput(output, final)

    # ------------------------------------------------------------------------------ streaming
    @torch.no_grad()
    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step for a batch of (B, I) inputs through every layer: rollout and streaming."""
        if state is None:
            state = self.initial_state(x.shape[0], x)
        kernel = self._cell_kernel() if self.fused_available() else None
        new_states, layer_input = [], x
        for index, cell in enumerate(self.layers):
            s = self._layer_state(state, index)
            if kernel is None:
                s = cell.step(cell.project_input(layer_input), s)
            else:  # what torch.nn.LSTMCell & co. call: the same numbers, a few ops fewer
                s = kernel(layer_input, s, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            new_states.append(s)
            layer_input = s[0] if self.is_lstm else s
        return layer_input, self._stack_states(new_states)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, layers={self.num_layers}, init_state={self.init_state!r}"

