"""Cell diagrams drawn from the cells themselves: the notes' "draw diagram later".

Nothing here is typed in by hand that the cell can tell us. `cell_spec` asks a cell object:

* which gates it has and in which order -- the keys of ``forward(..., return_gates=True)``, checked
  against the number of weight chunks (PyTorch's order: LSTM i, f, g, o; GRU r, z, n);
* what squashes each gate -- by probing: the cell is run with large random weights and the range of
  each gate's values is read off (in (0, 1): sigmoid; reaching below 0: tanh; above 1: ReLU);
* what a variant did to the forget gate -- a forget gate that is constantly 1 (``no_forget``) or
  equals 1 - input gate (``coupled``) is found numerically and drawn as such;
* the parameter shapes, printed under the drawing.

`draw_cell` then lays the spec out in the usual picture (the cell-state line on top for an LSTM,
the hidden-state line for a GRU) and writes PNG and SVG.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch  # noqa: E402

from gridcast.nn.cells import CellBase, GRUCell, LSTMCell, RNNCell, make_cell  # noqa: E402

STATES = ("cell", "hidden")
SYMBOL = {"sigmoid": "σ", "tanh": "tanh", "relu": "ReLU"}
SHORT = {"input": "i", "forget": "f", "candidate": "g", "output": "o", "reset": "r", "update": "z", "hidden": "h"}
BLOCK_COLOR = {"sigmoid": "#f6c85f", "tanh": "#9dd9f3", "relu": "#f4a6a6"}
OP_COLOR = "#f7d6e6"
CELL_PATH = "#2e8b57"


@dataclass
class GateSpec:
    name: str
    activation: str        # sigmoid | tanh | relu | one (constant 1) | one_minus_input
    chunk: int | None      # row block of weight_ih / weight_hh; None when the gate has no weights of its own


@dataclass
class CellSpec:
    kind: str              # rnn | lstm | gru
    gates: list[GateSpec]
    states: list[str]      # what the cell carries from step to step
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    variant: str = "standard"

    def gate(self, name: str) -> GateSpec | None:
        return next((g for g in self.gates if g.name == name), None)


def _kind(cell: CellBase) -> str:
    for kind, cls in (("lstm", LSTMCell), ("gru", GRUCell), ("rnn", RNNCell)):
        if isinstance(cell, cls):
            return kind
    raise TypeError(f"not a gridcast cell: {type(cell).__name__}")


@torch.no_grad()
def cell_spec(cell: CellBase, samples: int = 512, seed: int = 0) -> CellSpec:
    """Read a cell's gates, their activations and its parameter shapes off the cell itself."""
    kind = _kind(cell)
    probe = copy.deepcopy(cell).double()
    generator = torch.Generator().manual_seed(seed)
    for p in probe.parameters():  # large weights push every gate to the ends of its range
        p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 4.0)
    x = torch.randn(samples, cell.input_size, generator=generator, dtype=torch.float64) * 2.0
    h = torch.randn(samples, cell.hidden_size, generator=generator, dtype=torch.float64)
    state = (h, torch.randn(samples, cell.hidden_size, generator=generator, dtype=torch.float64)) if kind == "lstm" else h
    _, values = probe(x, state, return_gates=True)
    names = [n for n in values if n not in STATES] or ["hidden"]  # a plain RNN's only "gate" is its new state
    gates, chunk = [], 0
    for name in names:
        v = values[name]
        if torch.allclose(v, torch.ones_like(v)):
            activation, own = "one", False
        elif "input" in values and name != "input" and torch.allclose(v, 1.0 - values["input"]):
            activation, own = "one_minus_input", False
        elif float(v.min()) < -0.5:
            activation, own = "tanh", True
        elif float(v.max()) > 1.5:
            activation, own = "relu", True
        else:
            activation, own = "sigmoid", True
        gates.append(GateSpec(name, activation, chunk))
        chunk += 1  # the weight rows exist for every gate (variants leave theirs unused)
        if not own:
            gates[-1].chunk = None
    if chunk != cell.num_chunks:
        raise ValueError(f"{type(cell).__name__} returned {chunk} gates for {cell.num_chunks} weight chunks")
    shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
    states = ["hidden", "cell"] if kind == "lstm" else ["hidden"]
    variant = getattr(cell, "variant", None) or getattr(cell, "nonlinearity", "standard")
    return CellSpec(kind, gates, states, shapes, variant)


