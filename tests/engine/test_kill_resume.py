"""A run killed at any step and resumed ends bit-identical to the uninterrupted run (CPU,
``trainer.deterministic=true``); preemption signals checkpoint and exit 128 + N."""

import csv
import json
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
    "data.synthetic.n=40",
    "data.synthetic.n_test=8",
    "data.synthetic.size=40",
    "data.image_size=40",
    "data.batch_size=8",
    "augmentations.crop_size=32",
    "trainer.enable_progress_bar=false",
    "log_every_n_steps=1",
    "method_kwargs.stage1_epochs=2",
    "method_kwargs.stage2_epochs=2",  # 4 epochs x 5 steps, the stage switch at step 10
    "method_kwargs.queue_size=20",
    "trainer.deterministic=true",
    "checkpoint.every_n_epochs=1",  # the kill tests' own policy: every epoch's end
]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "SOLO_RGBD_CACHE": str(out / "cache")}
    cmd = [sys.executable, "-m", "solo_rgbd.cli", "pretrain", *TINY, f"output_dir={out}", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def _steps_logged(run: Path) -> int:
    path = run / "logs" / "metrics.csv"
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        return sum(1 for r in csv.DictReader(f) if r.get("loss"))


def _wait_for_step(proc: subprocess.Popen, run: Path, step: int) -> None:
    deadline = time.time() + 600
    while _steps_logged(run) < step:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.005)


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    rc, err = _finish(_start(out, "run_name=ref"))
    assert rc == 0, err[-3000:]
    return out / "mbcf" / "ref"


def _assert_identical(run: Path, reference: Path) -> float:
    a, b = _state(reference), _state(run)
    assert a.keys() == b.keys()
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert diff == 0.0  # weights, momentum encoders, queues and their pointers
    assert _rows(run) == _rows(reference)  # every metric of every step, no row lost or doubled
    for name in ("rgb.safetensors", "depth.safetensors", "encoders.json"):  # the same bytes
        mine, theirs = run / "encoders" / name, reference / "encoders" / name
        assert mine.read_bytes() == theirs.read_bytes()
    return diff


@pytest.mark.parametrize("every_n_steps, background", [(1, "false"), (0, "true"), (2, "auto")])
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(
    tmp_path, reference, every_n_steps, background
):
    # any step of the 20, either stage, once the first checkpoint is on disk (step N's is
    # written before step N + 1 is logged, and swapped in by the thread before step N + 2's;
    # epoch 0's when only epochs are checkpointed); one killed run writes in the background,
    # the others in the loop (auto on CPU)
    kill_at = random.Random().randint(every_n_steps + 2 if every_n_steps else 6, 19)
    out = tmp_path / "out"
    run = out / "mbcf" / "k"
    extra = ["run_name=k", f"checkpoint.every_n_steps={every_n_steps}"]
    extra.append(f"checkpoint.async_save={background}")
    proc = _start(out, *extra)
    _wait_for_step(proc, run, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = run / "checkpoints" / "last.ckpt"
    # the last checkpoint is whole (a background write may have been cut short beside it)
    assert "state_dict" in torch.load(ckpt, weights_only=True)
    rc, err = _finish(_start(out, *extra, "resume=last"))
    assert rc == 0, f"killed at step {kill_at}: {err[-3000:]}"
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.ckpt"]  # no temp files
    _assert_identical(run, reference)
    killed, resumed = json.loads((run / "run.json").read_text())["sessions"]
    assert killed["status"] == "running" and killed["ended"] is None  # SIGKILL: no end
    assert resumed["status"] == "finished" and resumed["resumed_from"].endswith("last.ckpt")


# the checkpoint of step STEP (default 10, the stage switch) or (EXPORT) the export of that step
# stalls once its bytes are in the temporary file or folder, before the rename; the marker
# says it started
SLOW_WRITE = """
import sys, time, pathlib, torch
import solo_rgbd.engine.checkpoint as ck
import solo_rgbd.nn.encoder_io as eio
from solo_rgbd.utils.atomic import atomic_path
marker, pause, step, what = pathlib.Path(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:5]
step = int(step)
def slow(obj, path):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        if what == "checkpoint" and obj.get("global_step") == step:
            marker.write_text(str(step))
            time.sleep(pause)
write = eio._write_synced
def slow_export(path, data):
    write(path, data)
    mine = path.name == "encoders.json" and f'"global_step": {step},' in data.decode()
    if what == "export" and mine:
        marker.write_text(str(step))
        time.sleep(pause)
ck.atomic_torch_save, eio._write_synced = slow, slow_export
from solo_rgbd.cli import main
sys.exit(main(sys.argv[5:]))
"""


def _start_slow(
    out: Path,
    marker: Path,
    pause: float,
    *extra: str,
    step: int = 10,
    mode: str = "true",
    what: str = "checkpoint",
) -> subprocess.Popen:
    env = {**os.environ, "SOLO_RGBD_CACHE": str(out / "cache")}
    cmd = [sys.executable, "-c", SLOW_WRITE, str(marker), str(pause), str(step), what]
    cmd += ["pretrain", *TINY, f"output_dir={out}", f"checkpoint.async_save={mode}", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, path: Path) -> None:
    deadline = time.time() + 600
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.005)


def test_sigkill_during_a_background_write_keeps_the_previous_checkpoint(tmp_path, reference):
    out, marker = tmp_path / "out", tmp_path / "writing"
    run = out / "mbcf" / "w"
    proc = _start_slow(out, marker, 60.0, "run_name=w")
    _wait_for(proc, marker)  # step 10's checkpoint is being written...
    _wait_for_step(proc, run, 12)  # ...while the loop trains on, not waiting for it
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 5  # the previous one
    assert any(p.name.endswith(".tmp") for p in ckpt.parent.iterdir())  # the cut-short write
    rc, err = _finish(_start(out, "run_name=w", "resume=last"))
    assert rc == 0, err[-3000:]
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.ckpt"]
    _assert_identical(run, reference)


