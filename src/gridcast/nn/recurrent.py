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
from torch import Tensor, _VF, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from gridcast.nn.cells import LSTMCell, RNNCell, make_cell

State = Tensor | tuple[Tensor, Tensor]
InitState = Literal["zeros", "learned", "noise"]


# ----------------------------------------------------------------------------------------------------
# Explicit whole-layer kernels: the cells' gate equations over a sequence, with a hand-written backward.
#
# Autograd over a Python time loop records ~10 small nodes per step and replays them one by one; at
# hidden 64 that bookkeeping, not arithmetic, is most of the time. Each Function below runs one layer:
# the input projection W_ih x + b for all steps in one matmul, then per step one in-place matmul
# (pre += h W_hh^T) and the gate equations of `gridcast.cells` in place in preallocated time-major
# buffers; backward is backpropagation through time written out (about six tensor ops per step) and
# one large matmul per weight at the end. Per-step views are made in bulk (``unbind``) because at
# hidden 64 creating views from Python costs as much as the arithmetic.
#
# Inputs are time-major (T, B, ...) and sorted longest first, so a ragged batch simply runs the
# first ``batch_sizes[t]`` rows at step t: finished sequences are never touched, which is exactly
# "keep the last state" (the layout of PyTorch's packed sequences).
#
# Inside the LSTM kernel the gates are stored in the order (o, i, f, g), not PyTorch's (i, f, g, o):
# forward then needs one sigmoid over 3H columns and one tanh, and backward multiplies the cell-state
# gradient into the contiguous (i, f, g) block in one op. Only the kernel's private copies of the
# weights are permuted (and their gradients permuted back); the parameters keep the contract layout.
# ----------------------------------------------------------------------------------------------------


def _steps(buffer: Tensor, batch_sizes: list[int] | None) -> list[Tensor]:
    """Per-step views of a time-major buffer, each cut to the rows running at that step."""
    views = buffer.unbind(0)
    return list(views) if batch_sizes is None else [v[:n] for v, n in zip(views, batch_sizes)]


def _ending(batch_sizes: list[int] | None, t: int, steps: int, batch: int) -> tuple[int, int]:
    """Rows ``lo:hi`` whose last step is t (sorted longest first)."""
    if batch_sizes is None:
        return (0, batch) if t == steps - 1 else (0, 0)
    return (batch_sizes[t + 1] if t + 1 < steps else 0), batch_sizes[t]


def _join_ending(carried: Tensor, final_grad: Tensor, batch_sizes: list[int] | None, t: int,
                 steps: int, rows: int) -> Tensor:
    """The first ``rows`` rows of ``carried`` (the gradient flowing back into step t), after the
    rows whose sequence ends at t take the final state's gradient ``final_grad`` as their start."""
    lo, hi = _ending(batch_sizes, t, steps, carried.shape[0])
    if hi > lo:
        carried[lo:hi] = final_grad[lo:hi]
    return carried[:rows]


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


def _zeros_if(ragged: bool):
    """Zeroed buffers when ragged (finished rows must read as zero), uninitialised otherwise."""
    return torch.zeros if ragged else torch.empty


