"""Next-cell forecasting: which grid cell comes next, and the rest of the route.

The data flow, module by module:

* `features`: cells -> token ids (`CellVocab`), positions, moves, times (what the network reads);
* `prior`: transition counts (`count_transitions`, `MarkovPrior`), shared by the fusion head and
  the Markov baselines;
* `config` + `network`: `CellForecasterConfig` and the `ForecasterNet` it builds (recurrent stack,
  heads, loss);
* `forecaster`: `Forecaster` (fit / predict / beam / save / load) and `Ensemble`; `training` runs
  the epochs, `checkpoint` writes the model directory;
* `baselines` and `evaluation` judge it; `batch` (many tracks) and `streaming` (live tracks) are the
  fast paths.

`plots` (matplotlib) is not imported here, so that importing the package stays light: import
`gridcast.nextcell.plots` where figures are wanted.
"""
from gridcast.errors import CheckpointError
from gridcast.nextcell.answers import Place, answer_json
from gridcast.nextcell.baselines import (
                                         CellBaseline,
                                         ConstantVelocity,
                                         Markov,
                                         MarkovDwell,
                                         MarkovNeighbours,
                                         MostFrequentNext,
                                         Stay,
                                         default_baselines,
)
from gridcast.nextcell.batch import Prediction, beam_many, predict_many, rollout_many
from gridcast.nextcell.calibration import Calibration, fit_temperature
from gridcast.nextcell.checkpoint import load_checkpoint, save_checkpoint
from gridcast.nextcell.config import CellForecasterConfig, default_config, recommended
from gridcast.nextcell.coverage import Coverage
from gridcast.nextcell.distributed import DistributedError, World, current_world
from gridcast.nextcell.evaluation import best_baseline, evaluate, verdict
from gridcast.nextcell.features import CellVocab, MoveClasses, Normalisation
from gridcast.nextcell.forecaster import Ensemble, Forecaster, NextCell, Route
from gridcast.nextcell.geojson import check_geojson_grid, feature_collection, prediction_features, write_geojson
from gridcast.nextcell.network import ForecasterNet
from gridcast.nextcell.prior import MarkovPrior, count_transitions
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.nextcell.training import TrainConfig, TrainingError, TrainResult

__all__ = ["Forecaster", "Ensemble", "NextCell", "Route", "CellForecasterConfig", "ForecasterNet", "recommended",
           "CellVocab", "MoveClasses", "Normalisation", "MarkovPrior", "count_transitions",
           "TrainConfig", "TrainResult", "TrainingError", "CellBaseline", "Stay", "ConstantVelocity", "Markov",
           "MarkovNeighbours", "MarkovDwell", "MostFrequentNext", "default_baselines", "evaluate", "best_baseline",
           "verdict",
           "beam_many", "rollout_many", "predict_many", "Prediction", "StreamingPredictor",
           "Place", "answer_json", "Coverage", "prediction_features", "feature_collection", "write_geojson",
           "check_geojson_grid",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "Calibration", "fit_temperature", "default_config",
           "DistributedError", "World", "current_world"]
