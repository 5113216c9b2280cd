"""A fixed time step: the model knows how long it has stayed, and ends routes only where data has ends.

The required case: a synthetic fixed-step track with known dwell (every cell held exactly 3 steps,
then a move along the route). Standing still is right 2 steps in 3; a model that knows its dwell
count is right nearly always. At `Forecaster` defaults (== `gridcast fit`'s) the model beats `stay`
on next-step acc@1 (and so does Markov-2 with dwell); the ablation without the dwell inputs is
measured beside it (on this clean case an LSTM also learns to count on its own).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gridcast.cli.app import main
from gridcast.nextcell import Forecaster
from gridcast.nextcell.baselines import MarkovDwell, Stay
from gridcast.nextcell.batch import beam_many, predict_many
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.evaluation import baseline_ranks
from gridcast.nextcell.features import advance_dwell, dwell_counts, dwell_features
from gridcast.nextcell.forecaster import ends_are_real
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.tracks import Track

HOLD = 3  # every cell of the synthetic routes is held exactly this many steps


def held_route(route: list[tuple[int, int]], phase: int) -> np.ndarray:
    """The route at a fixed step: each cell repeated HOLD times; the track starts `phase` steps into
    its first cell (a recording does not start on entering a cell)."""
    return np.repeat(np.asarray(route, dtype=np.int64), HOLD, axis=0)[phase:]


ROUTE_A = [(x, 5) for x in range(14)]                        # east along row 5
ROUTE_B = [(3, y) for y in range(14)]                        # north along column 3 (crosses A at (3, 5))


def fixed_step_tracks(n: int, seed: int) -> list[Track]:
    rng = np.random.default_rng(seed)
    return [Track(f"trip{seed}-{i}", held_route(ROUTE_A if i % 2 else ROUTE_B, int(rng.integers(0, HOLD))))
            for i in range(n)]


def acc1(ranks: list[np.ndarray]) -> float:
    r = np.concatenate(ranks)
    return float((r == 1).mean())


@pytest.fixture(scope="module")
def fitted() -> dict:
    train, test = fixed_step_tracks(24, seed=0), fixed_step_tracks(10, seed=1)
    models = {"default": Forecaster().fit(train, epochs=25),
              "no_dwell": Forecaster(dwell_features=False).fit(train, epochs=25)}
    return {"train": train, "test": test, **models}


# ---------------------------------------------------------------------------------- the counts
def test_dwell_counts_are_causal_and_known():
    cells = np.array([[0, 0], [0, 0], [0, 0], [1, 0], [1, 0], [2, 0], [2, 0], [2, 0], [2, 0]])
    run, held = dwell_counts(cells)
    assert run.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert held.tolist() == [0, 0, 0, 2, 2, 1, 1, 1, 1]
    for n in range(1, len(cells) + 1):  # causal: a prefix's counts are the track's first counts
        r, h = dwell_counts(cells[:n])
        assert r.tolist() == run[:n].tolist() and h.tolist() == held[:n].tolist()
    # one step at a time (what beams, samples and streams do) gives the same counts
    r, h = run[:1], held[:1]
    for i in range(1, len(cells)):
        r, h = advance_dwell(r, h, np.all(cells[i:i + 1] == cells[i - 1:i], axis=1))
        assert (int(r[0]), int(h[0])) == (run[i], held[i])
    assert np.allclose(dwell_features(run, held)[:, 0], np.log1p(run))


def test_collapsed_tracks_have_zero_dwell_inputs():
    run, held = dwell_counts(np.array([[0, 0], [1, 0], [2, 0], [2, 1]]))
    assert not run.any() and not held.any()


# --------------------------------------------------------------------- the required fixed-step case
def test_model_at_defaults_beats_stay_on_a_known_dwell_track(fitted):
    model, test = fitted["default"], fitted["test"]
    assert model.config.dwell_features is True  # fit saw stays: dwell inputs on
    ours = acc1([model.ranks_along(t.cells)[0] for t in test])
    stay = acc1([baseline_ranks(Stay(), t.cells) for t in test])
    dwell = acc1([baseline_ranks(MarkovDwell(2).fit(fitted["train"]), t.cells) for t in test])
    assert stay == pytest.approx(2 / 3, abs=0.05)
    assert ours >= stay + 0.15, (ours, stay)
    assert dwell > stay  # the other half: Markov with dwell beats stay too
    assert ours >= dwell - 0.05, (ours, dwell)


def test_the_ablation_without_dwell_inputs(fitted):
    """Everything else equal (data, seed, epochs). Measured: on this clean case the LSTM learns to
    count the 3 stays in its state without the inputs (0.9675 acc@1 both; at 8 steps held 0.972
    with vs 0.977 without), so the inputs are not what beats `stay` *here*; on real data they are
    (Liverpool at 30 s: acc@1 0.527 -> 0.570, README). What must hold: the inputs never cost
    accuracy where counting is easy."""
    test = fitted["test"]
    ours = acc1([fitted["default"].ranks_along(t.cells)[0] for t in test])
    without = acc1([fitted["no_dwell"].ranks_along(t.cells)[0] for t in test])
    stay = acc1([baseline_ranks(Stay(), t.cells) for t in test])
    assert fitted["no_dwell"].config.dwell_features is False
    assert without > stay and ours >= without - 0.02, (ours, without, stay)


def test_after_holding_a_cell_three_steps_it_moves_on(fitted):
    model = fitted["default"]
    prefix = held_route(ROUTE_A, 0)[:HOLD * 5]            # (4, 5) just entered ... held 3 steps
    assert model.predict_next(prefix[:-2], k=1)[0].cell == (4, 5)   # entered (4, 5): stays
    assert model.predict_next(prefix, k=1)[0].cell == (5, 5)        # held 3 steps: moves on


# ------------------------------------------------------------------ every path carries the counts
def test_beam_updates_dwell_per_beam_and_batch_and_streaming_agree(fitted):
    model = fitted["default"]
    prefix = held_route(ROUTE_A, 1)[:10]
    greedy = model.beam(prefix, horizon=7, width=1)[0].cells
    # the greedy route holds each cell 3 steps (the dwell counts advance per beam step)
    full = np.concatenate([prefix, np.asarray(greedy)])
    run, _ = dwell_counts(full)
    assert run.max() <= HOLD and len({tuple(c) for c in greedy}) >= 2, greedy
    ours = model.beam(prefix, horizon=6, width=4)
    batched = beam_many(model, [prefix, prefix[:5]], horizon=6, width=4)
    assert [r.cells for r in batched[0]] == [r.cells for r in ours]
    assert np.allclose([r.p for r in batched[0]], [r.p for r in ours], rtol=1e-4)
    assert [r.cells for r in batched[1]] == [r.cells for r in model.beam(prefix[:5], horizon=6, width=4)]
    many = predict_many(model, [prefix], k=3, horizon=3, width=2, exact=False)
    assert [c.cell for c in many[0].next] == [c.cell for c in model.predict_next(prefix, k=3)]
    stream = StreamingPredictor(model, k=3)
    for n, cell in enumerate(prefix, start=1):
        got, ref = stream.update("bus", cell), model.predict_next(prefix[:n], k=3)
        assert [g.cell for g in got] == [r.cell for r in ref]
        assert np.allclose([g.p for g in got], [r.p for r in ref], atol=2e-5)


def test_sampled_routes_advance_the_dwell_counts(fitted):
    """Sampled continuations (the point forecast's) hold each cell 3 steps as the data does: the
    counts advance per sample (stay -> +1, move -> 0). Frozen at the prefix's last count (just
    entered), the samples stay too long: 7 of the 9 steps right instead of 9 (measured)."""
    from gridcast.nextcell.sampling import point_forecast, sample_routes

    model = fitted["default"]
    route = held_route(ROUTE_A, 0)
    prefix, truth = route[:7], route[7:16]                # just entered (2, 5); then 3 steps each
    samples = sample_routes(model, [prefix], horizon=len(truth), n=20, seed=0)[0]
    point = point_forecast(samples.cells)
    assert (np.all(point == truth, axis=1)).sum() >= 8, point.tolist()  # measured 9; frozen counts: 7
    run, _ = dwell_counts(np.concatenate([prefix, point]))
    assert run.max() <= HOLD


@pytest.mark.parametrize("cell,head,time_features", [("lstm", "plain", False), ("gru", "fusion", True),
                                                      ("rnn", "plain", True)])
def test_streaming_equals_predict_next_with_dwell_inputs(cell, head, time_features):
    tracks = fixed_step_tracks(6, seed=3)
    model = Forecaster(cell=cell, head=head, hidden=16, embed=4, time_features=time_features,
                       dwell_features=True).fit(tracks, epochs=2)
    stream = StreamingPredictor(model, k=4)
    cells = held_route(ROUTE_B, 2)[:12]
    times = 1_700_000_000.0 + 60.0 * np.arange(len(cells))
    for n, c in enumerate(cells, start=1):
        got = stream.update("t", c, t=float(times[n - 1]))
        ref = model.predict_next(cells[:n], k=4, times=times[:n])
        assert [g.cell for g in got] == [r.cell for r in ref]
        assert np.allclose([g.p for g in got], [r.p for r in ref], atol=2e-5)


def test_save_load_keeps_the_dwell_inputs(fitted, tmp_path):
    model = fitted["default"]
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["model"]
    assert saved["dwell_features"] is True and saved["end_of_route"] in ("learn", "never")
    loaded = Forecaster.load(tmp_path / "m")
    prefix = held_route(ROUTE_B, 0)[:8]
    assert [(c.cell, round(c.p, 6)) for c in loaded.predict_next(prefix)] == \
        [(c.cell, round(c.p, 6)) for c in model.predict_next(prefix)]


def test_old_configs_rebuild_without_the_new_inputs():
    old = CellForecasterConfig(head="fusion").to_dict()
    del old["dwell_features"], old["end_of_route"]
    config = CellForecasterConfig.from_dict(old)
    assert config.dwell_features is False and config.end_of_route == "learn"
    assert config.input_size == CellForecasterConfig(head="fusion").input_size


def test_collapsed_tracks_get_no_dwell_inputs():
    tracks = [Track(f"r{i}", np.array(ROUTE_A if i % 2 else ROUTE_B)) for i in range(6)]
    assert Forecaster(hidden=8).fit(tracks, epochs=1).config.dwell_features is False


# ------------------------------------------------------------------------------ end of route
def cut_tracks() -> list[Track]:
    """One animal's recording cut at gaps, as ingestion names the parts: "<id>#<k>"."""
    return [Track(f"fisher#{k}", held_route(ROUTE_A if k % 2 else ROUTE_B, k % HOLD)) for k in range(8)]


