"""Stacked recurrent layers of one cell kind over batches of variable-length sequences.

Two paths share one set of parameters:

* the **explicit** path runs the gate equations of `gridcast.cells` written out by us (needed for
  cell variants, gate traces and teaching). Without a gate request it runs them as whole-layer autograd
  Functions with a hand-written backward (`LSTMLayer`, `GRULayer`, `RNNLayer` below; 2-3x faster
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
import torch.nn.functional as F
from torch import Tensor, _VF, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .cells import LSTMCell, RNNCell, make_cell

State = Tensor | tuple[Tensor, Tensor]
InitState = Literal["zeros", "learned", "noise"]


# ----------------------------------------------------------------------------------------------------
# Explicit whole-layer kernels: the cells' gate equations over a sequence, with a hand-written backward.
#
# Autograd over a Python time loop records ~10 small nodes per step and replays them one by one; at
# hidden 64 that bookkeeping, not arithmetic, is most of the time. These Functions run the same
# equations as `gridcast.cells` into preallocated time-major buffers, keep the activations, and do
# backpropagation through time by hand: about six tensor ops per step each way, plus one large
# matmul for dW_hh over all steps at the end. Inputs are time-major (T, B, ...) so each step's rows
# are one contiguous block, and sorted longest first so that a ragged batch simply runs the first
# ``batch_sizes[t]`` rows at step t: finished sequences are never touched, which is exactly "keep the
# last state" (the layout of PyTorch's packed sequences). The input projection W_ih x + b stays
# outside, under ordinary autograd, computed for all steps at once.
# ----------------------------------------------------------------------------------------------------


def _rows(batch_sizes: list[int] | None, t: int, batch: int) -> int:
    """How many (sorted) rows are still running at step t."""
    return batch if batch_sizes is None else batch_sizes[t]


def _ending(batch_sizes: list[int] | None, t: int, steps: int, batch: int) -> tuple[int, int]:
    """Rows ``lo:hi`` whose last step is t (sorted longest first)."""
    if batch_sizes is None:
        return (0, batch) if t == steps - 1 else (0, 0)
    return (batch_sizes[t + 1] if t + 1 < steps else 0), batch_sizes[t]


def _final(seq: Tensor, batch_sizes: list[int] | None) -> Tensor:
    """Each row's value at its own last step, from a time-major (T, B, H) buffer."""
    if batch_sizes is None:
        return seq[-1].clone()
    final = seq.new_empty(seq.shape[1:])
    for t in range(seq.shape[0]):
        lo, hi = _ending(batch_sizes, t, seq.shape[0], seq.shape[1])
        if hi > lo:
            final[lo:hi] = seq[t, lo:hi]
    return final


def _previous(first: Tensor, seq: Tensor) -> Tensor:
    """(T, B, H) values at t-1: the initial value, then the sequence shifted by one step."""
    return torch.cat([first.unsqueeze(0), seq[:-1]])


def _buffers(like: Tensor, ragged: bool):
    """Zeroed buffers when ragged (finished rows must read as zero), uninitialised otherwise."""
    return like.new_zeros if ragged else like.new_empty


