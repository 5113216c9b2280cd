"""`CellForecasterConfig`: every setting that rebuilds a next-cell network, saved in each checkpoint.

Checkpoints store the settings as a dict under ``"model"`` (never the class name), so the class could
be renamed from ``ForecasterConfig`` without touching the format: `from_dict` reads what any version
wrote.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from gridcast.errors import InputError
from gridcast.kinds import CELL_KINDS
from gridcast.nextcell.features import CONTINUOUS_FEATURES, DWELL_FEATURES, TIME_FEATURES

TARGETS = ("cell", "move", "offset")
HEADS = ("plain", "fusion")
#: how the fusion head spreads its far-move logit over the vocabulary cells outside its window:
#: "shared" (every far cell the same, however far: the original head, what old checkpoints load as)
#: or "distance" (decayed with the distance from the current cell at a learned, per-step rate)
FAR_MODES = ("shared", "distance")
#: the last move the fusion head's geometry (`network.window_geometry`) measures each candidate against:
#: "step" (the last step's: none after a stay; the original head, what old checkpoints load as) or
#: "move" (the move that entered the current cell: at a fixed step a pause keeps the direction it came from)
LAST_MOVES = ("step", "move")
END_OF_ROUTE = ("learn", "never", "auto")  # auto: decided by `fit` from the tracks (see `ends_are_real`)


@dataclass
class CellForecasterConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint."""

    cell: str = "lstm"          # rnn | lstm | gru
    target: str = "cell"        # cell | move | offset
    hidden: int = 128           # hidden state size
    layers: int = 1             # stacked recurrent layers
    embed: int = 32             # cell-id embedding size
    dropout: float = 0.1        # on embeddings and between layers
    init_state: str = "zeros"   # zeros | learned | noise
    max_move: int = 2           # move target: classes cover displacements in [-R, R]^2
    offset_loss: str = "gaussian"  # offset target: gaussian (NLL) | mse
    head: str = "plain"         # cell target: plain (cell-id softmax) | fusion (cell ids + moves + Markov prior)
    time_features: bool = False  # time of day / day of week / time since the last cell as inputs (needs times)
    min_tracks: int = 1         # a cell enters the vocabulary when this many training tracks visit it
    dwell_features: bool | None = False  # steps stayed in this cell / held the last one as inputs (None: fit decides)
    end_of_route: str = "learn"  # learn: the end is a target; never: never a target, p(end) = 0; auto: fit decides
    far: str = "shared"         # fusion head: far cells share one logit (shared) | decay with distance (distance)
    stay_prior: bool | None = False  # fusion head: a stay term from each cell's dwell hazard (None: fit decides)
    last_move: str | None = "step"  # fusion head geometry: the last step's move | the entering move (None: fit decides)
    new_cell_targets: bool | None = False  # fusion training: a step into a cell only its track visits may be a new cell

    def __post_init__(self) -> None:
        checks = {
            "cell": self.cell in CELL_KINDS,
            "target": self.target in TARGETS,
            "init_state": self.init_state in ("zeros", "learned", "noise"),
            "offset_loss": self.offset_loss in ("gaussian", "mse"),
            "head": self.head in HEADS,
            "end_of_route": self.end_of_route in END_OF_ROUTE,
            "dwell_features": self.dwell_features in (True, False, None),
            "far": self.far in FAR_MODES,
            "stay_prior": self.stay_prior in (True, False, None),
            "last_move": self.last_move in LAST_MOVES + (None,),
            "new_cell_targets": self.new_cell_targets in (True, False, None),
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"invalid {name} {getattr(self, name)!r}")
        if self.head == "fusion" and self.target != "cell":
            raise InputError(f"head 'fusion' needs target 'cell', got {self.target!r}")
        for name in ("hidden", "layers", "embed", "max_move", "min_tracks"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def input_size(self) -> int:
        return (self.embed + CONTINUOUS_FEATURES + (TIME_FEATURES if self.time_features else 0)
                + (DWELL_FEATURES if self.dwell_features else 0))

    @property
    def learns_end(self) -> bool:
        """Whether the end of route is a training target and a prediction ("auto" counts as yes
        until `fit` resolves it)."""
        return self.end_of_route != "never"

    @classmethod
    def from_dict(cls, d: dict) -> "CellForecasterConfig":
        """Settings saved by any version; fields added later take the dataclass defaults, which are
        the old behaviour (the plain head, no time inputs, every cell an id), never `default_config`'s,
        so an old checkpoint rebuilds the network it was trained with."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown model settings {sorted(unknown)}")
        return cls(**d)


def default_config(**settings) -> CellForecasterConfig:
    """What `Forecaster(**settings)` and `gridcast fit` build: `recommended` for the target, then
    `settings` on top. One function for both, so the Python API and the CLI train the same model."""
    return CellForecasterConfig(**{**recommended(settings.get("target", "cell")), **settings})


def recommended(target: str) -> dict:
    """The settings `gridcast fit` adds by default for `target`: the winners of the real-commute
    benchmarks (docs/benchmarks-geolife.md); `Forecaster(**settings)` starts from them too
    (`default_config`). The dataclass defaults stay those of the original plain model, so code that
    builds a config or `ForecasterNet` by hand and old checkpoints keep working."""
    if target == "cell":
        # Time inputs: no gain measured. min_tracks 2 helped only GeoLife, where it was tuned; UCI and
        # the Liverpool demo (3 seeds each) did better with every training cell given an id.
        # Dwell inputs and end-of-route learning are decided by `fit` from the training tracks
        # (`Forecaster.fit`: dwell on when tracks stay in cells; ends learned unless tracks were cut at gaps).
        # Far moves decayed with distance (`network.far_distance`): the shared far logit let sampled routes
        # jump across the map (GeoLife fixed step: 1.0% of sampled steps > 10 cells; now 0.0%).
        # The stay term (`dwell.Dwell`), like the dwell inputs, only where tracks stay in cells: at a fixed step
        # the dwell-blind Markov counts kept P(stay) flat in the time already spent in a cell.
        # The entering move as the head's last move (`features.came_from`), likewise: after a pause the last
        # step's move is none, so the head's geometry forgot which way the track was going.
        # New-cell targets (`new_cell_targets`): a training step into a cell no other training track visits
        # counts as right on that cell's slot or on the new-cell (window) slot, so the path into cells without
        # an id is trained (10-28% of test steps go into one) while a revisited cell keeps its own slot.
        return {"head": "fusion", "time_features": False, "min_tracks": 1, "dwell_features": None, "end_of_route": "auto",
                "far": "distance", "stay_prior": None, "last_move": None, "new_cell_targets": None}
    return {"dwell_features": None, "end_of_route": "auto"}
