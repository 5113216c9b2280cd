"""Diagrams come from the cells: gate names, activations and variants are read off the cell objects."""
import pytest

from gridcast.insight.diagrams import DIAGRAMS, cell_spec, draw_all, draw_cell
from gridcast.nn.cells import make_cell

EXPECTED = {
    ("rnn", ()): {"hidden": "tanh"},
    ("rnn", (("nonlinearity", "relu"),)): {"hidden": "relu"},
    ("lstm", ()): {"input": "sigmoid", "forget": "sigmoid", "candidate": "tanh", "output": "sigmoid"},
    ("lstm", (("variant", "no_forget"),)): {"input": "sigmoid", "forget": "one", "candidate": "tanh", "output": "sigmoid"},
    ("lstm", (("variant", "coupled"),)): {"input": "sigmoid", "forget": "one_minus_input", "candidate": "tanh",
                                           "output": "sigmoid"},
    ("gru", ()): {"reset": "sigmoid", "update": "sigmoid", "candidate": "tanh"},
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_spec_is_read_off_the_cell(key):
    kind, options = key
    cell = make_cell(kind, 5, 7, **dict(options))
    spec = cell_spec(cell)
    assert {g.name: g.activation for g in spec.gates} == EXPECTED[key]
    assert [g.name for g in spec.gates] == list(EXPECTED[key])  # PyTorch's chunk order
    assert spec.shapes["weight_hh"] == (cell.num_chunks * 7, 7)
    assert spec.states == (["hidden", "cell"] if kind == "lstm" else ["hidden"])


def test_every_diagram_is_written_non_empty(tmp_path):
    drawn = draw_all(tmp_path)
    assert set(drawn) == set(DIAGRAMS)
    for paths in drawn.values():
        assert {p.suffix for p in paths} == {".png", ".svg"}
        for p in paths:
            assert p.stat().st_size > 5000
    assert "<svg" in (tmp_path / "cell_lstm.svg").read_text()[:500]


def test_draw_cell_by_name(tmp_path):
    (png,) = draw_cell("gru", tmp_path, formats=("png",))
    assert png.name == "cell_gru.png" and png.read_bytes()[:4] == b"\x89PNG"