def _project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """W x + b over all (T, B) rows at once -> a fresh (T, B, G) buffer the kernel may overwrite."""
    flat = x.reshape(-1, x.shape[-1])
    out = flat.mm(weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
    return out.view(x.shape[0], x.shape[1], weight.shape[0])


def _input_grads(ctx, x: Tensor, weight: Tensor, d_pre: Tensor, arg: int):
    """Gradients of ``x``, ``W_ih`` and the bias from the gradient of the projection (T, B, G).

    dW = (x^T g)^T rather than g^T x: the same numbers, but this machine's BLAS runs the second ~50x
    slower when x has 2 columns (20% of a training step at hidden 256).
    """
    g = d_pre.reshape(-1, d_pre.shape[-1])
    grad_x = g.mm(weight).view(x.shape) if ctx.needs_input_grad[arg] else None
    grad_w = _outer_sum(d_pre, x) if ctx.needs_input_grad[arg + 1] else None
    grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[arg + 2] else None
    return grad_x, grad_w, grad_b


def _outer_sum(grad: Tensor, inputs: Tensor) -> Tensor:
    """sum_t grad_t^T inputs_t over all (T, B) rows: the weight gradient, as (inputs^T grad)^T.

    The same numbers as grad^T inputs, but MKL runs this orientation 20-25% faster here (and up to
    50x faster when `inputs` is narrow, as x is with 2 coordinates)."""
    return inputs.reshape(-1, inputs.shape[-1]).t().mm(grad.reshape(-1, grad.shape[-1])).t()


_LSTM_LAYOUT: dict = {}


def _lstm_layout(hidden: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor, Tensor]:
    """Cached per (H, dtype, device): the row order taking PyTorch's (i, f, g, o) gate blocks to the
    kernel's (o, i, f, g), its inverse, and the (4H, 1) row scale doubling the g rows."""
    key = (hidden, dtype, str(device))
    if key not in _LSTM_LAYOUT:
        order = torch.arange(4 * hidden, device=device).view(4, hidden)[[3, 0, 1, 2]].reshape(-1)
        doubled = torch.ones(4 * hidden, 1, dtype=dtype, device=device)
        doubled[3 * hidden:] = 2.0
        _LSTM_LAYOUT[key] = (order, torch.argsort(order), doubled)
    return _LSTM_LAYOUT[key]


class LSTMLayer(torch.autograd.Function):
    """One LSTM layer over a sequence: `LSTMCell`'s equations (all three variants).

    Inputs: ``x`` (T, B, I) time-major; ``w_ih`` (4H, I); ``bias`` (4H) = b_ih + b_hh or None;
    ``h0``, ``c0`` (B, H); ``w_hh`` (4H, H); ``batch_sizes`` rows running per step (None: all);
    ``variant`` as in `LSTMCell`. Returns the hidden states (T, B, H), zero after each row's end,
    and the final h and c (B, H).
    """

    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor, w_hh: Tensor,
                batch_sizes: list[int] | None, variant: str):
        steps, batch = x.shape[0], x.shape[1]
        H = w_hh.shape[1]
        order, back, doubled = _lstm_layout(H, x.dtype, x.device)
        w_ih, w_hh = w_ih.index_select(0, order), w_hh.index_select(0, order)  # private (o, i, f, g) copies
        # g = tanh(x) is computed as 2 sigma(2x) - 1: one sigmoid then covers all four gates, and
        # PyTorch's CPU tanh costs ~4x its sigmoid per element here. The 2x lives in the g rows of
        # private, forward-only copies of the weights.
        acts = _project(x, w_ih * doubled, None if bias is None else bias.index_select(0, order) * doubled[:, 0])
        new = _zeros_if(batch_sizes is not None)
        cells = new(steps, batch, H, dtype=x.dtype, device=x.device)   # c_t
        tanh_c = torch.empty_like(cells)                                # tanh(c_t)
        out = new(steps, batch, H, dtype=x.dtype, device=x.device)     # h_t
        w_t = (w_hh * doubled).t()
        # Per-step views, made in bulk: pre-activations become activations in place.
        a_t, s_t = _steps(acts, batch_sizes), _steps(acts[..., 3 * H:], batch_sizes)
        o_t, i_t, f_t = (_steps(acts[..., k * H:(k + 1) * H], batch_sizes) for k in range(3))
        c_t, tc_t, h_t = _steps(cells, batch_sizes), _steps(tanh_c, batch_sizes), _steps(out, batch_sizes)
        hp_t = [h0] + h_t[:-1]                          # the state each step reads (its running rows)
        cp_t = [c0] + c_t[:-1]
        if batch_sizes is not None:
            hp_t = [v[:n] for v, n in zip(hp_t, batch_sizes)]
            cp_t = [v[:n] for v, n in zip(cp_t, batch_sizes)]
        standard = variant == "standard"
        for t in range(steps):
            a, i, c = a_t[t], i_t[t], c_t[t]
            a.addmm_(hp_t[t], w_t)                      # W_ih x + b + W_hh h: one matmul, all gates
            a.sigmoid_()                                # o, i, f = sigma(...); s = sigma(2 x_g)
            if not standard:
                if variant == "no_forget":
                    f_t[t].fill_(1.0)                   # f = 1: the cell only accumulates
                else:
                    torch.neg(i, out=f_t[t]).add_(1.0)  # coupled: f = 1 - i
            torch.mul(f_t[t], cp_t[t], out=c)           # c = f * c_prev
            c.addcmul_(i, s_t[t], value=2.0).sub_(i)    #     + i * g, with g = 2 s - 1 = tanh(x_g)
            torch.tanh(c, out=tc_t[t])
            torch.mul(o_t[t], tc_t[t], out=h_t[t])      # h = o * tanh(c)
        ctx.save_for_backward(x, w_ih, h0, c0, w_hh, out)
        ctx.acts, ctx.cells, ctx.tanh_c, ctx.back = acts, cells, tanh_c, back
        ctx.batch_sizes, ctx.variant, ctx.has_bias = batch_sizes, variant, bias is not None
        return out, _final(out, batch_sizes), _final(cells, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor):
        x, w_ih, h0, c0, w_hh, out = ctx.saved_tensors
        acts, cells, tanh_c, batch_sizes, variant = ctx.acts, ctx.cells, ctx.tanh_c, ctx.batch_sizes, ctx.variant
        steps, batch, gates = acts.shape
        H = gates // 4
        o, i, f, s = acts.split(H, dim=2)
        g = s * 2.0 - 1.0                                                 # the forward kept sigma(2 x_g)
        ragged = batch_sizes is not None
        # Everything that does not depend on the incoming gradient, for all steps at once:
        # dpre_o = dh * mult_o and dpre_{i,f,g} = dc * mult[:, :, 0..2], with sigma' = s - s^2, tanh' = 1 - g^2.
        mult_o = torch.addcmul(o, o, o, value=-1.0).mul_(tanh_c)          # dh/do = tanh(c)
        through_c = torch.addcmul(o, o, tanh_c * tanh_c, value=-1.0)        # dh/dc = o * tanh'(c)
        mult = acts.new_empty(steps, batch, 3, H)
        c_prev = _previous(c0, cells)
        wrote = g - c_prev if variant == "coupled" else g                 # dc/di (coupled: f = 1 - i too)
        torch.addcmul(i, i, i, value=-1.0, out=mult[:, :, 0]).mul_(wrote)
        if variant == "standard":
            torch.addcmul(f, f, f, value=-1.0, out=mult[:, :, 1]).mul_(c_prev)  # dc/df = c_prev
        else:
            mult[:, :, 1] = 0.0                                           # the variants: f has no weights' say
        torch.addcmul(i, i, g * g, value=-1.0, out=mult[:, :, 2])         # dc/dg = i
        # The gradient reaching each h_t from outside the recurrence: the output's, plus the final
        # state's at each row's last step. dh_{t-1} = outside_{t-1} + dpre_t W_hh is then one addmm.
        out_t = _steps(grad_out, batch_sizes)
        for t in range(steps):
            lo, hi = _ending(batch_sizes, t, steps, batch)
            if hi > lo:
                out_t[t] = out_t[t].clone()
                out_t[t][lo:hi] += grad_h[lo:hi]
        d_pre = _zeros_if(ragged)(steps, batch, gates, dtype=acts.dtype, device=acts.device)
        d_t, m_t, mo_t, k_t, f_t = (_steps(b, batch_sizes) for b in (d_pre, mult, mult_o, through_c, f))
        do_t = _steps(d_pre[..., :H], batch_sizes)
        difg_t = _steps(d_pre[..., H:].view(steps, batch, 3, H), batch_sizes)
        carry = variant != "no_forget"
        dh_buf = h0.new_empty(batch, H)
        dh = out_t[steps - 1]
        if not ragged:  # the common case, kept free of per-step slicing and bookkeeping
            dc = grad_c.clone()
            dc_3 = dc.unsqueeze(1)
            for t in range(steps - 1, -1, -1):
                dc.addcmul_(dh, k_t[t])                                # through h = o * tanh(c)
                torch.mul(dh, mo_t[t], out=do_t[t])                    # dpre_o
                torch.mul(m_t[t], dc_3, out=difg_t[t])                 # dpre_i, dpre_f, dpre_g
                if carry:
                    dc.mul_(f_t[t])                                    # dc_prev = dc * f
                if t > 0:                                              # dh_{t-1} = outside + dpre W_hh
                    dh = torch.addmm(out_t[t - 1], d_t[t], w_hh, out=dh_buf)
        else:
            dc = c0.new_zeros(batch, H)
            for t in range(steps - 1, -1, -1):
                n = d_t[t].shape[0]
                dct = _join_ending(dc, grad_c, batch_sizes, t, steps, n)     # rows ending at t join
                dct.addcmul_(dh, k_t[t])
                torch.mul(dh, mo_t[t], out=do_t[t])
                torch.mul(m_t[t], dct.unsqueeze(1), out=difg_t[t])
                if carry:
                    dct.mul_(f_t[t])
                if t > 0:
                    prev = out_t[t - 1]
                    torch.addmm(prev[:n], d_t[t], w_hh, out=dh_buf[:n])
                    if prev.shape[0] > n:                              # rows that end at t - 1 join
                        dh_buf[n:prev.shape[0]] = prev[n:]
                    dh = dh_buf[:prev.shape[0]]
        dh = torch.mm(d_t[0], w_hh)                                    # the gradient of h0
        back = ctx.back                                                # kernel order -> PyTorch's
        grad_x, grad_wi, grad_b = _input_grads(ctx, x, w_ih, d_pre, 0)
        grad_wh = None
        if ctx.needs_input_grad[5]:
            grad_wh = _outer_sum(d_pre, _previous(h0, out)).index_select(0, back)
        grad_wi = None if grad_wi is None else grad_wi.index_select(0, back)
        grad_b = None if grad_b is None else grad_b.index_select(0, back)
        return grad_x, grad_wi, grad_b, dh, dc, grad_wh, None, None


