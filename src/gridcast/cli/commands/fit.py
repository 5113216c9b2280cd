"""`gridcast fit DATA --cell {lstm,gru,rnn} --target {cell,move,offset} --out MODEL_DIR`."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gridcast.cli.common import (
    GRIDDING_RANGES,
    SEED,
    add_column_args,
    add_gridding_args,
    add_memory_limit_arg,
    check_flags,
    float_in,
    int_in,
    memory_refusal,
    prepare_data,
    print_json,
)
from gridcast.kinds import CELL_KINDS

# the sane values of every numeric flag (docs/contracts.md); checked before any work
FIT_RANGES = {
    "hidden": int_in(1, 4096),
    "layers": int_in(1, 16),
    "embed": int_in(1, 4096),
    "dropout": float_in(0, 1, high_open=True),
    "max_move": int_in(1, 50),
    "epochs": int_in(1, 100_000),
    "batch_size": int_in(1, 65_536),
    "lr": float_in(0, 1, low_open=True),
    "clip": float_in(0, 1e6),
    "patience": int_in(1, 100_000),
    "seed": SEED,
    "val_fraction": float_in(0, 1, high_open=True),
    "nproc": int_in(1, 1024),
    **GRIDDING_RANGES,
}


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each flag's default, except where there is none to show (None, off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="train a forecaster on gridded (or raw) tracks", formatter_class=DefaultsHelp,
                       description="Train an RNN/LSTM/GRU forecaster. The model directory gets safetensors weights, "
                                   "a JSON config with the grid and vocabulary, and train_log.jsonl (one line per epoch). "
                                   "After training, a temperature fitted on the validation tracks calibrates the "
                                   "probabilities (saved in config.json; --no-calibrate keeps them raw). The Python "
                                   "API's Forecaster(...).fit(...) has the same defaults.")
    p.add_argument("data", metavar="DATA", help="gridded Parquet from `gridcast grid`, or raw points with column flags")
    p.add_argument("--cell", choices=CELL_KINDS, default="lstm", help="recurrent cell kind")
    p.add_argument("--target", choices=("cell", "move", "offset"), default="cell",
                   help="cell: next cell id; move: displacement class; offset: continuous displacement")
    p.add_argument("--out", required=True, help="model directory to write (required)")
    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=int, default=128, help="hidden state size")
    model.add_argument("--layers", type=int, default=1, help="stacked recurrent layers")
    model.add_argument("--embed", type=int, default=32, help="cell-id embedding size")
    model.add_argument("--dropout", type=float, default=0.1, help="on embeddings and between layers")
    model.add_argument("--init-state", choices=("zeros", "learned", "noise"), default="zeros",
                       help="initial recurrent state")
    model.add_argument("--max-move", type=int, default=2, help="move target: classes cover [-R, R]^2 cells")
    model.add_argument("--offset-loss", choices=("gaussian", "mse"), default="gaussian", help="offset target: its loss")
    model.add_argument("--head", choices=("fusion", "plain"), default=None,
                       help="cell target: fusion (default: cell ids + moves + Markov prior, the GeoLife/UCI winner) "
                            "or plain (cell-id softmax only)")
    model.add_argument("--end-of-route", choices=("auto", "learn", "never"), default="auto",
                       help="learn: the end of each track is a learned event (routes can end); never: tracks only "
                            "stop being recorded (p(end) = 0); auto: learn unless over 10%% of the tracks end "
                            "where --max-gap cut them (decided on DATA, saved in config.json)")
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=40, help="most epochs (early stopping usually ends sooner)")
    train.add_argument("--batch-size", type=int, default=32, help="tracks per step")
    train.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    train.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0 disables)")
    train.add_argument("--patience", type=int, default=6, help="early stopping patience (epochs)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the batches")
    train.add_argument("--val-fraction", type=float, default=0.15,
                       help="share of tracks held out for early stopping")
    train.add_argument("--collapse", action="store_true", help="drop consecutive repeats: 'which cell next' sequences")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out (same DATA and settings): ends with the same weights")
    train.add_argument("--skip-nonfinite", action="store_true", help="skip batches whose loss is NaN/inf instead of stopping")
    train.add_argument("--no-calibrate", action="store_true",
                       help="keep the network's raw probabilities (default: a temperature fitted on the validation "
                            "tracks; rankings and greedy routes are the same either way)")
    train.add_argument("--nproc", type=int, default=1,
                       help="train data-parallel in N processes on this machine (DistributedDataParallel over "
                            "gloo, as `torchrun --standalone --nproc-per-node N -m gridcast fit ...`); "
                            "--batch-size is per process")
    train.add_argument("--stream", action="store_true",
                       help="DATA is a dataset directory (`gridcast grid ... --out DIR/`): train reading one part at "
                            "a time instead of loading it whole; validation tracks by a hash of the track id")
    add_memory_limit_arg(train)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_column_args(p)
    add_gridding_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_flags(args, FIT_RANGES)  # before the library is imported: a bad number is refused at once
    from gridcast.errors import InputError
    from gridcast.nextcell.checkpoint import directory_lock

    out = Path(args.out)
    from gridcast.ingest.outputs import refuse_input_as_output
    refuse_input_as_output(out, [args.data], "--out")  # same file by any path, symlink or hard link
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a model directory; give a directory (new or an earlier model's)")
    from gridcast.nextcell.distributed import join_from_env, launch_local, launched_by_torchrun, leave

    if args.nproc > 1:
        if launched_by_torchrun():
            raise InputError("--nproc starts its own workers; under torchrun give --nproc-per-node to torchrun instead")
        return launch_local(args.nproc, _worker_command(sys.argv[1:]))
    world = join_from_env()  # torchrun's environment -> one rank of a data-parallel job
    try:
        if not world.main:  # rank 0 alone writes the model directory
            return _fit(args, out, world)
        with directory_lock(out):  # one writer per model directory, for the whole fit and save
            return _fit(args, out, world)
    finally:
        leave()


def _worker_command(argv: list[str]) -> list[str]:
    """This command line without --nproc: what each worker of `--nproc N` runs."""
    from gridcast.errors import InputError

    if "fit" not in argv:
        raise InputError("--nproc works from the command line (`gridcast fit ... --nproc N`)")
    command, skip = [], False
    for token in argv[argv.index("fit"):]:
        if skip:
            skip = False
        elif token == "--nproc":
            skip = True
        elif not token.startswith("--nproc="):
            command.append(token)
    return command


def _fit(args: argparse.Namespace, out: Path, world) -> int:
    try:
        return _train(args, out, world)
    except RuntimeError as exc:
        if not world.distributed:
            raise
        import re

        from gridcast.nextcell.distributed import RankFailed

        why = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).splitlines()[0]).split(". ")[0][:160]  # gloo's source location off
        raise RankFailed(f"rank {world.rank} of {world.size} lost the other ranks during training "
                         f"({why}); the job stops. The state of the last finished "
                         f"epoch is in {out / 'resume'}: rerun the same command with --resume to continue") from None


def _train(args: argparse.Namespace, out: Path, world) -> int:
    from gridcast.nextcell.config import default_config
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.nextcell.plots import plot_training_curves
    from gridcast.nextcell.training import TrainConfig, training_memory_bytes

    if args.stream:
        from gridcast.ingest.dataset import DatasetStream
        from gridcast.ingest.prepare import check_given_grid

        stream = DatasetStream(args.data, collapse=args.collapse)  # a one-line error for anything else
        check_given_grid(args.data, stream.grid, args.cell_size, args.step)  # as for a gridded file in memory
    else:
        ready = prepare_data(args.data, args, collapse=args.collapse)
        tracks, grid, prep = ready.tracks, ready.grid, ready.preprocessing
    config = default_config(cell=args.cell, target=args.target, hidden=args.hidden, layers=args.layers,
                            embed=args.embed, dropout=args.dropout, init_state=args.init_state,
                            max_move=args.max_move, offset_loss=args.offset_loss, end_of_route=args.end_of_route,
                            **({"head": args.head} if args.head is not None else {}))
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, clip_norm=args.clip,
                        patience=args.patience, seed=args.seed)
    log = out / "train_log.jsonl"
    started = time.perf_counter()
    common = dict(val_fraction=args.val_fraction, train=train, log_path=log, out_dir=out,
                  progress=not args.no_progress and not args.json and world.main, resume=args.resume,
                  skip_nonfinite=args.skip_nonfinite, calibrate=not args.no_calibrate)
    if args.stream:
        model = Forecaster(config, stream.grid).fit_stream(  # --memory-limit checked on the surveyed cells
            stream, before_training=lambda every: _check_memory(args, every, config, train, training_memory_bytes),
            **common)
        tracks = model.train_tracks_  # training + validation tracks, as `tracks` is in memory
    else:
        _check_memory(args, tracks, config, train, training_memory_bytes)
        model = Forecaster(config, grid)
        model = model.fit(tracks, preprocessing=prep, **common)  # evaluate/predict prepare raw input the same way
    result = model.result_
    if not world.main:
        return 0
    plot = plot_training_curves(out / "training.png", {f"{args.cell}/{args.target}": result.history})
    summary = {"out": str(out), "tracks": len(tracks), "cells": len(model.vocab_.cells),
               "epochs": len(result.history), "best_epoch": result.best_epoch,
               "best_val_loss": result.best_val_loss, "seconds": round(time.perf_counter() - started, 2),
               "plot": str(plot), "calibration": model.calibration_.to_dict(),
               "dwell_features": bool(model.config.dwell_features), "end_of_route": model.config.end_of_route,
               "stay_term": model.stay_term, "last_move": model.config.last_move if model.fusion else None,
               "processes": world.size}
    if args.json:
        print_json(summary)
    else:
        processes = f" by {world.size} processes" if world.distributed else ""
        print(f"trained {args.cell}/{args.target} on {len(tracks)} tracks ({summary['cells']} cells){processes} "
              f"in {summary['seconds']} s: best epoch {result.best_epoch} of {summary['epochs']}, "
              f"validation loss {result.best_val_loss:.4f}")
        print(f"inputs: dwell counts {'on' if model.config.dwell_features else 'off'}, stay term "
              f"{'on' if model.stay_term else 'off'}, last move {'entering' if model.move_context else 'last step'} (tracks "
              f"{'stay' if model.config.dwell_features else 'never stay'} in cells); end of route "
              f"{'learned' if model.config.learns_end else 'never predicted'} ({args.end_of_route})")
        c = model.calibration_
        if c.method == "temperature":
            print(f"calibrated on {c.steps} validation steps: temperature {c.temperature:.3f} "
                  f"(validation NLL {c.nll_before:.4f} -> {c.nll_after:.4f})")
        print(f"model written to {out} (training log: {log}; loss and gradient-norm curves: {plot})")
    return 0


def _check_memory(args: argparse.Namespace, tracks: list, config, train, estimate) -> None:
    """Refuse, before anything is allocated, a job whose training step would not fit --memory-limit:
    the vocabulary is at most the distinct cells, the length the longest chunk."""
    import numpy as np

    cells = np.concatenate([np.asarray(t.cells).reshape(-1, 2) for t in tracks]) if tracks else np.zeros((0, 2))
    vocab = len(np.unique(cells, axis=0)) + 2
    moves = (2 * config.max_move + 1) ** 2 + 1
    outputs = vocab + moves if config.target == "cell" else moves
    length = min(max((len(t) for t in tracks), default=1), train.max_len)
    chunks = sum(-(-len(t) // train.max_len) for t in tracks)  # long tracks train as max_len chunks
    needed = estimate(vocab, outputs, max(1, min(train.batch_size, chunks)), length, config.embed,
                      config.hidden, config.layers)
    limit = args.memory_limit
    if needed > limit:
        raise memory_refusal(f"training on {vocab - 2} distinct cells x batch {train.batch_size} x {length} steps",
                             needed, limit, "use a larger --cell-size or a smaller --batch-size")
