"""Next-cell forecasting: which grid cell comes next, and the rest of the route.

`Forecaster` (fit / predict / beam / save / load) over the `network`; `baselines` and `evaluation`
judge it; `batch` and `streaming` are the fast paths for many tracks and live tracks.
"""
from gridcast.nextcell.baselines import (CellBaseline, ConstantVelocity, Markov, MarkovNeighbours, MostFrequentNext,
                                         Stay, default_baselines)
from gridcast.nextcell.batch import beam_many, rollout_many
from gridcast.errors import CheckpointError
from gridcast.nextcell.checkpoint import load_checkpoint, save_checkpoint
from gridcast.nextcell.evaluation import best_baseline, evaluate
from gridcast.nextcell.forecaster import Ensemble, Forecaster, NextCell, Route
from gridcast.nextcell.network import ForecasterConfig, ForecasterNet, recommended
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.nextcell.training import TrainConfig, TrainingError, TrainResult

__all__ = ["Forecaster", "Ensemble", "NextCell", "Route", "ForecasterConfig", "ForecasterNet", "recommended",
           "TrainConfig", "TrainResult", "TrainingError", "CellBaseline", "Stay", "ConstantVelocity", "Markov",
           "MarkovNeighbours", "MostFrequentNext", "default_baselines", "evaluate", "best_baseline",
           "beam_many", "rollout_many", "StreamingPredictor", "save_checkpoint", "load_checkpoint",
           "CheckpointError"]
