"""Runs on file systems users train on: tmpfs, and file systems without ``flock`` (Lustre
without ``-o flock``, some NFS mounts), under the oldest ``filelock`` that setup.cfg admits and
the installed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import SHORT_MBCF, tiny_overrides

pytestmark = pytest.mark.slow

OLDEST_FILELOCK = "3.12.0"  # setup.cfg: filelock>=3.12

# every flock of the process fails as on a file system without it
NO_FLOCK = """
import errno, fcntl, sys
def flock(fd, op):
    raise OSError(errno.ENOSYS, "Function not implemented")
fcntl.flock = flock
from solo_rgbd.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module", params=["installed", "oldest"])
def filelock_path(request, tmp_path_factory) -> str:
    """PYTHONPATH for a filelock release: the installed one, or the oldest setup.cfg admits."""
    if request.param == "installed":
        return ""
    target = tmp_path_factory.mktemp("filelock_oldest")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    got = subprocess.run(
        [*cmd, f"filelock=={OLDEST_FILELOCK}"], capture_output=True, text=True, timeout=300
    )
    if got.returncode != 0:
        pytest.skip(f"filelock {OLDEST_FILELOCK} could not be installed: {got.stderr[-300:]}")
    return str(target)


def _env(tmp_path: Path, pythonpath: str = "") -> dict[str, str]:
    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path / "cache")}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")])
    return env


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["pretrain", *tiny_overrides(tmp_path, **SHORT_MBCF), "run_name=r", *extra]


def test_without_flock_a_run_locks_with_a_pid_file_resumes_after_kill_and_refuses_a_twin(
    tmp_path, filelock_path
):
    env = _env(tmp_path, filelock_path)
    version = subprocess.run(
        [sys.executable, "-c", "import filelock; print(filelock.__version__)"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert version == (OLDEST_FILELOCK if filelock_path else __import__("filelock").__version__)
    run = tmp_path / "outputs" / "mbcf" / "r"
    # a live holder of the folder (as a run would be): a second run gets exit 2 naming it
    hold = NO_FLOCK.split("from solo_rgbd.cli")[0] + (
        "from solo_rgbd.utils.locks import hold_run_lock\n"
        "lock = hold_run_lock(sys.argv[1]); print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\n" + hold, str(run)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    twin = subprocess.run(
        [sys.executable, "-c", NO_FLOCK, *_args(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert twin.returncode == 2, twin.stderr
    assert f"process {holder.pid} on " in twin.stderr and "Traceback" not in twin.stderr
    assert "has no flock" in twin.stderr and "Warning" not in twin.stderr
    holder.kill()
    holder.wait()
    # the dead holder's lock is taken over; a run killed with -9 resumes
    long = ["checkpoint.every_n_steps=1", "method_kwargs.stage1_epochs=4"]
    first = subprocess.Popen(
        [sys.executable, "-c", NO_FLOCK, *_args(tmp_path, *long)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not (run / "checkpoints" / "last.ckpt").is_file():
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    started = first.stderr.read()
    notes = [line for line in started.splitlines() if "has no flock" in line]
    assert any(str(run) in line for line in notes), started  # one line per locked folder
    assert "Warning" not in started and "Traceback" not in started
    assert (run / ".run.pid").is_file()  # the dead process's lock is left behind...
    resumed = subprocess.run(
        [sys.executable, "-c", NO_FLOCK, *_args(tmp_path, *long, "resume=last")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr  # ...and taken over
    err = resumed.stderr
    notes = [line for line in err.splitlines() if "has no flock" in line]
    assert len(notes) == 1 and str(run) in notes[0], err  # the run folder's
    assert "Warning" not in err and "warn(" not in err and "Traceback" not in err
    assert not (run / ".run.pid").exists()  # released at the end
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20


def test_an_output_folder_on_tmpfs_works(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm (tmpfs) here")
    out = Path(__import__("tempfile").mkdtemp(dir=shm))
    try:
        args = _args(tmp_path, f"output_dir={out}", "checkpoint.every_n_epochs=1")
        proc = subprocess.run(
            [sys.executable, "-m", "solo_rgbd.cli", *args],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        run = out / "mbcf" / "r"
        from solo_rgbd.nn.encoder_io import verify_export

        assert verify_export(run / "encoders")["global_step"] == 8
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 8
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    finally:
        __import__("shutil").rmtree(out, ignore_errors=True)