# -------------------------------------------------------------------------------------- drawing
class _Canvas:
    """Nodes with a size, and axis-aligned arrows that stop at the nodes' edges."""

    def __init__(self, width: float, height: float) -> None:
        self.fig, self.ax = plt.subplots(figsize=(width * 0.75, height * 0.75))
        self.ax.set_xlim(-0.6, width)
        self.ax.set_ylim(-1.6, height)
        self.ax.set_aspect("equal")
        self.ax.axis("off")
        self.nodes: dict[str, tuple[float, float, float, float]] = {}

    def block(self, name: str, x: float, y: float, activation: str, label: str) -> None:
        w, hh = 0.66, 0.42
        self.ax.add_patch(FancyBboxPatch((x - w, y - hh), 2 * w, 2 * hh, boxstyle="round,pad=0.04,rounding_size=0.12",
                                         fc=BLOCK_COLOR.get(activation, "0.9"), ec="k", lw=1.0, zorder=3))
        self.ax.text(x, y + (0.12 if label else 0.0), SYMBOL.get(activation, activation), ha="center", va="center",
                     fontsize=11, zorder=4)
        if label:
            self.ax.text(x, y - 0.22, label, ha="center", va="center", fontsize=7, style="italic", zorder=4)
        self.nodes[name] = (x, y, w + 0.04, hh + 0.04)

    def op(self, name: str, x: float, y: float, symbol: str, r: float = 0.26) -> None:
        self.ax.add_patch(Circle((x, y), r, fc=OP_COLOR, ec="k", lw=1.0, zorder=3))
        self.ax.text(x, y, symbol, ha="center", va="center", fontsize=10 if len(symbol) < 3 else 8, zorder=4)
        self.nodes[name] = (x, y, r, r)

    def point(self, name: str, x: float, y: float) -> None:
        self.nodes[name] = (x, y, 0.0, 0.0)

    def text(self, x: float, y: float, s: str, **kw) -> None:
        kw.setdefault("fontsize", 10)
        self.ax.text(x, y, s, zorder=5, **kw)

    def _trim(self, a: tuple[float, float], b: tuple[float, float], node: str | None) -> tuple[float, float]:
        """Move point b back towards a by the node's half-extent along the segment's direction."""
        if node is None:
            return b
        _, _, w, h = self.nodes[node]
        if a[0] == b[0]:
            return b[0], b[1] - h if b[1] > a[1] else b[1] + h
        return b[0] - w if b[0] > a[0] else b[0] + w, b[1]

    def wire(self, start: str, end: str | None, via: list[tuple[float, float]] = (), end_xy=None,
             color: str = "k", lw: float = 1.2, arrow: bool = True, label: str | None = None) -> None:
        """A polyline from node `start` through `via` to node `end` (or `end_xy`), arrow at the end."""
        points = [self.nodes[start][:2], *via, self.nodes[end][:2] if end else end_xy]
        points[0] = self._trim(points[1], points[0], start)
        points[-1] = self._trim(points[-2], points[-1], end)
        xs, ys = zip(*points[:-1])
        if len(points) > 2:
            self.ax.plot(list(xs) + [points[-2][0]], list(ys) + [points[-2][1]], color=color, lw=lw, zorder=2,
                         solid_capstyle="round")
        self.ax.annotate("", xy=points[-1], xytext=points[-2], zorder=2,
                         arrowprops=dict(arrowstyle="-|>" if arrow else "-", color=color, lw=lw,
                                         shrinkA=0, shrinkB=0, mutation_scale=12))
        if label:
            mx, my = (points[-2][0] + points[-1][0]) / 2, (points[-2][1] + points[-1][1]) / 2
            self.text(mx + 0.08, my + 0.08, label, fontsize=8, color=color)


