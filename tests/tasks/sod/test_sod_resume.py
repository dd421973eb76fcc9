"""``sod train`` runs through the engine: killed at any step and resumed, the decoder, the best
checkpoint and every logged row are bit-identical to the uninterrupted run; a preemption signal
checkpoints and exits 128 + N (CPU, ``trainer.deterministic=true``)."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

TINY = [
    "backbone=tiny",
    "data.synthetic.n=40",  # 4 validation pairs, 36 training pairs: 4 steps of 8 per epoch
    "data.synthetic.n_test=4",
    "data.synthetic.size=40",
    "image_size=40",
    "batch_size=8",
    "decoder_dim=8",
    "trainer.max_epochs=3",  # 12 steps
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "log_every_n_steps=1",
]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "SOLO_RGBD_CACHE": str(out.parent / "cache")}
    cmd = [sys.executable, "-m", "solo_rgbd.cli", "sod", "train", *TINY, f"output_dir={out}"]
    return subprocess.Popen(
        [*cmd, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def _rows(run: Path) -> list[dict[str, str]]:
    path = run / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _wait_for_step(proc: subprocess.Popen, run: Path, step: int) -> None:
    deadline = time.time() + 600
    while sum(1 for r in _rows(run) if r.get("train/loss_step")) < step:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.005)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sod") / "ref"
    rc, err = _finish(_start(out, "run_name=ref"))
    assert rc == 0, err[-3000:]
    return out / "train" / "ref"


def _assert_identical(run: Path, reference: Path) -> None:
    for name in ("last.ckpt", "best.ckpt"):
        a, b = _weights(reference / "checkpoints" / name), _weights(run / "checkpoints" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = _rows(run)
    assert rows == _rows(reference)  # every loss and validation score, no row lost or doubled
    assert [r["step"] for r in rows if r["train/loss_step"]] == [str(s) for s in range(12)]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, reference):
    kill_at = random.Random().randint(2, 11)
    out = tmp_path / "out"
    extra = ["run_name=k", "checkpoint.every_n_steps=1"]
    proc = _start(out, *extra)
    _wait_for_step(proc, out / "train" / "k", kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rc, err = _finish(_start(out, *extra, "resume=last"))
    assert rc == 0, f"killed at step {kill_at}: {err[-3000:]}"
    _assert_identical(out / "train" / "k", reference)


def test_sigterm_checkpoints_exits_143_and_resumes_bit_identical(tmp_path, reference):
    out = tmp_path / "out"
    proc = _start(out, "run_name=t")  # only epoch checkpoints: the signal adds one
    _wait_for_step(proc, out / "train" / "t", 6)  # inside the second epoch
    proc.send_signal(signal.SIGTERM)
    rc, err = _finish(proc)
    assert rc == 143, err[-3000:]
    assert "stopped by signal 15" in err and "resume=" in err
    stopped = torch.load(out / "train" / "t" / "checkpoints" / "last.ckpt", weights_only=True)
    assert 6 <= stopped["global_step"] < 12 and stopped["run_kind"] == "sod"
    rc, err = _finish(_start(out, "run_name=t", "resume=last"))
    assert rc == 0, err[-3000:]
    _assert_identical(out / "train" / "t", reference)


def test_a_pretraining_checkpoint_is_refused_as_a_sod_resume(tmp_path, reference):
    ckpt = reference / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=False)
    state["run_kind"] = "mbcf"
    run = tmp_path / "out" / "train" / "x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text((reference / "config.yaml").read_text())
    torch.save(state, run / "checkpoints" / "last.ckpt")
    rc, err = _finish(_start(tmp_path / "out", "run_name=x", "resume=last"))
    assert rc == 2 and "written by a 'mbcf' run, not 'sod'" in err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
