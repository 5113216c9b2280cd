"""`evaluate` judges every model kind against the same baselines, fits unfitted ones itself, and
says in one line per metric whether the model beats them; its plot draws every route it lists."""
import json

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.errors import InputError
from gridcast.nextcell.baselines import Markov, Stay, default_baselines
from gridcast.nextcell.evaluation import evaluate, verdict
from gridcast.nextcell.forecaster import Route
from gridcast.tracks import Track


def _road_csv(path, trips: int = 12) -> None:
    """Two routes from a shared start, planar cells (a small repeated-route case)."""
    rows = ["track,time,x,y"]
    a = [(x, 3) for x in range(10, 0, -1)]
    b = [(10, 3)] + [(10, 3 + k) for k in range(1, 8)]
    for r in range(trips):
        for name, route in (("a", a), ("b", b)):
            rows += [f"{name}{r},{t},{x},{y}" for t, (x, y) in enumerate(route)]
    path.write_text("\n".join(rows) + "\n")


def test_evaluate_prints_the_same_baseline_rows_for_every_model_kind(tmp_path, capsys):
    """A fusion model and a plain one fitted on one file: evaluate's baseline rows are identical,
    fitted on the tracks both saw before the test (training + validation), and the text output
    carries one verdict line per metric."""
    data = tmp_path / "routes.csv"
    _road_csv(data)
    flags = ["--x-col", "x", "--y-col", "y"]
    results = {}
    for head in ("fusion", "plain"):
        out = tmp_path / head
        assert main(["fit", str(data), *flags, "--cell-size", "1", "--cell", "gru", "--head", head, "--epochs", "2",
                     "--hidden", "8", "--out", str(out), "--no-progress"]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(out), str(data), *flags, "--json"]) == 0
        results[head] = json.loads(capsys.readouterr().out)
    assert results["fusion"]["baselines"] == results["plain"]["baselines"]
    assert {"markov1_dwell", "markov2_dwell", "markov2", "stay"} <= set(results["plain"]["baselines"])
    assert main(["evaluate", str(tmp_path / "plain"), str(data), *flags]) == 0
    text = capsys.readouterr().out
    assert "24 training + validation tracks" in text  # every trip of the file: none left out for the plain head
    for metric in ("acc@1", "acc@5", "mrr", "ade_cells", "fde_cells"):
        assert sum(line.startswith(f"{metric}: best model") for line in text.splitlines()) == 1, metric
    assert "strongest baseline" in text


def test_evaluate_fits_unfitted_baselines_on_the_models_tracks_or_says_what_to_do():
    from gridcast.nextcell.forecaster import Forecaster

    train = [Track(f"t{i}", np.array([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]])) for i in range(6)]
    test = [Track("x", np.array([[0, 0], [1, 0], [2, 0], [3, 0]]))]
    model = Forecaster(cell="gru", hidden=8, embed=4).fit(train, epochs=1, seed=0)
    auto = evaluate(model, default_baselines(), test)
    fitted = [b.fit(model.train_tracks_) for b in default_baselines()]
    assert auto["baselines"] == evaluate(model, fitted, test)["baselines"]
    assert auto["baselines"]["markov1"]["acc@1"] == 1.0  # fitted on the road, so it knows the next cell
    with pytest.raises(InputError, match=r"markov1 .*not fitted.*baseline\.fit\(training_tracks\)"):
        evaluate(None, [Stay(), Markov(1)], test)
    assert evaluate(None, [Stay()], test)["baselines"]["stay"]["acc@1"] == 0.0  # nothing to fit: fine


def test_verdict_says_beats_ties_or_not_for_errors_and_scores():
    table = {"models": {"gru": {"acc@1": 0.6, "ade": 120.0, "mrr": 0.5}},
             "baselines": {"stay": {"acc@1": 0.5, "ade": 100.0, "mrr": 0.5}, "cv": {"acc@1": 0.2, "ade": 300.0,
                                                                                    "mrr": float("nan")}}}
    assert verdict(table, "acc@1") == "acc@1: best model gru 0.600 beats the strongest baseline stay 0.500"
    assert verdict(table, "ade") == "ade: best model gru 120.000 does NOT beat the strongest baseline stay 100.000"
    assert "ties" in verdict(table, "mrr")  # and the NaN of cv never counts as strongest
    with pytest.raises(KeyError):
        verdict(table, "ece")


def test_route_figure_draws_every_route_and_marks_an_immediate_end():
    from gridcast.grid import Grid
    from gridcast.nextcell.plots import route_figure, route_label

    observed, truth = np.array([[0, 0], [1, 0]]), np.array([[2, 0], [3, 0]])
    routes = [Route([], 0.31, True), Route([(2, 0), (3, 0)], 0.2, False), Route([(1, 1)], 0.1, True)]
    grid = Grid(cell_size=100.0, origin_x=500_000.0, origin_y=5_000_000.0, crs="EPSG:32630")
    fig = route_figure(observed, truth, routes, grid=grid)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert [label for label in labels if label.startswith("#")] == [route_label(i, r, 0.31) for i, r in enumerate(routes)]
    assert "[end]" in route_label(0, routes[0], 0.31) and "0.65x as likely as #1" in route_label(1, routes[1], 0.31)
    assert sum("[end]" in t.get_text() for t in ax.texts) == 2  # routes #1 and #3 end: both marked
    assert "metres" in ax.get_xlabel() and "metres" in ax.get_ylabel()
    observed_line = next(line for line in ax.get_lines() if line.get_label() == "observed")
    assert observed_line.get_xdata().tolist() == [-100.0, 0.0]  # metres from the last observed cell
    end_marker = next(line for line in ax.get_lines() if line.get_label() == labels[labels.index(route_label(0, routes[0], 0.31))])
    assert len(end_marker.get_xdata()) == 1  # a marker at the last observed cell
