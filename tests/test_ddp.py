"""Data-parallel training (torchrun / `gridcast fit --nproc`), tested on 127.0.0.1 with free ports.

Each test launches real worker processes over gloo and is bounded (subprocess timeouts, and
GRIDCAST_DDP_TIMEOUT_S for the collectives), so a broken rendezvous fails instead of hanging.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_same_training, model_weights, train_log
from gridcast.nextcell.distributed import World, epoch_seed, free_port, rank_share
from gridcast.nextcell.forecaster import Forecaster

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
FIT = ["--x-col", "x", "--y-col", "y", "--cell-size", "1", "--cell", "lstm", "--hidden", "16",
       "--patience", "100", "--no-progress", "--json"]


def _write_data(path: Path, n_tracks: int = 26, length: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["track,time,x,y"]
    for i in range(n_tracks):
        pos = rng.integers(0, 6, size=2)
        for t in range(int(rng.integers(length // 2, length + 1))):  # unequal lengths: bucketing matters
            lines.append(f"t{i},{t},{pos[0]},{pos[1]}")
            pos = pos + rng.choice([[1, 0], [0, 1], [1, 1], [0, 0]])
    path.write_text("\n".join(lines) + "\n")
    return path


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "GRIDCAST_DDP_TIMEOUT_S": "30"}


def _torchrun(nproc: int, data: Path, out: Path, *extra: str, nnodes: int = 1, endpoint: str | None = None) -> list:
    endpoint = endpoint or f"127.0.0.1:{free_port()}"
    return [TORCHRUN, "--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint, "--rdzv-id", "gridcast-test", "--max-restarts", "0",
            "-m", "gridcast", "fit", str(data), *FIT, "--out", str(out), *extra]


def _plain(data: Path, out: Path, *extra: str) -> list:
    return [sys.executable, "-m", "gridcast", "fit", str(data), *FIT, "--out", str(out), *extra]


def _run(cmd: list, timeout: float = 55) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_rank_shares_cover_a_global_batch_once_in_order():
    batch = np.arange(7)
    shares = [rank_share(batch, World(r, 3)) for r in range(3)]
    assert np.concatenate(shares).tolist() == batch.tolist()
    assert [len(s) for s in shares] == [3, 2, 2]
    assert len(rank_share(np.arange(1), World(1, 2))) == 0  # an empty share: the rank steps, adding nothing
    assert len({epoch_seed(0, 3, r) for r in range(4)}) == 4  # each rank its own dropout masks


def test_world_size_1_under_torchrun_equals_plain_fit_bit_for_bit(tmp_path):
    data = _write_data(tmp_path / "data.csv")
    settings = ("--epochs", "3", "--batch-size", "4")
    plain = json.loads(_run(_plain(data, tmp_path / "plain", *settings)).stdout)
    ddp = json.loads(_run(_torchrun(1, data, tmp_path / "ddp", *settings)).stdout)
    assert ddp["processes"] == 1 and plain["best_val_loss"] == ddp["best_val_loss"]
    a, b = model_weights(tmp_path / "plain"), model_weights(tmp_path / "ddp")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [e["train_loss"] for e in train_log(tmp_path / "plain")] == [e["train_loss"] for e in train_log(tmp_path / "ddp")]


def test_two_ranks_with_half_batches_match_one_rank_with_the_whole_batch(tmp_path):
    data = _write_data(tmp_path / "data.csv")
    common = ("--epochs", "2", "--dropout", "0", "--no-calibrate")
    one = json.loads(_run(_plain(data, tmp_path / "one", "--batch-size", "6", *common)).stdout)
    two = json.loads(_run(_torchrun(2, data, tmp_path / "two", "--batch-size", "3", *common)).stdout)
    assert two["processes"] == 2 and one["tracks"] == two["tracks"]
    assert_same_training(tmp_path / "one", tmp_path / "two")
    other = json.loads(_run(_plain(data, tmp_path / "other", "--batch-size", "3", *common)).stdout)
    assert other["best_val_loss"] != pytest.approx(one["best_val_loss"], rel=1e-5)  # the comparison can fail


def test_vocabulary_and_prior_are_identical_on_every_rank(tmp_path):
    data = _write_data(tmp_path / "data.csv")
    script = tmp_path / "worker.py"
    script.write_text(
        "import hashlib, json, sys\n"
        "import numpy as np\n"
        "from gridcast.cli.app import build_parser\n"
        "from gridcast.cli.common import prepare_data\n"
        "from gridcast.nextcell.distributed import join_from_env, leave\n"
        "from gridcast.nextcell.forecaster import Forecaster\n"
        "world = join_from_env()\n"
        "args = build_parser().parse_args(['fit', sys.argv[1], *sys.argv[3:], '--out', 'unused'])\n"
        "f = Forecaster(cell='lstm', hidden=8).fit(prepare_data(args.data, args, collapse=False), epochs=1,\n"
        "                                          batch_size=3, calibrate=False)\n"
        "p = f.prior_\n"
        "prior = repr([sorted((repr(k), sorted(v.items())) for k, v in n.items()) for n in (p.n1, p.n2)])\n"
        "digest = hashlib.sha256(f.vocab_.cells.astype(np.int64).tobytes() + prior.encode())\n"
        "weights = hashlib.sha256(b''.join(v.numpy().tobytes() for v in f.net_.state_dict().values()))\n"
        "out = {'vocab_prior': digest.hexdigest(), 'weights': weights.hexdigest(), 'size': world.size,\n"
        "       'transitions': len(p.n1)}\n"
        "open(f'{sys.argv[2]}/rank{world.rank}.json', 'w').write(json.dumps(out))\n"
        "leave()\n")
    cmd = [TORCHRUN, "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
           f"127.0.0.1:{free_port()}", str(script), str(data), str(tmp_path), *FIT[:6]]
    _run(cmd)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["size"] == 2 and ranks[0]["transitions"] > 10
    assert ranks[0]["vocab_prior"] == ranks[1]["vocab_prior"]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the replicas in step


def test_two_nodes_on_localhost_train_one_loadable_model(tmp_path):
    data = _write_data(tmp_path / "data.csv")
    endpoint = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / "node0", tmp_path / "node1"]
    procs = [subprocess.Popen(_torchrun(1, data, outs[n], "--epochs", "2", "--batch-size", "3", nnodes=2,
                                        endpoint=endpoint), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(2)]
    results = [p.communicate(timeout=55) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    written = [o for o in outs if (o / "config.json").exists()]
    assert len(written) == 1, written  # rank 0 alone writes
    summaries = [json.loads(r[0]) for r in results if r[0].strip()]
    assert len(summaries) == 1 and summaries[0]["processes"] == 2
    model = Forecaster.load(written[0])
    assert len(model.predict_next(model.train_tracks_[0].cells[:3], k=3)) == 3


def _worker_pids(parent: int) -> dict[int, int]:
    """rank -> pid of the workers a `gridcast fit --nproc` launcher started."""
    pids = {}
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                pids[int(item[5:])] = int(child)
    return pids


def test_killing_a_rank_stops_the_job_with_a_message_and_resume_continues(tmp_path):
    data = _write_data(tmp_path / "data.csv", n_tracks=40, length=40)
    out = tmp_path / "model"
    settings = ["--epochs", "8", "--batch-size", "2", "--nproc", "2"]
    cmd = _plain(data, out, *settings)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.time() + 40
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    pids = _worker_pids(proc.pid)
    assert sorted(pids) == [0, 1], pids
    os.kill(pids[1], signal.SIGKILL)
    started = time.time()
    _, err = proc.communicate(timeout=40)
    assert time.time() - started < 35  # stops, does not hang
    assert proc.returncode == 1, err[-2000:]
    assert "worker rank 1 of 2 was killed by SIGKILL" in err and "--resume" in err
    assert "Traceback" not in err.split("gridcast fit: error:")[-1]
    done = len(train_log(out))
    assert 2 <= done < 8
    _run(cmd + ["--resume"])
    epochs = [e["epoch"] for e in train_log(out)]
    assert epochs == list(range(1, 9))
    model = Forecaster.load(out)
    assert len(model.predict_next(model.train_tracks_[0].cells[:3], k=2)) == 2


def test_nproc_under_torchrun_and_out_of_range_are_refused(tmp_path):
    data = _write_data(tmp_path / "data.csv")
    bad = subprocess.run(_plain(data, tmp_path / "m", "--nproc", "0"), env=_env(), capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and "--nproc" in bad.stderr and "Traceback" not in bad.stderr
    worker = {**_env(), "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    nested = subprocess.run(_plain(data, tmp_path / "m", "--nproc", "2"), env=worker, capture_output=True,
                            text=True, timeout=55)  # what a torchrun worker sees
    assert nested.returncode == 2 and "under torchrun give --nproc-per-node" in nested.stderr
    assert "Traceback" not in nested.stderr


def test_readme_torchrun_example_runs_and_writes_loadable_models(tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    heading = "### Training on several processes or machines: torchrun"
    section = readme[readme.index(heading):]
    section = section[:re.search(r"^##+ ", section[len(heading):], flags=re.M).start() + len(heading)]
    (block,) = re.findall(r"^```\n(.*?)^```", section, flags=re.M | re.S)
    (tmp_path / "src").symlink_to(Path(__file__).resolve().parents[1] / "src")
    env = {**_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=55)
    assert done.returncode == 0, done.stderr[-3000:]
    outs = re.findall(r"--out (\S+)", block)
    assert len(outs) == 2
    for out in outs:
        assert len(Forecaster.load(tmp_path / out).vocab_.cells) > 10
    assert "by 2 processes" in done.stdout


def test_ranks_with_other_data_are_refused_before_training(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    datas = [_write_data(tmp_path / "a.csv", seed=0), _write_data(tmp_path / "b.csv", seed=1)]
    procs = [subprocess.Popen(_torchrun(1, datas[n], tmp_path / f"m{n}", "--epochs", "2", nnodes=2, endpoint=endpoint),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(2)]
    errors = [p.communicate(timeout=55)[1] for p in procs]
    assert all(p.returncode != 0 for p in procs), errors  # torchrun itself exits 1 when a worker fails
    assert all("other data or training settings than rank 0" in e for e in errors), errors
    assert not any((tmp_path / f"m{n}" / "config.json").exists() for n in range(2))
