"""Explicit whole-layer kernels: the cells' gate equations over a sequence, with a hand-written backward.

Autograd over a Python time loop records ~10 small nodes per step and replays them one by one; at
hidden 64 that bookkeeping, not arithmetic, is most of the time. Each Function below runs one layer
with one matmul per step and the gate equations of `gridcast.nn.cells` in place in preallocated
time-major buffers (GRU and RNN: the input projection W_ih x + b for all steps in one matmul, then
pre += h W_hh^T per step; LSTM: the notes' one layer over ``[h; x; 1]``, see `LSTMLayer`); backward
is backpropagation through time written out (about five tensor ops per step) and one large matmul
per weight at the end. Per-step views are made in bulk (``unbind``) because at
hidden 64 creating views from Python costs as much as the arithmetic.

Inputs are time-major (T, B, ...) and sorted longest first, so a ragged batch simply runs the
first ``batch_sizes[t]`` rows at step t: finished sequences are never touched, which is exactly
"keep the last state" (the layout of PyTorch's packed sequences).

Inside the LSTM kernel the gates are stored in the order (o, i, f, g), not PyTorch's (i, f, g, o):
forward then needs one sigmoid over 3H columns and one tanh, and backward multiplies the cell-state
gradient into the contiguous (i, f, g) block in one op. Only the kernel's private copies of the
weights are permuted (and their gradients permuted back); the parameters keep the contract layout.

`Recurrent` (in `recurrent`) calls these for its explicit path without a gate request;
`tests/test_fused_explicit.py` holds them equal to the cells and to the fused path, forward and backward.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


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

    Each step is the notes' single layer over ``concat(h, x)``: the kernel keeps one time-major
    buffer ``hx`` whose row t is ``[h_{t-1} | x_t | 1]`` (x and the ones written once, each h_t
    written by its step), so a step is one matmul against ``[W_hh | W_ih | b]``. Compared with
    projecting x for all steps first, this drops a (T, B, 4H) pass of a GEMM with K = I (2 here),
    which MKL runs at a few GFLOP/s on some CPUs, and the bias broadcast; backward then gets every
    weight and bias gradient from one GEMM, ``hx^T d_pre``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor, w_hh: Tensor,
                batch_sizes: list[int] | None, variant: str):
        steps, batch, inputs = x.shape
        H = w_hh.shape[1]
        order, back, doubled = _lstm_layout(H, x.dtype, x.device)
        # Private (o, i, f, g) copy of [W_hh | W_ih | b]. g = tanh(x) is computed as 2 sigma(2x) - 1:
        # one sigmoid then covers all four gates (PyTorch's CPU tanh costs ~4x its sigmoid per
        # element on some CPUs); the 2x lives in the g rows of the forward-only copy.
        weight = torch.cat([w_hh, w_ih] + ([] if bias is None else [bias.unsqueeze(1)]), 1).index_select(0, order)
        w_t = (weight * doubled).t()                                    # (K, 4H)
        ragged = batch_sizes is not None
        new = _zeros_if(ragged)
        hx = new(steps + 1, batch, weight.shape[1], dtype=x.dtype, device=x.device)
        hx[0, :, :H] = h0
        hx[:steps, :, H:H + inputs] = x
        if bias is not None:
            hx[:steps, :, H + inputs] = 1.0
        if not ragged:
            hx[steps, :, H:] = 0.0                                      # never read; kept finite
        acts = new(steps, batch, 4 * H, dtype=x.dtype, device=x.device)  # o, i, f, sigma(2 x_g)
        cells_0 = new(steps + 1, batch, H, dtype=x.dtype, device=x.device)  # c0, then c_t
        cells_0[0] = c0
        cells = cells_0[1:]
        tanh_c = torch.empty_like(cells)                                 # tanh(c_t)
        out = hx[1:, :, :H]                                              # h_t, written in place
        # Per-step views, made in bulk.
        a_t, s_t = _steps(acts, batch_sizes), _steps(acts[..., 3 * H:], batch_sizes)
        o_t, i_t, f_t = (_steps(acts[..., k * H:(k + 1) * H], batch_sizes) for k in range(3))
        c_t, tc_t, h_t = _steps(cells, batch_sizes), _steps(tanh_c, batch_sizes), _steps(out, batch_sizes)
        hx_t = _steps(hx[:steps], batch_sizes)                           # [h_{t-1} | x_t | 1], running rows
        cp_t = _steps(cells_0[:steps], batch_sizes)                      # c_{t-1}, running rows
        standard = variant == "standard"
        for t in range(steps):
            a, i, c = a_t[t], i_t[t], c_t[t]
            torch.mm(hx_t[t], w_t, out=a)               # W [h; x; 1]: one matmul, all gates
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
        ctx.save_for_backward(weight, out)  # out: autograd then refuses a backward after it was changed in place
        ctx.hx, ctx.acts, ctx.cells, ctx.tanh_c, ctx.back = hx, acts, cells_0, tanh_c, back
        ctx.batch_sizes, ctx.variant, ctx.has_bias, ctx.inputs = batch_sizes, variant, bias is not None, inputs
        return out, _final(out, batch_sizes), _final(cells, batch_sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor):
        weight, _ = ctx.saved_tensors
        hx, acts, cells_0, tanh_c, batch_sizes, variant = ctx.hx, ctx.acts, ctx.cells, ctx.tanh_c, ctx.batch_sizes, ctx.variant
        steps, batch, gates = acts.shape
        H, inputs = gates // 4, ctx.inputs
        out, c_prev = hx[1:, :, :H], cells_0[:steps]                     # h_t and c_{t-1}: views
        w_hh = weight[:, :H].contiguous()                                 # kernel order, not doubled
        o, i, f, s = acts.split(H, dim=2)
        g = s * 2.0 - 1.0                                                 # the forward kept sigma(2 x_g)
        ragged = batch_sizes is not None
        # Everything that does not depend on the incoming gradient, for all steps at once:
        # dpre_o = dh * mult_o and dpre_{i,f,g} = dc * mult[:, :, 0..2], with sigma' = s - s^2, tanh' = 1 - g^2.
        # With h = o tanh(c): o (1 - o) tanh(c) = h - h o and o (1 - tanh(c)^2) = o - h tanh(c).
        mult_o = torch.addcmul(out, out, o, value=-1.0)                   # dh/dpre_o
        through_c = torch.addcmul(o, out, tanh_c, value=-1.0)             # dh/dc = o * tanh'(c)
        mult = acts.new_empty(steps, batch, 3, H)
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
        dh_buf = grad_h.new_empty(batch, H)
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
            dc = grad_c.new_zeros(batch, H)
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
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = d_pre.reshape(-1, gates).mm(weight[:, H:H + inputs]).view(steps, batch, inputs)
        needs_w = ctx.needs_input_grad[1] or ctx.needs_input_grad[2] or ctx.needs_input_grad[5]
        grad_wi = grad_b = grad_wh = None
        if needs_w:  # [dW_hh | dW_ih | db] in one GEMM over the rows [h_{t-1} | x_t | 1], then PyTorch's order
            grad_w = _outer_sum(d_pre, hx[:steps]).index_select(0, ctx.back)
            grad_wh = grad_w[:, :H] if ctx.needs_input_grad[5] else None
            grad_wi = grad_w[:, H:H + inputs] if ctx.needs_input_grad[1] else None
            grad_b = grad_w[:, H + inputs] if ctx.has_bias and ctx.needs_input_grad[2] else None
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