class GRULayer(torch.autograd.Function):
    """One GRU layer over a sequence: `GRUCell`'s equations.

    Inputs: ``x`` (T, B, I); ``w_ih`` (3H, I); ``b_ih`` (3H) or None; ``h0`` (B, H); ``w_hh`` (3H, H);
    ``b_hh`` (3H) or None (kept apart from b_ih: the reset gate multiplies W_hn h + b_hn);
    ``batch_sizes``. Returns the hidden states (T, B, H) and the final h (B, H).
    """

    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, h0: Tensor, w_hh: Tensor,
                b_hh: Tensor | None, batch_sizes: list[int] | None):
        steps, batch = x.shape[0], x.shape[1]
        H = w_hh.shape[1]
        acts = _project(x, w_ih, b_ih)                         # r, z, n pre-activations -> activations
        proj_h = torch.zeros(steps, batch, 3 * H, dtype=x.dtype, device=x.device)  # W_hh h + b_hh
        if b_hh is not None:
            proj_h += b_hh
        out = _zeros_if(batch_sizes is not None)(steps, batch, H, dtype=x.dtype, device=x.device)
        w_t = w_hh.t()
        rz_t, n_t, r_t, z_t = (_steps(acts[..., s], batch_sizes) for s in
                               (slice(0, 2 * H), slice(2 * H, 3 * H), slice(0, H), slice(H, 2 * H)))
        ph_t, phrz_t, phn_t = (_steps(proj_h[..., s], batch_sizes) for s in (slice(None), slice(0, 2 * H), slice(2 * H, 3 * H)))
        h_t = _steps(out, batch_sizes)
        h = h0
        for t in range(steps):
            n = h_t[t].shape[0]
            ph_t[t].addmm_(h[:n], w_t)                 # W_hh h + b_hh, all gates
            rz_t[t].add_(phrz_t[t]).sigmoid_()         # r, z = sigma(W_i x + b_i + W_h h + b_h)
            n_t[t].addcmul_(r_t[t], phn_t[t]).tanh_()  # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
            torch.lerp(n_t[t], h[:n], z_t[t], out=h_t[t])  # h' = (1 - z) n + z h
            h = h_t[t]
        ctx.save_for_backward(x, w_ih, h0, w_hh, out)
        ctx.acts, ctx.proj_h, ctx.batch_sizes = acts, proj_h, batch_sizes
        ctx.has_bias = b_ih is not None
        ctx.has_hidden_bias = b_hh is not None
        return out, _final(out, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor):
        x, w_ih, h0, w_hh, out = ctx.saved_tensors
        acts, proj_h, batch_sizes = ctx.acts, ctx.proj_h, ctx.batch_sizes
        steps, batch, gates = acts.shape
        H = gates // 3
        r, z, cand = acts.split(H, dim=2)
        h_prev = _previous(h0, out)
        # Gradient-free factors for all steps at once (dh is the gradient reaching h_t):
        to_n = (1 - z) * (1 - cand * cand)               # dpre_n = dh * (1 - z) * tanh'
        to_z = (h_prev - cand) * z * (1 - z)             # dpre_z = dh * (h - n) * sigma'
        to_r = proj_h[..., 2 * H:] * r * (1 - r)         # dpre_r = dpre_n * (W_hn h + b_hn) * sigma'
        new = _zeros_if(batch_sizes is not None)
        d_x = new(steps, batch, gates, dtype=acts.dtype, device=acts.device)  # gradient of W_ih x + b_ih
        d_h = new(steps, batch, gates, dtype=acts.dtype, device=acts.device)  # gradient of W_hh h + b_hh
        dxn_t, dhr_t, dhz_t, dhn_t = (_steps(b[..., s], batch_sizes) for b, s in
                                      ((d_x, slice(2 * H, None)), (d_h, slice(0, H)), (d_h, slice(H, 2 * H)), (d_h, slice(2 * H, None))))
        dh_t, tn_t, tz_t, tr_t, r_t, z_t, go_t = (_steps(b, batch_sizes) for b in (d_h, to_n, to_z, to_r, r, z, grad_out))
        dh = h0.new_zeros(batch, H)
        for t in range(steps - 1, -1, -1):
            dht = _join_ending(dh, grad_h, batch_sizes, t, steps, dh_t[t].shape[0])
            dht.add_(go_t[t])
            torch.mul(dht, tn_t[t], out=dxn_t[t])            # dpre_n
            torch.mul(dht, tz_t[t], out=dhz_t[t])            # dpre_z
            torch.mul(dxn_t[t], tr_t[t], out=dhr_t[t])       # dpre_r
            torch.mul(dxn_t[t], r_t[t], out=dhn_t[t])        # d(W_hn h + b_hn) = dpre_n * r
            dht.mul_(z_t[t]).addmm_(dh_t[t], w_hh)           # dh_prev = dh * z + dpre_h W_hh
        d_x[..., :2 * H] = d_h[..., :2 * H]                  # r and z see x and h through one sum
        grad_x, grad_wi, grad_bi = _input_grads(ctx, x, w_ih, d_x, 0)
        grad_wh = _outer_sum(d_h, h_prev) if ctx.needs_input_grad[4] else None
        grad_bh = d_h.sum((0, 1)) if ctx.has_hidden_bias and ctx.needs_input_grad[5] else None
        return grad_x, grad_wi, grad_bi, dh, grad_wh, grad_bh, None


