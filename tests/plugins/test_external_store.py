"""A store from another package (``tests/plugins/npzstore``: one module and one entry point,
nothing in solo_rgbd/ names it) pretrains with ``data.format=npz`` and feeds the SOD task,
train and eval; an unknown store is refused by name."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_overrides
from tests.plugins import plugin_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _install(site: Path) -> None:
    shutil.copytree(Path(__file__).parent / "npzstore", site / "npzstore")
    meta = site / "npzstore-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: npzstore\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[solo_rgbd.stores]\nnpz = npzstore.store:open_npz\n")


def _npz_dataset(src: Path, out: Path) -> Path:
    """The synthetic folder's pairs as .npz files (depth normalised to [0, 1], near = 1)."""
    out.mkdir()
    for rgb in sorted((src / "RGB").iterdir()):
        depth = np.asarray(Image.open(src / "depth" / f"{rgb.stem}.png"), dtype=np.float32)
        np.savez(
            out / f"{rgb.stem}.npz",
            rgb=np.asarray(Image.open(rgb).convert("RGB")),
            depth=depth / max(float(depth.max()), 1.0),
            gt=np.asarray(Image.open(src / "GT" / f"{rgb.stem}.png").convert("L")),
        )
    return out


def test_a_plugin_store_pretrains_and_feeds_a_task(synth_root, tmp_path):
    site = tmp_path / "site"
    _install(site)
    env = plugin_env(site, tmp_path / "cache")
    data = _npz_dataset(synth_root, tmp_path / "npz")
    cli = [sys.executable, "-m", "solo_rgbd.cli"]
    store = ["data.format=npz", f"data.path={data}", "data.name=npzset"]
    over = tiny_overrides(tmp_path, **{"trainer.max_epochs": "2", "run_name": "npz"})
    run = subprocess.run(
        [*cli, "pretrain", "method=simclr", *over, *store],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    export = tmp_path / "outputs" / "simclr" / "npz" / "encoders"
    assert (export / "rgb.safetensors").is_file() and (export / "depth.safetensors").is_file()
    metrics = (tmp_path / "outputs" / "simclr" / "npz" / "logs" / "metrics.csv").read_text()
    assert metrics.count("\n") >= 8  # 32 pairs / 8 a batch x 2 epochs, one row each
    sod = [
        "backbone=tiny", "image_size=40", "batch_size=8", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "decoder_dim=8", "qualitative=0",
        f"output_dir={tmp_path / 'sod'}", "run_name=r", *store,
    ]  # fmt: skip
    train = subprocess.run(
        [*cli, "sod", "train", f"encoders={export}", *sod],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    run_dir = tmp_path / "sod" / "train" / "r"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_pairs"] + summary["val_pairs"] == 32
    ev = subprocess.run(
        [*cli, "sod", "eval", f"ckpt={run_dir}", f"out={tmp_path / 'eval'}", *sod],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-3000:]
    scores = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert 0.0 <= scores[next(iter(scores))]["npzset"]["all"]["MAE"] <= 1.0
    unknown = subprocess.run(
        [*cli, "pretrain", *over, "data.format=zarr", f"data.path={data}"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert unknown.returncode == 2 and "data.format" in unknown.stderr
    assert "npz" in unknown.stderr  # the message lists the registered plug-in


def test_nothing_in_the_package_names_the_plugin_store():
    for path in (ROOT / "solo_rgbd").rglob("*.py"):
        assert "npzstore" not in path.read_text() and "open_npz" not in path.read_text(), path
