"""One writer per model directory: the advisory lock, the race of two saving processes, file modes,
and no NaN weights on disk."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from gridcast.cli import main
from gridcast.errors import CheckpointError
from gridcast.nextcell.checkpoint import DirectoryBusy, directory_lock, load_checkpoint, save_checkpoint

SAVER = textwrap.dedent("""
    import sys, time, torch
    from gridcast.nextcell.checkpoint import save_checkpoint
    from pathlib import Path
    root, seed, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    Path(root, f"ready-{seed}").touch()
    while not Path(root, "go").exists():
        time.sleep(0.005)
    g = torch.Generator().manual_seed(seed)
    i, end = 0, time.time() + seconds
    while time.time() < end:
        save_checkpoint(f"{root}/d{i % 5}", {"w": torch.randn(64, generator=g)}, {"writer": seed, "i": i})
        i += 1
    print(i)
""")


def test_two_processes_saving_in_a_loop_leave_every_directory_loadable(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), str(seed), "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    deadline = time.time() + 60  # both import torch first, then save together for 3 s
    while not all((tmp_path / f"ready-{seed}").exists() for seed in (1, 2)) and time.time() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    saves = [int(o[0]) for o in outs]
    assert min(saves) > 5, saves  # they really raced
    for i in range(5):
        tensors, config = load_checkpoint(tmp_path / f"d{i}")
        assert config["writer"] in (1, 2) and tensors["w"].shape == (64,)
        weights = sorted(p.name for p in (tmp_path / f"d{i}").glob("weights-*.safetensors"))
        assert config["weights"] in weights


def test_cleanup_keeps_weights_another_writer_created(tmp_path):
    save_checkpoint(tmp_path, {"w": torch.zeros(3)}, {})
    foreign = tmp_path / "weights-0123456789abcdef.safetensors"  # as if another process had written it
    foreign.write_bytes(b"x")
    save_checkpoint(tmp_path, {"w": torch.ones(3)}, {})
    save_checkpoint(tmp_path, {"w": torch.full((3,), 2.0)}, {})
    assert foreign.exists()
    assert len(list(tmp_path.glob("weights-*.safetensors"))) == 2  # the foreign file and the current one
    assert torch.equal(load_checkpoint(tmp_path)[0]["w"], torch.full((3,), 2.0))


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from gridcast.nextcell.checkpoint import directory_lock
        with directory_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DirectoryBusy, match=f"pid {holder.pid}"):
            with directory_lock(tmp_path):
                pass
        with pytest.raises(DirectoryBusy):
            with directory_lock(tmp_path, wait_s=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with directory_lock(tmp_path):  # released with its holder
        with directory_lock(tmp_path):  # re-entrant within one process
            save_checkpoint(tmp_path, {"w": torch.zeros(1)}, {})


def test_second_fit_on_a_directory_in_use_exits_2(tmp_path, capsys):
    out = tmp_path / "m"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from gridcast.nextcell.checkpoint import directory_lock
        with directory_lock({str(out)!r}):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        data = tmp_path / "d.csv"
        data.write_text("track,time,x,y\n" + "".join(f"t{i},{t},{t},{i}\n" for i in range(4) for t in range(6)))
        code = main(["fit", str(data), "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--out", str(out),
                     "--epochs", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {holder.pid}" in err and err.count("\n") == 1
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_model_files_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "m", {"w": torch.zeros(2)}, {})
    finally:
        os.umask(old)
    for path in (tmp_path / "m").iterdir():
        if path.name != ".gridcast.lock":
            assert path.stat().st_mode & 0o777 == 0o640, path


def test_non_finite_weights_are_never_saved(tmp_path):
    with pytest.raises(CheckpointError, match="'w' holds NaN/inf"):
        save_checkpoint(tmp_path / "m", {"w": torch.tensor([1.0, float("nan")])}, {})
    assert not (tmp_path / "m" / "config.json").exists()
    assert not list((tmp_path / "m").glob("weights-*"))