def test_auto_learns_ends_only_where_tracks_were_not_cut_at_gaps():
    assert ends_are_real(fixed_step_tracks(8, seed=0))         # one track per trip id
    assert not ends_are_real(cut_tracks())                     # 7 of 8 end at a gap cut
    assert not ends_are_real([Track(t.id + "@0", t.cells) for t in cut_tracks()])  # a later split's suffix
    one_dropout = fixed_step_tracks(20, seed=0) + [Track("bus#1", np.zeros((3, 2), int)), Track("bus#2", np.zeros((3, 2), int))]
    assert ends_are_real(one_dropout)                          # 1 cut in 22 tracks: still trips
    assert Forecaster(hidden=8).fit(cut_tracks(), epochs=1).config.end_of_route == "never"
    assert Forecaster(hidden=8).fit(fixed_step_tracks(8, 0), epochs=1).config.end_of_route == "learn"


@pytest.mark.parametrize("head,target", [("fusion", "cell"), ("plain", "cell"), (None, "move")])
def test_never_means_no_end_is_ever_predicted(head, target, tmp_path):
    settings = {"head": head} if head else {}
    model = Forecaster(target=target, hidden=16, end_of_route="never", **settings).fit(fixed_step_tracks(8, 0), epochs=3)
    route_end = held_route(ROUTE_A, 0)                          # the very end of a route
    _, p_end = model.predict_next_with_end(route_end)
    assert p_end == 0.0
    assert not any(r.ended for r in model.beam(route_end, horizon=5, width=5))
    assert not any(r.ended for r in beam_many(model, [route_end], horizon=5, width=5)[0])
    assert predict_many(model, [route_end], k=3, horizon=2, width=2, exact=False)[0].p_end == 0.0
    _, _, end = model.step_distributions(route_end)
    assert np.isneginf(end).all()
    stream = StreamingPredictor(model, k=3)
    for c in route_end:
        top = stream.update("x", c)
    assert sum(n.p for n in top) > 0.0
    model.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    assert loaded.config.end_of_route == "never" and loaded.predict_next_with_end(route_end)[1] == 0.0
    with torch.no_grad():
        assert torch.isfinite(loaded.net_.head.bias).all()      # pinned, not -inf: training stays finite


