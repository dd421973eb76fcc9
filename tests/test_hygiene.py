"""Issue 17's hygiene: leftovers of killed writers are cleaned, modes follow the umask, a
second Ctrl-C says so and exits 130."""

import os
import signal
import stat
from pathlib import Path

import pytest

from solo_rgbd.errors import Aborted
from solo_rgbd.utils.atomic import atomic_dir, atomic_write_text, remove_leftovers
from tests.conftest import SHORT_MBCF, tiny_overrides


def test_leftovers_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "last.ckpt"
    (tmp_path / ".last.ckpt.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".last.ckpt.def456.partial").mkdir()
    (tmp_path / ".last.ckpt.def456.partial" / "x").write_text("x")
    keep = [tmp_path / "last.ckpt.tmp", tmp_path / ".other.abc.tmp", tmp_path / "notes.txt"]
    for k in keep:
        k.write_text("mine")
    assert remove_leftovers(target) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(k.name for k in keep)


def test_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o002)  # a lab's shared group
    try:
        atomic_write_text("x", tmp_path / "config.yaml")
        with atomic_dir(tmp_path / "export") as tmp:
            (tmp / "a").write_text("a")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == 0o775


def test_a_second_ctrl_c_aborts_with_130_and_a_message():
    from solo_rgbd.engine.signals import SignalWatch

    watch = SignalWatch()
    watch._handle(signal.SIGINT, None)  # the first: finish the step, checkpoint
    assert watch.signum == signal.SIGINT
    with pytest.raises(Aborted, match="second Ctrl-C") as info:
        watch._handle(signal.SIGINT, None)
    assert info.value.exit_code == 130


def test_a_resume_with_unchanged_settings_keeps_no_backup_config(tmp_path):
    from solo_rgbd.cli import main

    args = ["pretrain", *tiny_overrides(tmp_path, run_name="r", **SHORT_MBCF)]
    assert main([*args, "trainer.max_epochs=1"]) == 0
    assert main([*args, "trainer.max_epochs=1", "resume=last"]) == 0
    run = tmp_path / "outputs" / "mbcf" / "r"
    assert not list(run.glob("config.before-resume-*"))
    assert "resume: null" in (run / "config.yaml").read_text()


def test_a_synthetic_generation_killed_earlier_leaves_nothing_after_the_next(tmp_path):
    from solo_rgbd.data.synthetic import write_synthetic

    stale = tmp_path / ".ds.x1y2.partial"
    (stale / "RGB").mkdir(parents=True)
    (stale / "RGB" / "00000.jpg").write_bytes(b"half")
    write_synthetic(tmp_path / "ds", n=4, size=32, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.slow
def test_generator_workers_die_with_their_killed_parent(tmp_path):
    import subprocess
    import sys
    import time

    code = (
        "import sys; from solo_rgbd.data.synthetic import write_synthetic; "
        "write_synthetic(sys.argv[1], n=4000, size=128, workers=2)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ds")])

    def workers():
        out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    deadline = time.time() + 60
    while len(workers()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    children = workers()
    assert len(children) == 2
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{c}") for c in children) and time.time() < deadline:
        time.sleep(0.2)
    alive = [
        c
        for c in children
        if os.path.exists(f"/proc/{c}")
        and "Z" not in Path(f"/proc/{c}/stat").read_text().split()[2]
    ]
    assert alive == []