class InputProjection(torch.autograd.Function):
    """``W_ih x + b`` for all steps at once: F.linear with a backward that orients dW well.

    Autograd's F.linear computes dW = g^T x, a (gates, T*B) x (T*B, I) product that this machine's
    BLAS runs ~50x slower than the equal (x^T g)^T when I is tiny (2 coordinates); here that was
    20% of a training step at hidden 256.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None):
        flat = x.reshape(-1, x.shape[-1])
        out = flat.mm(weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
        ctx.save_for_backward(flat, weight)
        ctx.in_shape, ctx.has_bias = x.shape, bias is not None
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        flat, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        grad_x = g.mm(weight).view(ctx.in_shape) if ctx.needs_input_grad[0] else None
        grad_w = flat.t().mm(g).t().contiguous() if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class LSTMLayer(torch.autograd.Function):
    """One LSTM layer over a sequence (`LSTMCell`'s equations, all three variants).

    Inputs: ``xg`` (T, B, 4H) = W_ih x + b_ih + b_hh; ``h0``, ``c0`` (B, H); ``w_hh`` (4H, H);
    ``batch_sizes`` rows running per step (None: all); ``variant`` as in `LSTMCell`.
    Returns the hidden states (T, B, H) (zero after each row's end) and the final h, c (B, H).
    """

    @staticmethod
    def forward(ctx, xg: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor,
                batch_sizes: list[int] | None, variant: str):
        steps, batch, gates = xg.shape
        hidden = gates // 4
        g_ = slice(2 * hidden, 3 * hidden)
        new = _buffers(xg, batch_sizes is not None)
        acts = new(steps, batch, gates)     # i, f, g, o after their nonlinearities
        cells = new(steps, batch, hidden)   # c_t
        tanh_c = new(steps, batch, hidden)  # tanh(c_t)
        out = new(steps, batch, hidden)     # h_t
        pre = xg.new_empty(batch, gates)
        w_t = w_hh.t()
        h, c = h0, c0
        for t in range(steps):
            n = _rows(batch_sizes, t, batch)
            p, a = pre[:n], acts[t, :n]
            torch.addmm(xg[t, :n], h[:n], w_t, out=p)  # W_ih x + b + W_hh h: one matmul, all gates
            torch.sigmoid(p[:, :g_.start], out=a[:, :g_.start])  # i, f = sigma(...)
            torch.tanh(p[:, g_], out=a[:, g_])                   # g = tanh(...)
            torch.sigmoid(p[:, g_.stop:], out=a[:, g_.stop:])    # o = sigma(...)
            i, f, g, o = a.chunk(4, 1)
            if variant == "no_forget":
                f.fill_(1.0)                             # f = 1: the cell only accumulates
            elif variant == "coupled":
                torch.neg(i, out=f).add_(1.0)            # f = 1 - i
            ct = cells[t, :n]
            torch.mul(f, c[:n], out=ct)                  # c = f * c_prev + i * g
            ct.addcmul_(i, g)
            torch.tanh(ct, out=tanh_c[t, :n])
            torch.mul(o, tanh_c[t, :n], out=out[t, :n])  # h = o * tanh(c)
            h, c = out[t], cells[t]
        ctx.save_for_backward(h0, c0, w_hh, out)
        ctx.acts, ctx.cells, ctx.tanh_c = acts, cells, tanh_c
        ctx.batch_sizes, ctx.variant = batch_sizes, variant
        return out, _final(out, batch_sizes), _final(cells, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor):
        h0, c0, w_hh, out = ctx.saved_tensors
        acts, cells, tanh_c, batch_sizes, variant = ctx.acts, ctx.cells, ctx.tanh_c, ctx.batch_sizes, ctx.variant
        steps, batch, gates = acts.shape
        hidden = gates // 4
        i, f, g, o = acts.chunk(4, 2)
        c_prev = _previous(c0, cells)
        # Everything that does not depend on the incoming gradient, for all steps at once:
        # dpre_{i,f,g} = dc * mult[:, :, 0..2] and dpre_o = dh * mult_o, with sigma' = s(1-s), tanh' = 1-g^2.
        wrote = g - c_prev if variant == "coupled" else g     # dc/di (coupled: f = 1 - i too)
        mult_i = wrote * i * (1 - i)
        mult_f = c_prev * f * (1 - f) if variant == "standard" else None  # dc/df = c_prev (variants: none)
        mult_g = i * (1 - g * g)                               # dc/dg = i
        mult_o = tanh_c * o * (1 - o)                          # dh/do = tanh(c)
        through_c = o * (1 - tanh_c * tanh_c)                  # dh/dc = o * tanh'(c)
        d_pre = _buffers(acts, batch_sizes is not None or mult_f is None)(steps, batch, gates)
        dh, dc = h0.new_zeros(batch, hidden), c0.new_zeros(batch, hidden)
        for t in range(steps - 1, -1, -1):
            n = _rows(batch_sizes, t, batch)
            lo, hi = _ending(batch_sizes, t, steps, batch)
            if hi > lo:  # rows whose last step is t start with the final state's gradient
                dh[lo:hi], dc[lo:hi] = grad_h[lo:hi], grad_c[lo:hi]
            dht, dct, d = dh[:n], dc[:n], d_pre[t, :n]
            dht.add_(grad_out[t, :n])
            dct.addcmul_(dht, through_c[t, :n])
            torch.mul(dct, mult_i[t, :n], out=d[:, :hidden])  # four plain products: a broadcast
            if mult_f is not None:                              # one into a strided view is 3x slower
                torch.mul(dct, mult_f[t, :n], out=d[:, hidden:2 * hidden])
            torch.mul(dct, mult_g[t, :n], out=d[:, 2 * hidden:3 * hidden])
            torch.mul(dht, mult_o[t, :n], out=d[:, 3 * hidden:])
            if variant != "no_forget":
                dct.mul_(f[t, :n])                      # dc_prev = dc * f
            torch.mm(d, w_hh, out=dht)                  # dh_prev = dpre @ W_hh
        grad_w = None
        if ctx.needs_input_grad[3]:
            grad_w = d_pre.reshape(-1, gates).t().mm(_previous(h0, out).reshape(-1, hidden))
        return d_pre, dh, dc, grad_w, None, None


class GRULayer(torch.autograd.Function):
    """One GRU layer over a sequence (`GRUCell`'s equations).

    Inputs: ``xg`` (T, B, 3H) = W_ih x + b_ih; ``h0`` (B, H); ``w_hh`` (3H, H); ``b_hh`` (3H) or None
    (it cannot be folded into ``xg``: the reset gate multiplies W_hn h + b_hn); ``batch_sizes``.
    Returns the hidden states (T, B, H) and the final h (B, H).
    """

    @staticmethod
    def forward(ctx, xg: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, batch_sizes: list[int] | None):
        steps, batch, gates = xg.shape
        hidden = gates // 3
        rz, n_ = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
        new = _buffers(xg, batch_sizes is not None)
        acts = new(steps, batch, gates)   # r, z, n after their nonlinearities
        proj_h = new(steps, batch, gates)  # W_hh h + b_hh
        out = new(steps, batch, hidden)
        w_t = w_hh.t()
        h = h0
        for t in range(steps):
            n = _rows(batch_sizes, t, batch)
            a, ph, x = acts[t, :n], proj_h[t, :n], xg[t, :n]
            if b_hh is None:
                torch.mm(h[:n], w_t, out=ph)
            else:
                torch.addmm(b_hh, h[:n], w_t, out=ph)             # W_hh h + b_hh, all gates
            torch.add(x[:, rz], ph[:, rz], out=a[:, rz])
            a[:, rz].sigmoid_()                                    # r, z = sigma(...)
            torch.addcmul(x[:, n_], a[:, :hidden], ph[:, n_], out=a[:, n_])
            a[:, n_].tanh_()                                       # n = tanh(x_n + r * (W_hn h + b_hn))
            cand, h_new = a[:, n_], out[t, :n]
            torch.sub(h[:n], cand, out=h_new)                     # h' = (1 - z) n + z h = n + z (h - n)
            h_new.mul_(a[:, hidden:2 * hidden]).add_(cand)
            h = out[t]
        ctx.save_for_backward(h0, w_hh, out)
        ctx.acts, ctx.proj_h, ctx.batch_sizes, ctx.has_bias = acts, proj_h, batch_sizes, b_hh is not None
        return out, _final(out, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor):
        h0, w_hh, out = ctx.saved_tensors
        acts, proj_h, batch_sizes = ctx.acts, ctx.proj_h, ctx.batch_sizes
        steps, batch, gates = acts.shape
        hidden = gates // 3
        r, z, cand = acts.chunk(3, 2)
        h_prev = _previous(h0, out)
        # Gradient-free factors for all steps at once (dh is the gradient reaching h_t):
        to_n = (1 - z) * (1 - cand * cand)       # dpre_n = dh * (1 - z) * tanh'
        to_z = (h_prev - cand) * z * (1 - z)     # dpre_z = dh * (h - n) * sigma'
        to_r = proj_h[..., 2 * hidden:] * r * (1 - r)  # dpre_r = dpre_n * (W_hn h + b_hn) * sigma'
        new = _buffers(acts, batch_sizes is not None)
        d_x = new(steps, batch, gates)            # gradient of W_ih x + b_ih
        d_h = new(steps, batch, gates)            # gradient of W_hh h + b_hh
        dh = h0.new_zeros(batch, hidden)
        for t in range(steps - 1, -1, -1):
            n = _rows(batch_sizes, t, batch)
            lo, hi = _ending(batch_sizes, t, steps, batch)
            if hi > lo:
                dh[lo:hi] = grad_h[lo:hi]
            dht, dx, dp = dh[:n], d_x[t, :n], d_h[t, :n]
            dht.add_(grad_out[t, :n])
            torch.mul(dht, to_n[t, :n], out=dx[:, 2 * hidden:])
            torch.mul(dht, to_z[t, :n], out=dp[:, hidden:2 * hidden])
            torch.mul(dx[:, 2 * hidden:], to_r[t, :n], out=dp[:, :hidden])
            torch.mul(dx[:, 2 * hidden:], r[t, :n], out=dp[:, 2 * hidden:])
            dht.mul_(z[t, :n]).addmm_(dp, w_hh)   # dh_prev = dh * z + dpre_h @ W_hh
        d_x[..., :2 * hidden] = d_h[..., :2 * hidden]  # r and z see x and h through the same sum
        grad_w = d_h.reshape(-1, gates).t().mm(h_prev.reshape(-1, hidden)) if ctx.needs_input_grad[2] else None
        grad_b = d_h.sum((0, 1)) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return d_x, dh, grad_w, grad_b, None


class RNNLayer(torch.autograd.Function):
    """One plain RNN layer over a sequence (`RNNCell`'s equation, tanh or relu).

    Inputs: ``xg`` (T, B, H) = W_ih x + b_ih + b_hh; ``h0`` (B, H); ``w_hh`` (H, H); ``batch_sizes``;
    ``relu``. Returns the hidden states (T, B, H) and the final h (B, H).
    """

    @staticmethod
    def forward(ctx, xg: Tensor, h0: Tensor, w_hh: Tensor, batch_sizes: list[int] | None, relu: bool):
        steps, batch, hidden = xg.shape
        out = _buffers(xg, batch_sizes is not None)(steps, batch, hidden)
        w_t = w_hh.t()
        h = h0
        for t in range(steps):
            n = _rows(batch_sizes, t, batch)
            h_new = out[t, :n]
            torch.addmm(xg[t, :n], h[:n], w_t, out=h_new)  # W_ih x + b + W_hh h
            h_new.relu_() if relu else h_new.tanh_()
            h = out[t]
        ctx.save_for_backward(h0, w_hh, out)
        ctx.batch_sizes, ctx.relu = batch_sizes, relu
        return out, _final(out, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor):
        h0, w_hh, out = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        steps, batch, hidden = out.shape
        slope = (out > 0).to(out.dtype) if ctx.relu else 1 - out * out  # f'(pre) from f(pre)
        d_pre = _buffers(out, batch_sizes is not None)(steps, batch, hidden)
        dh = h0.new_zeros(batch, hidden)
        for t in range(steps - 1, -1, -1):
            n = _rows(batch_sizes, t, batch)
            lo, hi = _ending(batch_sizes, t, steps, batch)
            if hi > lo:
                dh[lo:hi] = grad_h[lo:hi]
            dht = dh[:n]
            dht.add_(grad_out[t, :n])
            torch.mul(dht, slope[t, :n], out=d_pre[t, :n])
            torch.mm(d_pre[t, :n], w_hh, out=dht)
        grad_w = d_pre.reshape(-1, hidden).t().mm(_previous(h0, out).reshape(-1, hidden)) if ctx.needs_input_grad[2] else None
        return d_pre, dh, grad_w, None, None


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
            a regulariser for small datasets of long sequences, as in the seed notes' r2rt link).
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
            state = tuple(s.index_select(1, order) for s in state) if self.is_lstm else state.index_select(1, order)
        finals = []
        for index, cell in enumerate(self.layers):
            s = self._layer_state(state, index)
            if self.kind == "lstm":
                bias = cell.bias_ih + cell.bias_hh if cell.bias else None
                xg = InputProjection.apply(layer_input, cell.weight_ih, bias)  # hoisted: all steps in one matmul
                out, h, c = LSTMLayer.apply(xg, s[0].contiguous(), s[1].contiguous(), cell.weight_hh,
                                            batch_sizes, cell.variant)
                finals.append((h, c))
            elif self.kind == "gru":
                xg = InputProjection.apply(layer_input, cell.weight_ih, cell.bias_ih)
                out, h = GRULayer.apply(xg, s.contiguous(), cell.weight_hh, cell.bias_hh, batch_sizes)
                finals.append(h)
            else:
                bias = cell.bias_ih + cell.bias_hh if cell.bias else None
                xg = InputProjection.apply(layer_input, cell.weight_ih, bias)
                out, h = RNNLayer.apply(xg, s.contiguous(), cell.weight_hh, batch_sizes, cell.nonlinearity == "relu")
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

