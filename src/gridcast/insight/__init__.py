"""Measurements that show why RNN, LSTM and GRU behave differently, on trained gridcast models.

Every number in ``docs/understanding.md`` comes from here:

* `experiment`: the shared set-up -- the real data (Liverpool bus route 14), one training budget,
  fitting a forecaster (optionally with a cell variant) and scoring it;
* `gates`: an explicit unroll that exposes every hidden state to autograd, gate traces on a real
  trip and their summary;
* `compare`: accuracy, speed and size of each kind on the same data and budget;
* `gradients`: dLoss/dh_{T-k} against k, and the gradient norm around clipping;
* `memory`: the recall task (report the cell seen k steps ago);
* `ablations`: no-forget / coupled LSTM, forget bias, tanh vs ReLU RNN;
* `plots` and `diagrams`: their figures (matplotlib; not imported here, import them where figures
  are wanted).
"""
from gridcast.insight.ablations import activation_ablation, gate_ablation, summarise_gate_ablation
from gridcast.insight.compare import compare_kinds, time_recurrent
from gridcast.insight.experiment import (
                                         KINDS,
                                         FitSettings,
                                         RealData,
                                         count_parameters,
                                         fit_forecaster,
                                         liverpool,
                                         next_cell_metrics,
                                         one_thread,
                                         pick_track,
)
from gridcast.insight.gates import Unrolled, encode_track, gate_summary, gate_traces, set_forget_bias, unroll
from gridcast.insight.gradients import (
                                         check_hidden_gradient,
                                         decay,
                                         geometric_mean,
                                         gradient_experiment,
                                         hidden_gradient_norms,
                                         windows,
)
from gridcast.insight.memory import (
                                         MemoryBudget,
                                         RecallNet,
                                         RecallResult,
                                         RecallTask,
                                         accuracy,
                                         max_delay,
                                         memory_experiment,
                                         train_recall,
)

__all__ = ["KINDS", "FitSettings", "RealData", "liverpool", "pick_track", "one_thread", "fit_forecaster",
           "count_parameters", "next_cell_metrics", "Unrolled", "unroll", "encode_track", "gate_traces",
           "gate_summary", "set_forget_bias", "compare_kinds", "time_recurrent", "gradient_experiment",
           "hidden_gradient_norms", "check_hidden_gradient", "decay", "geometric_mean", "windows",
           "MemoryBudget", "RecallTask", "RecallNet", "RecallResult", "accuracy", "max_delay", "train_recall",
           "memory_experiment", "gate_ablation", "activation_ablation", "summarise_gate_ablation"]
