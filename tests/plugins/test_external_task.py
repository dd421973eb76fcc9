"""A task from another package (``tests/plugins/depthseg``: one module, one YAML and one entry
point, no edit to solo_rgbd/) runs through ``compare`` with ``task=depthseg``: every cell trains
the task through the engine and scores it, and the tables use the task's own metrics."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins import plugin_env

pytestmark = pytest.mark.slow

ITEMS = [
    "backbone=tiny",
    "data.synthetic.n=40",
    "data.synthetic.n_test=8",
    "data.synthetic.size=40",
    "image_size=40",
    "batch_size=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "lr=1.0e-2",
    "log_every_n_steps=1",
]
TINY = "[" + ", ".join(f'"{item}"' for item in ITEMS) + "]"


def _install(site: Path) -> None:
    shutil.copytree(Path(__file__).parent / "depthseg", site / "depthseg")
    meta = site / "depthseg-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: depthseg\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text(
        "[solo_rgbd.tasks]\ndepthseg = depthseg.task:TASK\n"
        "[solo_rgbd.configs]\ndepthseg = depthseg.task:DepthSegConfig\n"
    )


def test_a_plugin_task_runs_through_compare_with_its_own_metrics(tmp_path):
    site = tmp_path / "site"
    _install(site)
    env = plugin_env(site, tmp_path / "cache")
    out = tmp_path / "grid"
    args = [
        "experiment=quick",
        "task=depthseg",
        f"+depthseg={TINY}",
        f"out={out}",
        "rows=[{name: Random, init: random}, {name: Supervised, init: supervised}]",
        'supervised_overrides=["trainer.max_epochs=3"]',
        "tables=[{title: 'T: depth-aware segmentation', metrics: [mIoU, acc], "
        "rows: [Random, Supervised]}]",
    ]
    cli = [sys.executable, "-m", "solo_rgbd.cli", "compare"]
    run = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    tables = (out / "tables.md").read_text()
    assert "mIoU ↑" in tables and "pixel acc ↑" in tables and "maxF" not in tables
    for row in ("random", "supervised"):
        cell = out / "cells" / row / "seed0"
        scores = json.loads((cell / "done.json").read_text())["synthetic"]["all"]
        assert 0.0 <= scores["mIoU"] <= 1.0 and scores["n"] == 8
        task_run = cell / "depthseg" / "train" / "run"  # through the engine: its run folder
        assert (task_run / "checkpoints" / "last.ckpt").is_file()
        assert "train/loss" in (task_run / "logs" / "metrics.csv").read_text()
    supervised = out / "cells" / "supervised" / "seed0" / "supervised" / "encoders"
    assert (supervised / "rgb.safetensors").is_file()
    unknown = subprocess.run(
        [*cli, "experiment=quick", "task=nosuchtask", f"out={out}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode == 2
    assert "task 'nosuchtask' is not registered; registered: depthseg, sod" in unknown.stderr