class RNNLayer(torch.autograd.Function):
    """One plain RNN layer over a sequence: `RNNCell`'s equation, tanh or relu.

    Inputs: ``x`` (T, B, I); ``w_ih`` (H, I); ``bias`` (H) = b_ih + b_hh or None; ``h0`` (B, H);
    ``w_hh`` (H, H); ``batch_sizes``; ``relu``. Returns the hidden states (T, B, H) and the final h.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, bias: Tensor | None, h0: Tensor, w_hh: Tensor,
                batch_sizes: list[int] | None, relu: bool):
        out = _project(x, w_ih, bias)                     # pre-activations, then h in place
        w_t = w_hh.t()
        h_t = _steps(out, batch_sizes)
        h = h0
        for t in range(out.shape[0]):
            h_t[t].addmm_(h[:h_t[t].shape[0]], w_t)      # W_ih x + b + W_hh h
            h_t[t].relu_() if relu else h_t[t].tanh_()
            h = h_t[t]
        if batch_sizes is not None:                       # finished rows read as zero
            for t, n in enumerate(batch_sizes):
                out[t, n:] = 0.0
        ctx.save_for_backward(x, w_ih, h0, w_hh, out)
        ctx.batch_sizes, ctx.relu, ctx.has_bias = batch_sizes, relu, bias is not None
        return out, _final(out, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor):
        x, w_ih, h0, w_hh, out = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        steps, batch, H = out.shape
        slope = (out > 0).to(out.dtype) if ctx.relu else 1 - out * out  # f'(pre) from f(pre)
        d_pre = _zeros_if(batch_sizes is not None)(steps, batch, H, dtype=out.dtype, device=out.device)
        d_t, s_t, go_t = (_steps(b, batch_sizes) for b in (d_pre, slope, grad_out))
        dh = h0.new_zeros(batch, H)
        for t in range(steps - 1, -1, -1):
            dht = _join_ending(dh, grad_h, batch_sizes, t, steps, d_t[t].shape[0])
            dht.add_(go_t[t])
            torch.mul(dht, s_t[t], out=d_t[t])
            torch.mm(d_t[t], w_hh, out=dht)
        grad_x, grad_wi, grad_b = _input_grads(ctx, x, w_ih, d_pre, 0)
        grad_wh = _outer_sum(d_pre, _previous(h0, out)) if ctx.needs_input_grad[4] else None
        return grad_x, grad_wi, grad_b, dh, grad_wh, None, None


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