def _gate_label(spec: CellSpec, name: str) -> str:
    if name == "candidate":
        return "candidate " + ("g" if spec.kind == "lstm" else "n")
    if name == "hidden":
        return "new state h"
    return f"{name} {SHORT.get(name, '')}"


def _caption(spec: CellSpec, canvas: _Canvas, y: float, equations: list[str]) -> None:
    shapes = ", ".join(f"{n} {tuple(s)}" for n, s in spec.shapes.items())
    order = ", ".join(_gate_label(spec, g.name).split()[-1] for g in spec.gates if g.chunk is not None)
    lines = equations + [f"parameters: {shapes}  (gate rows in order {order})"]
    canvas.text(0.0, y, "\n".join(lines), fontsize=8, va="top", family="monospace")


def _draw_lstm(spec: CellSpec) -> _Canvas:
    c = _Canvas(13.0, 8.2)
    forget = spec.gate("forget")
    c.ax.add_patch(FancyBboxPatch((0.7, 0.9), 10.6, 6.2, boxstyle="round,pad=0.1,rounding_size=0.4",
                                  fc="#fbfbf5", ec="0.5", lw=1.0, zorder=0))
    # the cell-state line: the additive path
    c.point("c_in", 0.0, 6.3)
    c.point("c_out", 12.3, 6.3)
    c.op("plus", 5.6, 6.3, "+")
    if forget.activation == "one":
        c.wire("c_in", "plus", color=CELL_PATH, lw=3.0)
        c.text(2.0, 6.55, "f = 1: nothing is forgotten", fontsize=8, color=CELL_PATH)
    else:
        c.op("fx", 3.0, 6.3, "×")
        c.wire("c_in", "fx", color=CELL_PATH, lw=3.0)
        c.wire("fx", "plus", color=CELL_PATH, lw=3.0)
    c.wire("plus", "c_out", color=CELL_PATH, lw=3.0)
    c.text(-0.5, 6.6, "c(t-1)", color=CELL_PATH)
    c.text(11.7, 6.6, "c(t)", color=CELL_PATH)
    c.text(6.0, 7.3, "cell state: c(t) = f ⊙ c(t-1) + i ⊙ g   (added to, not multiplied through a matrix)",
           fontsize=8, color=CELL_PATH, ha="center")
    # inputs, concat, bus
    c.point("h_in", 0.0, 1.4)
    c.point("x_in", 1.6, -0.6)
    c.op("cat", 1.6, 1.4, "[h,x]", r=0.36)
    c.wire("h_in", "cat")
    c.wire("x_in", "cat")
    c.text(-0.5, 1.65, "h(t-1)")
    c.text(1.75, -0.75, "x(t)")
    bus_y = 2.3
    xs = {"forget": 3.0, "input": 4.7, "candidate": 6.5, "output": 8.3}
    for g in spec.gates:
        if g.chunk is None:
            continue
        c.block(g.name, xs[g.name], 3.4, g.activation, _gate_label(spec, g.name))
        c.wire("cat", g.name, via=[(1.6, bus_y), (xs[g.name], bus_y)])
    # forget gate into the cell line
    if forget.activation == "one_minus_input":
        c.op("one_minus", 3.0, 4.7, "1−")
        c.wire("input", "one_minus", via=[(4.7, 4.05), (3.6, 4.05), (3.6, 4.7)])
        c.wire("one_minus", "fx")
        c.text(0.85, 4.95, "coupled:\nf = 1 − i", fontsize=8)
    elif forget.activation != "one":
        c.wire("forget", "fx")
    # input gate x candidate -> plus
    c.op("ix", 5.6, 4.9, "×")
    c.wire("input", "ix", via=[(4.7, 4.9)])
    c.wire("candidate", "ix", via=[(6.5, 4.9)])
    c.wire("ix", "plus")
    # output: o * tanh(c)
    c.block("tanh_c", 9.8, 5.2, "tanh", "")
    c.point("c_tap", 9.8, 6.3)
    c.wire("c_tap", "tanh_c")
    c.op("ox", 9.8, 3.4, "×")
    c.wire("tanh_c", "ox")
    c.wire("output", "ox")
    c.point("h_out", 12.3, 1.4)
    c.point("h_up", 10.8, 8.1)
    c.wire("ox", "h_out", via=[(9.8, 1.4)])
    c.wire("ox", "h_up", via=[(10.8, 3.4)])
    c.text(11.7, 1.65, "h(t)")
    c.text(10.95, 7.7, "h(t) to the head", fontsize=8)
    gates = {"one": "i, o = σ(W [x; h] + b)   f = 1", "one_minus_input": "i, o = σ(W [x; h] + b)   f = 1 − i"}
    _caption(spec, c, -0.95, [gates.get(forget.activation, "i, f, o = σ(W [x; h] + b)") +
                              "   g = tanh(W [x; h] + b)   h(t) = o ⊙ tanh(c(t))"])
    return c


