"""Continuous forecasting: observed positions in, future positions out (metres for ETH/UCY
pedestrians, pixels for mouse cursors).

What makes a single-agent recurrent model strong here is mostly the framing; the modules follow
the data through it:

* `windows` - the observed / future split of a window set (a model may read only the observed part);
* `baselines` - constant position, constant velocity, a linear fit;
* `config` - `ContinuousConfig` and `typical_step`, the scale inputs and outputs are divided by;
* `frame` - the relative, canonical frame (last position at the origin, last step along +x);
* `features` / `neighbours` - inputs built from observed positions only, `prepare` -> `Prepared`;
* `symmetry` - mirror (and rotation, speed) augmentation, and the mirror view at prediction;
* `model` - `ContinuousForecaster`: residual over constant velocity, deterministic / mixture /
  Gaussian heads, attention over neighbours, the losses;
* `train` - `fit`; `predict` - `predict` and `sample` in world units.

>>> import gridcast.continuous as C  # doctest: +SKIP
>>> cfg = C.ContinuousConfig(kind="gru", scale=C.typical_step(train.observed))  # doctest: +SKIP
>>> model, info = C.fit(C.prepare(train.observed, train.future, cfg),
...                     C.prepare(val.observed, val.future, cfg), cfg)  # doctest: +SKIP
>>> paths = C.predict(model, C.prepare(test.observed, None, cfg))  # (N, 12, 2)  # doctest: +SKIP
"""
from gridcast.continuous.baselines import BASELINES, constant_position, constant_velocity, linear_fit
from gridcast.continuous.config import ContinuousConfig, typical_step
from gridcast.continuous.features import CONTEXT, Prepared, jittered, make_inputs, prepare
from gridcast.continuous.frame import canonical_frame, to_local, to_world
from gridcast.continuous.model import SOCIAL, ContinuousForecaster, SocialAttention, batched_outputs, euclid, losses
from gridcast.continuous.neighbours import (
                                            FUTURE_AHEAD,
                                            FUTURE_FEATURES,
                                            LOOK_AHEAD_STEPS,
                                            NEIGHBOUR_FEATURES,
                                            OBS_STEPS,
                                            neighbour_features,
                                            neighbour_width,
                                            neighbour_y_mask,
)
from gridcast.continuous.predict import predict, sample
from gridcast.continuous.symmetry import MIRROR, augment, mirrored
from gridcast.continuous.train import fit, validation_scores
from gridcast.continuous.windows import ObservedFuture

__all__ = ["ObservedFuture", "BASELINES", "constant_position", "constant_velocity", "linear_fit",
           "ContinuousConfig", "typical_step", "canonical_frame", "to_local", "to_world",
           "make_inputs", "Prepared", "prepare", "jittered", "CONTEXT",
           "neighbour_features", "neighbour_width", "neighbour_y_mask", "OBS_STEPS", "NEIGHBOUR_FEATURES",
           "FUTURE_AHEAD", "FUTURE_FEATURES", "LOOK_AHEAD_STEPS", "augment", "mirrored", "MIRROR",
           "ContinuousForecaster", "SocialAttention", "SOCIAL", "batched_outputs", "euclid", "losses",
           "fit", "validation_scores", "predict", "sample"]