def test_sigkill_while_an_export_waits_for_a_checkpoint_write_keeps_the_previous_export(
    tmp_path, reference
):
    """Step 8's checkpoint (every 4 steps) stalls in the background writer; the export of epoch
    1 (step 10) waits for it (one write in flight). A kill then leaves the export and
    checkpoint of epoch 0, whole, and the resumed run is the reference."""
    from solo_rgbd.nn.encoder_io import verify_export

    out, marker = tmp_path / "out", tmp_path / "writing"
    run = out / "mbcf" / "q"
    every = "checkpoint.every_n_steps=4"
    proc = _start_slow(out, marker, 60.0, "run_name=q", every, step=8)
    _wait_for(proc, marker)  # step 8's checkpoint is being written...
    _wait_for_step(proc, run, 10)  # ...the loop reached the end of epoch 1...
    time.sleep(1.0)  # ...and waits to write its export
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 5  # epoch 0's
    assert not list(run.glob(".encoders.*"))  # nothing of epoch 1's export was built
    manifest = verify_export(run / "encoders")  # whole: every hash checks
    assert (manifest["epoch"], manifest["global_step"]) == (0, 5)
    rc, err = _finish(_start(out, "run_name=q", every, "checkpoint.async_save=true", "resume=last"))
    assert rc == 0, err[-3000:]
    _assert_identical(run, reference)
    assert not list(run.glob(".encoders.*")) and not list(run.glob("checkpoints/.*"))


@pytest.mark.parametrize("what", ["export", "checkpoint"])
def test_sigkill_during_an_export_or_between_it_and_its_checkpoint_keeps_both(
    tmp_path, reference, what
):
    """In the loop (async_save=false), epoch 1's end writes its export, then its checkpoint. A
    kill while the export's folder is built leaves epoch 0's export and checkpoint; a kill
    after the export is in place, while the checkpoint is written, leaves epoch 1's export
    beside epoch 0's checkpoint. Either way the resumed run is the reference."""
    from solo_rgbd.nn.encoder_io import verify_export

    out, marker = tmp_path / "out", tmp_path / "writing"
    run = out / "mbcf" / "e"
    proc = _start_slow(out, marker, 60.0, "run_name=e", mode="false", what=what)
    _wait_for(proc, marker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    exported = 5 if what == "export" else 10
    assert verify_export(run / "encoders")["global_step"] == exported
    rc, err = _finish(_start(out, "run_name=e", "resume=last"))
    assert rc == 0, err[-3000:]
    _assert_identical(run, reference)
    assert not list(run.glob(".encoders.*")) and not list(run.glob("checkpoints/.*"))


def test_a_signal_during_a_background_write_waits_for_it_then_checkpoints(tmp_path, reference):
    out, marker = tmp_path / "out", tmp_path / "writing"
    run = out / "mbcf" / "s"
    proc = _start_slow(out, marker, 2.0, "run_name=s")
    _wait_for(proc, marker)
    proc.send_signal(signal.SIGTERM)
    rc, err = _finish(proc)
    assert rc == 128 + signal.SIGTERM, err[-3000:]
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 10 < step < 20 and f"after step {step}" in err  # the step after the slow write
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    rc, err = _finish(_start(out, "run_name=s", "resume=last"))
    assert rc == 0, err[-3000:]
    _assert_identical(run, reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_preemption_signal_checkpoints_the_step_and_exits_128_plus_n(tmp_path, reference, sig):
    out = tmp_path / "out"
    run = out / "mbcf" / "p"
    proc = _start(out, "run_name=p")
    _wait_for_step(proc, run, 7)
    proc.send_signal(sig)
    rc, err = _finish(proc)
    assert rc == 128 + sig
    assert "Traceback" not in err
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 7 <= step < 20  # the step that was running when the signal came
    assert f"stopped: stopped by signal {int(sig)} after step {step}" in err
    resume = err.split("Resume exactly where it stopped with: ")[1].strip().split(" ")
    assert resume[:2] == ["solo-rgbd", "pretrain"] and resume[-1].startswith("resume=")
    rc, err = _finish(_start(out, "run_name=p", resume[-1]))
    assert rc == 0, err[-3000:]
    _assert_identical(run, reference)
    sessions = json.loads((run / "run.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["preempted", "finished"]


def _pack(synthetic: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "solo_rgbd.cli", "data", "pack", str(synthetic), str(out)]
    proc = subprocess.run([*cmd, "--size", "40", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_sigkill_then_resume_from_litdata_shards_equals_the_folder_run(tmp_path, reference):
    """data.format=litdata draws the folder's pairs in the folder's order and resumes at the
    same pair: a killed and resumed run from the shards ends bit-identical to the reference
    run from the folder."""
    found = (reference.parents[1] / "cache" / "synthetic").glob("*-train-*")
    (synthetic,) = [p for p in found if p.is_dir()]
    packed = _pack(synthetic, tmp_path / "packed")
    out = tmp_path / "out"
    run = out / "mbcf" / "k"
    extra = [
        "run_name=k",
        "checkpoint.every_n_steps=1",
        "data.format=litdata",
        f"data.path={packed}",
    ]
    proc = _start(out, *extra)
    _wait_for_step(proc, run, random.Random().randint(2, 19))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rc, err = _finish(_start(out, *extra, "resume=last"))
    assert rc == 0, err[-3000:]
    _assert_identical(run, reference)