def test_learn_keeps_ends_as_targets():
    model = Forecaster(hidden=16, end_of_route="learn").fit(fixed_step_tracks(8, 0), epochs=3)
    assert model.predict_next_with_end(held_route(ROUTE_A, 0))[1] > 0.0


# ------------------------------------------------------------------------------------ the CLI
def test_fit_cli_records_its_decisions(tmp_path, capsys):
    lines = ["track,time,x,y"]
    for k in range(6):  # one recording, cut at gaps of 1000 s into 6 parts
        for t, (x, y) in enumerate(held_route(ROUTE_A if k % 2 else ROUTE_B, 0)):
            lines.append(f"walker,{k * 10_000 + t * 10},{x * 50 + 25},{y * 50 + 25}")
    data = tmp_path / "walk.csv"
    data.write_text("\n".join(lines) + "\n")
    common = [str(data), "--x-col", "x", "--y-col", "y", "--cell-size", "50", "--step", "10", "--max-gap", "1000",
              "--hidden", "8", "--epochs", "1", "--no-progress"]
    assert main(["fit", *common, "--out", str(tmp_path / "auto"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dwell_features"] is True and summary["end_of_route"] == "never"
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())["model"]
    assert saved["dwell_features"] is True and saved["end_of_route"] == "never"
    assert main(["fit", *common, "--out", str(tmp_path / "learn"), "--end-of-route", "learn"]) == 0
    assert "end of route learned (learn)" in capsys.readouterr().out
    assert json.loads((tmp_path / "learn" / "config.json").read_text())["model"]["end_of_route"] == "learn"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *common, "--out", str(tmp_path / "bad"), "--end-of-route", "sometimes"])
    assert exit_info.value.code == 2 and "--end-of-route" in capsys.readouterr().err


def test_forecaster_and_fit_decide_the_same_way():
    from gridcast.cli.app import build_parser

    args = vars(build_parser().parse_args(["fit", "DATA", "--out", "OUT"]))
    config = Forecaster().config
    assert config.end_of_route == args["end_of_route"] == "auto"
    assert config.dwell_features is None  # decided by fit on the training tracks, like the CLI's
