"""Pieces several commands share: the column flags for raw tracks, reading DATA arguments, printing,
and the flags and run of the real-commute benchmarks (GeoLife, UCI)."""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from dataclasses import dataclass

from gridcast.errors import InputError
from gridcast.grid import MAX_CELL_SIZE, MAX_STEP, MIN_CELL_SIZE
from gridcast.jsonsafe import json_safe
from gridcast.kinds import CELL_KINDS, parse_kinds


@dataclass(frozen=True)
class Range:
    """The sane values of one numeric flag: a closed or half-open interval, finite, integer if asked.
    Checked in the command (not as an argparse ``type``) so a bad value is one line, exit 2."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    def text(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        low, high = (f"{int(v)}" if self.integer else f"{v:g}" for v in (self.low, self.high))
        return f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def check(self, flag: str, value) -> None:
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        ok = ok and (value > self.low if self.low_open else value >= self.low)
        ok = ok and (value < self.high if self.high_open else value <= self.high)
        if not ok or (self.integer and value != int(value)):
            raise InputError(f"--{flag} must be {self.text()}, got {value!r}")


def int_in(low: int, high: int) -> Range:
    """Integers in [low, high]."""
    return Range(low, high, integer=True)


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Range:
    """Finite numbers between low and high (open ends where asked)."""
    return Range(low, high, low_open=low_open, high_open=high_open)


SEED = int_in(0, 2**32 - 1)          # numpy's legacy seed range: every RNG takes it as it is
POSITIVE_SIZE = float_in(0.0, 1e12, low_open=True)   # gaps: seconds
CELL_SIZE = float_in(MIN_CELL_SIZE, MAX_CELL_SIZE)   # what a Grid accepts, named as the flag
STEP = float_in(0.0, MAX_STEP, low_open=True)
GRIDDING_RANGES = {"cell_size": CELL_SIZE, "step": STEP, "max_gap": POSITIVE_SIZE}
PLOT_EXTENSIONS = (".png", ".pdf", ".svg")


def check_flags(args: argparse.Namespace, ranges: dict[str, Range]) -> None:
    """Check every flag named in `ranges` (by its argparse dest) that was given; the first bad one is
    an `InputError` naming the flag, the range and the value."""
    for dest, allowed in ranges.items():
        value = getattr(args, dest, None)
        if value is not None:
            allowed.check(dest.replace("_", "-"), value)


def check_plot_path(flag: str, path: str | None) -> None:
    """A figure file: matplotlib picks the format from the extension, so an unsupported one is
    refused before any work is done."""
    if path is not None and pathlib.Path(path).suffix.lower() not in PLOT_EXTENSIONS:
        raise InputError(f"--{flag} {path!r} must end in {', '.join(PLOT_EXTENSIONS)}")


DEFAULT_MEMORY_LIMIT = "4GiB"
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def memory_size(text: str) -> int:
    """The argparse ``type`` of ``--memory-limit`` (bytes): a number of bytes, or one with K/M/G/T
    (binary units; ``4G``, ``4GB`` and ``4GiB`` all mean 4 * 2**30)."""
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = raw[-1:] if raw[-1:] in _UNITS else ""
    try:
        value = float(raw[:-1] if unit else raw) * _UNITS[unit]
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 2**20 <= value <= 2**50):
        raise argparse.ArgumentTypeError(f"must be a size from 1MiB to 1PiB such as 512MiB or 8GiB, got {text!r}")
    return int(value)


def add_memory_limit_arg(parser: argparse.ArgumentParser) -> None:
    """``--memory-limit``: the same flag, default and meaning on every command that estimates its
    memory before the work starts (grid, fit)."""
    parser.add_argument("--memory-limit", type=memory_size, default=memory_size(DEFAULT_MEMORY_LIMIT),
                        metavar="SIZE", help="refuse a job whose estimated memory exceeds this "
                                             f"(e.g. 512MiB, 16GiB; default: {DEFAULT_MEMORY_LIMIT})")


def memory_refusal(what: str, needed: int, limit: int, fixes: str) -> InputError:
    """The one-line refusal of a job estimated beyond ``--memory-limit``: the numbers, and the flags
    that would make it fit."""
    return InputError(f"{what} needs about {needed / 2**30:.1f} GiB, over --memory-limit {limit / 2**30:.1f} GiB; "
                      f"{fixes}, or raise --memory-limit")


def add_column_args(parser: argparse.ArgumentParser) -> None:
    """The column flags of raw tracks, shared by every command that reads them (grid, fit, evaluate)."""
    cols = parser.add_argument_group("columns of raw tracks")
    cols.add_argument("--track-col", default="track", help='track id column (default: track; "" = the whole file is one track)')
    cols.add_argument("--time-col", default="time", help="time column: ISO-8601 text or numbers of seconds (default: time)")
    cols.add_argument("--lat-col", help="latitude column (degrees; default: lat unless --x-col/--y-col)")
    cols.add_argument("--lon-col", help="longitude column (degrees; default: lon unless --x-col/--y-col)")
    cols.add_argument("--x-col", help="planar x column (metres, pixels, ...)")
    cols.add_argument("--y-col", help="planar y column")


def add_gridding_args(parser: argparse.ArgumentParser) -> None:
    """How to grid raw tracks on the spot (fit); a gridded Parquet carries its own grid instead."""
    group = parser.add_argument_group("gridding raw tracks (ignored for a gridded Parquet)")
    group.add_argument("--cell-size", type=float, help="cell size in metres (planar: in the data's units; > 0)")
    group.add_argument("--step", type=float, help="resample every track at this many seconds (> 0)")
    group.add_argument("--max-gap", type=float, help="split a track at gaps longer than this (seconds; > 0)")
    group.add_argument("--sep", help="CSV field separator (default: sniffed)")


def column_map(args: argparse.Namespace):
    """A ColumnMap from the flags added by `add_column_args`."""
    from gridcast.ingest.columns import ColumnMap

    track = args.track_col or None
    planar = args.x_col is not None or args.y_col is not None
    geo = args.lat_col is not None or args.lon_col is not None
    if planar and geo:
        raise InputError("give --lat-col/--lon-col or --x-col/--y-col, not both")
    if planar:
        if not (args.x_col and args.y_col):
            raise InputError("give both --x-col and --y-col")
        return ColumnMap(track=track, time=args.time_col, x=args.x_col, y=args.y_col)
    return ColumnMap(track=track, time=args.time_col, lat=args.lat_col or "lat", lon=args.lon_col or "lon")


def prepare_data(path: str, args: argparse.Namespace, like=None, like_name: str | None = None,
                 collapse: bool = False, min_len: int = 2):
    """`gridcast.ingest.prepare` on a DATA argument, with the column and gridding flags in `args`
    (those a command lacks count as not given) and each note printed on stderr (stdout may be JSON).

    `like` (a loaded model, named `like_name` in the notes) gives the grid and preprocessing to
    follow. Returns `gridcast.ingest.Prepared`: tracks, grid and preprocessing.
    """
    from gridcast.ingest.prepare import prepare

    return prepare(path, like, columns=lambda: column_map(args), cell_size=getattr(args, "cell_size", None),
                   step=getattr(args, "step", None), max_gap=getattr(args, "max_gap", None), collapse=collapse,
                   min_len=min_len, sep=getattr(args, "sep", None), name=like_name, log=print_note)


def print_note(note: str) -> None:
    """A note on stderr: what was dropped or chosen, said once, never silently."""
    print(f"note: {note}", file=sys.stderr)


def run_single_threaded(body, args: argparse.Namespace) -> int:
    """Run `body(args)` with one torch thread: for the small matmuls of these models, extra threads
    only spin-wait on a shared machine. The caller's thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return body(args)
    finally:
        torch.set_num_threads(threads)


