"""checkpoint.snapshot_every_n_epochs keeps the encoders of every N-th epoch (probe curves)."""

import importlib.util
import json
from pathlib import Path

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.nn.encoder_io import verify_export
from tests.conftest import tiny_overrides

BENCH = Path(__file__).resolve().parents[2] / "bench" / "probe_curve.py"


def test_every_nth_epoch_is_kept_as_a_verified_export_that_the_curve_reads(tmp_path):
    extra = {
        "method_kwargs.queue_size": "16",
        "trainer.max_epochs": "3",
        "trainer.limit_train_batches": "2",
        "checkpoint.snapshot_every_n_epochs": "2",
    }
    run = run_pretrain(
        compose("pretrain", ["method=mocov2plus", *tiny_overrides(tmp_path, **extra)])
    )
    kept = sorted(p.name for p in (run / "snapshots").iterdir())
    assert kept == ["epoch002"]  # epochs 1 and 3 are not multiples of 2
    snap = run / "snapshots" / "epoch002"
    verify_export(snap)
    manifest = json.loads((snap / "encoders.json").read_text())
    assert manifest["global_step"] == 4 and manifest["epoch"] == 1
    final = json.loads((run / "encoders" / "encoders.json").read_text())
    assert final["global_step"] == 6
    assert manifest["encoders"]["rgb"]["sha256"] != final["encoders"]["rgb"]["sha256"]

    spec = importlib.util.spec_from_file_location("probe_curve", BENCH)
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    assert curve.snapshots(run) == [(0, "random"), (4, str(snap))]