def _draw_gru(spec: CellSpec) -> _Canvas:
    c = _Canvas(13.0, 8.2)
    c.ax.add_patch(FancyBboxPatch((0.7, 0.9), 10.6, 6.2, boxstyle="round,pad=0.1,rounding_size=0.4",
                                  fc="#fbfbf5", ec="0.5", lw=1.0, zorder=0))
    top = 6.3
    c.point("h_in", 0.0, top)
    c.op("zx", 3.4, top, "×")
    c.op("plus", 9.6, top, "+")
    c.point("h_out", 12.3, top)
    c.wire("h_in", "zx", color=CELL_PATH, lw=3.0)
    c.wire("zx", "plus", color=CELL_PATH, lw=3.0)
    c.wire("plus", "h_out", color=CELL_PATH, lw=3.0)
    c.text(-0.5, top + 0.3, "h(t-1)", color=CELL_PATH)
    c.text(11.7, top + 0.3, "h(t)", color=CELL_PATH)
    c.text(6.0, 7.3, "hidden state: h(t) = z ⊙ h(t-1) + (1 − z) ⊙ n   (also additive; one gate decides both)",
           fontsize=8, color=CELL_PATH, ha="center")
    c.point("h_tap", 1.0, top)
    c.op("cat", 1.6, 1.4, "[h,x]", r=0.36)
    c.wire("h_tap", "cat", via=[(1.0, 1.4)])
    c.point("x_in", 1.6, -0.6)
    c.wire("x_in", "cat")
    c.text(1.75, -0.75, "x(t)")
    bus_y = 2.3
    xs = {"update": 3.4, "reset": 6.3, "candidate": 8.2}
    for g in spec.gates:
        c.block(g.name, xs[g.name], 3.4, g.activation, _gate_label(spec, g.name))
    c.wire("cat", "update", via=[(1.6, bus_y), (3.4, bus_y)])
    c.wire("cat", "reset", via=[(1.6, bus_y), (6.3, bus_y)])
    c.wire("cat", "candidate", via=[(1.6, bus_y), (8.2, bus_y)], label="x only")
    # update gate: z * h(t-1) on the line, (1 - z) * n into the sum
    c.wire("update", "zx")
    c.op("one_minus", 5.0, 4.5, "1−")
    c.wire("update", "one_minus", via=[(3.4, 4.5)])
    c.op("nx", 9.6, 4.5, "×")
    c.wire("one_minus", "nx")
    c.wire("nx", "plus")
    # reset gate scales the projected old state inside the candidate
    c.op("rx", 6.3, 5.3, "×")
    c.wire("reset", "rx")
    c.point("h_tap2", 6.3, top)
    c.wire("h_tap2", "rx", label="W_hn h + b_hn")
    c.wire("rx", "candidate", via=[(7.6, 5.3), (7.6, 3.4)])
    c.wire("candidate", "nx", via=[(9.6, 3.4)])
    c.point("h_up", 10.8, 8.1)
    c.point("h_tap3", 10.8, top)
    c.wire("h_tap3", "h_up")
    c.text(10.95, 7.7, "h(t) to the head", fontsize=8)
    _caption(spec, c, -0.95, ["r, z = σ(W [x; h] + b)   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))"])
    return c