def print_json(obj) -> None:
    """JSON on stdout with NaN written as null (NaN is not JSON)."""
    print(json.dumps(json_safe(obj)))


def metrics_table(rows: dict[str, dict[str, float]], keys: list[str]) -> str:
    """A plain-text table: one row per predictor, one column per metric."""
    width = max(len(name) for name in rows) + 2
    lines = [" " * width + "".join(f"{k:>11}" for k in keys)]
    for name, metrics in rows.items():
        cells = []
        for k in keys:
            v = metrics.get(k)
            cells.append(f"{'-':>11}" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:>11.3f}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


COMMUTE_QUICK = {"epochs": 4, "hidden": 32, "patience": 2}  # --quick: a protocol check, not a result


def add_commute_args(p: argparse.ArgumentParser, columns: dict[str, str] | None, cell_size: float = 250.0,
                     step: float = 60.0, max_gap: float = 600.0, mode: str = "collapsed") -> None:
    """Flags shared by the real-track benchmarks (GeoLife, UCI, fishers, Liverpool); the protocol
    defaults are each dataset's own. ``columns=None``: a bundled dataset with a fixed protocol (only
    ``--mode``, no grid or column flags)."""
    p.add_argument("--cells", default=",".join(CELL_KINDS), help=f"cell kinds to train (default: {','.join(CELL_KINDS)})")
    p.add_argument("--seeds", default="0,1,2", help="seeds per kind; metrics are means over them (default: 0,1,2)")
    p.add_argument("--epochs", type=int, help="override the epoch budget")
    p.add_argument("--hidden", type=int, help="override the hidden size")
    p.add_argument("--head", choices=("fusion", "plain"), help="override the output head (ablation)")
    p.add_argument("--time-features", action="store_true", help="ablation: add time of day / week inputs")
    p.add_argument("--no-time-features", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--min-tracks", type=int, help="override: trips that must visit a cell for it to get an id")
    p.add_argument("--max-move", type=int, help="override: the fusion head's move window is (2R+1)^2 cells")
    p.add_argument("--fit-defaults", action="store_true",
                   help="train every model exactly at `gridcast fit`'s defaults instead of the benchmark's own "
                        "settings (gridcast.bench.commute.ModelSpec)")
    p.add_argument("--quick", action="store_true", help="protocol check: full data and baselines, one tiny LSTM")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", help="also write the JSON result to this file")
    grid = p.add_argument_group("protocol")
    grid.add_argument("--mode", choices=("collapsed", "fixed"), default=mode,
                      help="collapsed: consecutive repeats collapsed (which cell next); fixed: one cell per time step, "
                           f"no collapse (where at t + k*step) (default: {mode})")
    if columns is None:
        return
    grid.add_argument("--cell-size", type=float, default=cell_size, help=f"cell size in metres (default: {cell_size:g})")
    grid.add_argument("--step", type=float, default=step, help=f"resampling step in seconds (default: {step:g})")
    grid.add_argument("--max-gap", type=float, default=max_gap,
                      help=f"split tracks at gaps longer than this (s) (default: {max_gap:g})")
    cols = p.add_argument_group("columns")
    for role, name in columns.items():
        cols.add_argument(f"--{role}-col", default=name, help=f"{role} column (default: {name})")


def parse_list(text: str, what: str, cast=str) -> tuple:
    """``"0,1,2"`` -> ``(0, 1, 2)`` (with `cast`); a clear error for an empty or unparsable list."""
    try:
        items = tuple(cast(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--{what} must be a comma-separated list, got {text!r}") from None
    if not items:
        raise InputError(f"--{what} is empty")
    return items


SPEC_OVERRIDES = ("epochs", "hidden", "head", "min_tracks", "max_move")  # benchmark flags that set a ModelSpec field


def run_commute_bench(args: argparse.Namespace, data) -> int:
    """Run `gridcast.bench.commute.run_benchmark` on loaded data with the flags in `args`; print it."""
    import torch

    from gridcast.bench.commute import ModelSpec, run_benchmark, text_report

    torch.set_num_threads(min(2, torch.get_num_threads()))
    kinds = parse_kinds(args.cells)
    seeds = parse_list(args.seeds, "seeds", int)
    spec = ModelSpec()
    if args.quick:
        kinds, seeds = kinds[:1], seeds[:1]
        for key, value in COMMUTE_QUICK.items():
            setattr(spec, key, value)
    for key in SPEC_OVERRIDES:
        if getattr(args, key) is not None:
            setattr(spec, key, getattr(args, key))
    spec.time_features = bool(args.time_features) and not args.no_time_features
    if args.fit_defaults:
        overrides = [f"--{k.replace('_', '-')}" for k in SPEC_OVERRIDES if getattr(args, k) is not None]
        overrides += ["--time-features"] if args.time_features else []
        if overrides or args.quick:
            raise InputError(f"--fit-defaults trains at fit's defaults: drop {', '.join(overrides or ['--quick'])}")
        spec.fit_defaults = True
    if spec.head == "plain":
        spec.min_tracks = args.min_tracks or 1
    log = None if args.json else (lambda m: print(m, flush=True))
    result = run_benchmark(data, kinds=kinds, seeds=seeds, spec=spec, log=log, n_boot=200 if args.quick else 1000)
    result["quick"] = bool(args.quick)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    if args.json:
        print_json(result)
    else:
        print(text_report(result))
    return 0
