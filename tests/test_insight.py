"""The insight measurements are real: gradients match finite differences, the unroll is the model,
the recall task is solvable by an oracle and not by anything without memory."""
import numpy as np
import pytest
import torch

from gridcast.insight import (
    KINDS,
    FitSettings,
    MemoryBudget,
    RecallTask,
    accuracy,
    check_hidden_gradient,
    decay,
    fit_forecaster,
    gate_summary,
    gate_traces,
    geometric_mean,
    hidden_gradient_norms,
    max_delay,
    set_forget_bias,
    train_recall,
    unroll,
    windows,
)
from gridcast.kinds import CELL_KINDS
from gridcast.nextcell import CellForecasterConfig, Forecaster, ForecasterNet
from gridcast.nn import Recurrent
from gridcast.tracks import Track


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny recurrent steps are slower on two threads than on one, badly so on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_net(kind: str, **cell_options) -> ForecasterNet:
    torch.manual_seed(0)
    net = ForecasterNet(CellForecasterConfig(cell=kind, hidden=3, embed=2, dropout=0.0), vocab_size=7, output_size=7)
    if cell_options:
        old = net.recurrent
        net.recurrent = Recurrent(kind, old.input_size, old.hidden_size, **cell_options)
    return net.double().eval()


def _tiny_batch(steps: int = 6):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 7, (2, steps), generator=g)
    features = torch.randn(2, steps, 4, generator=g, dtype=torch.float64)
    targets = torch.randint(3, 7, (2,), generator=g)
    return ids, features, targets


@pytest.mark.parametrize("kind,options", [("rnn", {}), ("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "relu"}),
                                          ("lstm", {"variant": "coupled"}), ("lstm", {"variant": "no_forget"})])
@pytest.mark.parametrize("t", [0, 3, 5])
def test_autograd_dloss_dh_matches_finite_differences(kind, options, t):
    net = _tiny_net(kind, **options)
    auto, numeric = check_hidden_gradient(net, *_tiny_batch(), t=t)
    assert np.abs(auto).max() > 1e-6  # a real signal, not two zeros agreeing
    np.testing.assert_allclose(auto, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unroll_is_the_model_and_norms_are_the_autograd_gradients(kind):
    net = _tiny_net(kind)
    ids, features, targets = _tiny_batch()
    fused, _, _ = net(ids, features)
    out = unroll(net, ids, features)
    torch.testing.assert_close(out.logits, fused, rtol=1e-10, atol=1e-10)
    norms = hidden_gradient_norms(net, ids, features, targets)
    assert len(norms["hidden"]) == ids.shape[1]
    assert ("cell" in norms) == (kind == "lstm")
    for k in (0, 2, 5):
        auto, _ = check_hidden_gradient(net, ids, features, targets, t=ids.shape[1] - 1 - k, eps=1e-3)
        assert norms["hidden"][k] == pytest.approx(np.linalg.norm(auto, axis=1).mean(), rel=1e-9)


def test_decay_and_geometric_mean():
    curve = np.array([1.0, 0.5] + [0.25] * 48 + [0.005])
    assert decay(curve) == pytest.approx(100.0)
    np.testing.assert_allclose(geometric_mean([np.array([1.0, 100.0]), np.array([100.0, 1.0])]), [10.0, 10.0])
    with pytest.raises(ValueError):
        decay(np.ones(10))


def test_recall_task_oracle_solves_it_and_memoryless_answers_are_at_chance():
    task = RecallTask(side=4, delay=6)
    assert accuracy(task.oracle, task) == 1.0
    assert accuracy(task.last_cell, task) < 2 * task.chance
    assert accuracy(lambda x: torch.zeros(len(x), dtype=torch.long), task) < 2 * task.chance
    blind = RecallTask(side=4, delay=6, blind=True)
    assert accuracy(blind.oracle, blind) < 2 * blind.chance  # the information really is gone
    x, y = task.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 8, 17) and bool((x[:, -1, 16] == 1).all()) and bool((x[:, :-1, 16] == 0).all())


def test_recall_is_learnable_only_when_the_start_cell_is_seen():
    budget = MemoryBudget(hidden=16, steps=200, check_every=25, test_size=500)
    _, seen = train_recall(RecallTask(side=3, delay=1), "gru", budget)
    _, blind = train_recall(RecallTask(side=3, delay=1, blind=True), "gru", budget)
    assert seen.solved
    assert blind.accuracy < 0.25  # chance is 1/9


def test_max_delay_shape():
    result = max_delay("rnn", MemoryBudget(hidden=8, steps=20, check_every=10, test_size=100), side=2, cap=2)
    assert set(result) >= {"max_delay", "accuracy_by_delay", "steps_by_delay", "seconds"}
    assert isinstance(result["max_delay"], int) and 0 <= result["max_delay"] <= 2


def test_forget_bias_sets_the_forget_rows_only():
    rec = Recurrent("lstm", 3, 4)
    set_forget_bias(rec, 1.0)
    cell = rec.layers[0]
    np.testing.assert_allclose((cell.bias_ih + cell.bias_hh)[4:8].detach().numpy(), 1.0)
    _, gates = cell(torch.zeros(1, 3), return_gates=True)
    assert float(gates["forget"].detach().mean()) != pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_model():
    route = np.array([[x, 3] for x in range(12)] + [[11, y] for y in range(4, 10)])
    tracks = [Track(str(i), route[i % 3:]) for i in range(6)]
    return fit_forecaster(tracks, "lstm", 0, FitSettings(epochs=2, hidden=6, embed=3)), route


def test_gate_traces_and_summary(tiny_model):
    model, route = tiny_model
    traces = gate_traces(model, route)
    assert set(traces) == {"input", "forget", "candidate", "output", "cell", "hidden"}
    assert all(v.shape == (len(route), 6) for v in traces.values())
    summary = gate_summary(traces)
    assert 0.0 <= summary["forget_mean"] <= 1.0 and -1.0 <= summary["forget_vs_1_minus_input_corr"] <= 1.0


def test_windows_and_variant_fit(tiny_model):
    model, route = tiny_model
    ids, features, targets = windows(model, [Track("r", route)], length=8, stride=3)
    assert ids.shape[1] == 8 and features.shape[:2] == ids.shape and len(targets) == len(ids)
    variant = fit_forecaster([Track(str(i), route) for i in range(4)], "lstm", 0, FitSettings(epochs=2, hidden=4, embed=2),
                             variant="coupled")
    assert isinstance(variant, Forecaster) and variant.net_.recurrent.layers[0].variant == "coupled"
    assert len(variant.result_.history) == 2


def test_kinds_are_the_cell_kinds_in_figure_order():
    """insight's default order (simplest cell first) names exactly `gridcast.kinds.CELL_KINDS`."""
    assert KINDS == ("rnn", "lstm", "gru") and sorted(KINDS) == sorted(CELL_KINDS)