def _draw_rnn(spec: CellSpec) -> _Canvas:
    c = _Canvas(11.0, 5.4)
    c.ax.add_patch(FancyBboxPatch((0.7, 0.7), 7.6, 3.4, boxstyle="round,pad=0.1,rounding_size=0.4",
                                  fc="#fbfbf5", ec="0.5", lw=1.0, zorder=0))
    gate = spec.gates[0]
    c.point("h_in", 0.0, 2.2)
    c.point("x_in", 2.2, -0.6)
    c.op("cat", 2.2, 2.2, "[h,x]", r=0.36)
    c.wire("h_in", "cat")
    c.wire("x_in", "cat")
    c.block("act", 5.0, 2.2, gate.activation, "new state h")
    c.wire("cat", "act")
    c.point("h_out", 10.2, 2.2)
    c.wire("act", "h_out", color=CELL_PATH, lw=2.0)
    c.point("h_up", 7.4, 5.2)
    c.point("tap", 7.4, 2.2)
    c.wire("tap", "h_up")
    c.text(-0.5, 2.45, "h(t-1)")
    c.text(9.6, 2.45, "h(t)")
    c.text(2.35, -0.75, "x(t)")
    c.text(7.55, 4.8, "h(t) to the head", fontsize=8)
    bound = "in [-1, 1]" if gate.activation == "tanh" else "in [0, ∞): unbounded"
    _caption(spec, c, -0.95, [f"h(t) = {SYMBOL[gate.activation]}(W_ih x + b_ih + W_hh h(t-1) + b_hh)   {bound}; "
                              "the old state passes through W_hh at every step"])
    return c


def draw_cell(cell: CellBase | str, out_dir: str | Path, name: str | None = None, formats=("png", "svg"),
              title: str | None = None) -> list[Path]:
    """Draw one cell (an object, or a kind name with default options) to `out_dir`/name.{png,svg}."""
    if isinstance(cell, str):
        cell = make_cell(cell, 3, 4)
    spec = cell_spec(cell)
    canvas = {"lstm": _draw_lstm, "gru": _draw_gru, "rnn": _draw_rnn}[spec.kind](spec)
    variant = "" if spec.variant in ("standard", "tanh") else f" ({spec.variant})"
    canvas.ax.set_title(title or f"{spec.kind.upper()} cell{variant}", fontsize=12)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"cell_{spec.kind}" + (f"_{spec.variant}" if variant else "")
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        canvas.fig.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)
    plt.close(canvas.fig)
    return paths


DIAGRAMS: dict[str, tuple[str, dict]] = {
    "cell_rnn": ("rnn", {}),
    "cell_lstm": ("lstm", {}),
    "cell_gru": ("gru", {}),
    "cell_lstm_no_forget": ("lstm", {"variant": "no_forget"}),
    "cell_lstm_coupled": ("lstm", {"variant": "coupled"}),
    "cell_rnn_relu": ("rnn", {"nonlinearity": "relu"}),
}


def draw_all(out_dir: str | Path, names: tuple[str, ...] | None = None, formats=("png", "svg"),
             input_size: int = 20, hidden_size: int = 64) -> dict[str, list[Path]]:
    """Every diagram (the three cells and the ablation variants), from cells of the given sizes."""
    out = {}
    for stem, (kind, options) in DIAGRAMS.items():
        if names and stem not in names:
            continue
        out[stem] = draw_cell(make_cell(kind, input_size, hidden_size, **options), out_dir, stem, formats)
    return out
