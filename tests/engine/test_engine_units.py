import csv
import json
import multiprocessing as mp
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from solo_rgbd.data.sampler import EpochSampler
from solo_rgbd.engine.checkpoint import capture_rng, restore_rng
from solo_rgbd.engine.metrics import CSVRows
from solo_rgbd.engine.run import RUN_DIR_ENV, plan_run
from solo_rgbd.engine.trainer import resolve_strategy
from solo_rgbd.errors import CheckpointError, ConfigError, NonFiniteError
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.encoder_io import export_encoders, resolve_export_dir, verify_export
from solo_rgbd.utils.atomic import atomic_torch_save


# ----- data order ---------------------------------------------------------------------------
def test_sampler_resumes_mid_epoch_and_shards_like_one_process():
    full = EpochSampler(40, 8, seed=3)
    full.set_epoch(2)
    order = list(full)
    part = EpochSampler(40, 8, seed=3)
    part.set_epoch(2)
    it = iter(part)
    first = [next(it) for _ in range(16)]  # two batches, then "killed"
    state = part.state_dict()
    resumed = EpochSampler(40, 8, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # Lightning sets the epoch again: the position is kept
    assert first + list(resumed) == order
    resumed.set_epoch(3)  # a new epoch starts from its beginning, in a new order
    assert len(list(resumed)) == 40 and list(resumed) != order
    # rank r's batch t is the r-th slice of one process's global batch t
    ranks = [EpochSampler(40, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    r0, r1 = list(ranks[0]), list(ranks[1])
    glued = [i for t in range(5) for i in r0[4 * t : 4 * t + 4] + r1[4 * t : 4 * t + 4]]
    assert glued == order
    with pytest.raises(ValueError, match="40 training pairs"):
        EpochSampler(39, 8).load_state_dict(state)


# ----- RNG ----------------------------------------------------------------------------------
def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    atomic_torch_save({"rng": capture_rng()}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


# ----- metrics.csv --------------------------------------------------------------------------
def test_metrics_csv_grows_its_header_keeps_rows_and_forgets_only_the_future(tmp_path):
    rows = CSVRows(tmp_path / "logs" / "metrics.csv")
    rows.append({"epoch": 0, "step": 0, "loss": 1.5})
    rows.append({"epoch": 0, "step": 1, "loss": 1.0, "loss_inter": 2.0})  # a new column
    rows.append({"epoch": 1, "step": 2, "loss": 0.5})
    reopened = CSVRows(tmp_path / "logs" / "metrics.csv")  # a resumed process
    assert reopened.keys == ["epoch", "step", "loss", "loss_inter"]
    assert reopened.drop_from_step(2) == 1  # rows logged after the checkpoint of step 2
    reopened.append({"epoch": 1, "step": 2, "loss": 0.25})
    with open(tmp_path / "logs" / "metrics.csv", newline="") as f:
        got = [(r["step"], r["loss"], r["loss_inter"]) for r in csv.DictReader(f)]
    assert got == [("0", "1.5", ""), ("1", "1.0", "2.0"), ("2", "0.25", "")]


@pytest.mark.parametrize(
    "bad_line",
    ["0,1", "0,x,3.0", "0,1,2.0,9,9,9", "\x00\x00"],
    ids=["short", "nan-step", "long", "nul"],
)
def test_a_corrupt_metrics_row_is_dropped_with_a_warning_on_resume(tmp_path, bad_line):
    path = tmp_path / "metrics.csv"
    path.write_text(f"epoch,step,loss\n0,0,1.5\n0,1,1.0\n{bad_line}\n")
    with pytest.warns(UserWarning, match="dropped 1 unreadable row"):
        assert CSVRows(path).drop_from_step(1) == 2
    assert [r["step"] for r in CSVRows(path).rows()] == ["0"]


def test_torch_save_failing_on_a_full_disk_is_enospc(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    def broken_save(obj, f):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
            "writing file data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", broken_save)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 0))
    with pytest.raises(OSError) as info:
        atomic_torch_save({"w": torch.ones(2)}, tmp_path / "x.pt")
    assert info.value.errno == errno.ENOSPC and "file write failed" in str(info.value)
    assert not (tmp_path / "x.pt").exists() and list(tmp_path.iterdir()) == []
    from solo_rgbd.cli import _os_error

    assert "the disk is full" in _os_error(info.value)


# ----- exports ------------------------------------------------------------------------------
def _encoders(seed: int = 0) -> dict[str, Encoder]:
    torch.manual_seed(seed)
    return {"rgb": Encoder("test_resnet", 3), "depth": Encoder("test_resnet", 1)}


def test_export_is_one_verified_unit_with_reproducible_bytes(tmp_path):
    a = export_encoders(_encoders(), tmp_path / "a" / "encoders", {"epoch": 0})
    b = export_encoders(_encoders(), tmp_path / "b" / "encoders", {"epoch": 0})
    assert a == b  # identical weights -> identical bytes and sha256
    out = tmp_path / "a" / "encoders"
    export_encoders(_encoders(1), out, {"epoch": 1})  # replaces the whole unit
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["encoders"]  # no leftovers
    assert verify_export(out)["epoch"] == 1
    (out / "rgb.safetensors").write_bytes(
        (tmp_path / "b" / "encoders" / "rgb.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="rgb.safetensors' does not match the sha256"):
        verify_export(out)  # a file of another epoch next to this manifest


def test_an_export_swap_cut_by_a_kill_is_completed_on_next_read(tmp_path):
    out = tmp_path / "encoders"
    export_encoders(_encoders(), out, {"epoch": 0})
    # killed between the two renames: old unit moved aside, the new one not yet in place
    new = tmp_path / ".encoders.123.partial"
    export_encoders(_encoders(1), new, {"epoch": 1})
    os.replace(out, tmp_path / ".encoders.123.old")
    assert resolve_export_dir(out) == out
    assert verify_export(out)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoders"]


def test_a_reader_leaves_an_export_a_running_writer_is_building(tmp_path):
    out = tmp_path / "encoders"
    export_encoders(_encoders(), out, {"epoch": 0})
    building = tmp_path / ".encoders.77.partial"  # a running pretraining's, not yet swapped
    export_encoders(_encoders(1), building, {"epoch": 1})
    assert verify_export(out)["epoch"] == 0  # a reader meanwhile (sod train encoders=RUN)
    assert building.is_dir()  # left for its writer
    export_encoders(_encoders(2), out, {"epoch": 2})  # the writer's next export cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoders"]


def test_non_finite_weights_are_never_exported(tmp_path):
    encoders = _encoders()
    export_encoders(encoders, tmp_path / "encoders", {"epoch": 0})
    with torch.no_grad():
        next(encoders["rgb"].parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="refusing to export non-finite"):
        export_encoders(encoders, tmp_path / "encoders", {"epoch": 1})
    assert verify_export(tmp_path / "encoders")["epoch"] == 0  # the good export is kept


# ----- run folders and strategies -----------------------------------------------------------
def _cfg(tmp_path: Path, **kw) -> OmegaConf:
    return OmegaConf.create(
        {"output_dir": str(tmp_path), "method": "mbcf", "run_name": None, "resume": None, **kw}
    )


def test_resume_targets_are_resolved_without_guessing(tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / "mbcf" / name / "checkpoints").mkdir(parents=True)
        (tmp_path / "mbcf" / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (tmp_path / "mbcf" / name / "config.yaml").write_text("{}")
    with pytest.raises(ConfigError, match="ambiguous: 2 runs.*run_name=NAME"):
        plan_run(_cfg(tmp_path, resume="last"))
    assert plan_run(_cfg(tmp_path, resume="last", run_name="b")).run_dir.name == "b"
    fresh = plan_run(_cfg(tmp_path, resume="auto", run_name="c"))
    assert fresh.ckpt is None and fresh.run_dir.name == "c"
    assert plan_run(_cfg(tmp_path, resume="auto", run_name="a")).ckpt.name == "last.ckpt"
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not inside a run folder"):
        plan_run(_cfg(tmp_path, resume=str(loose)))
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        plan_run(_cfg(tmp_path, run_name="a"))
    # a DDP process started by rank 0 uses rank 0's folder and creates nothing
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "mbcf" / "x"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    plan = plan_run(_cfg(tmp_path))
    assert plan.run_dir == tmp_path / "mbcf" / "x" and not plan.rank_zero
    assert not plan.run_dir.exists()


def test_ddp_gets_find_unused_parameters_when_the_method_needs_it():
    from lightning.pytorch.strategies import DDPStrategy

    t = OmegaConf.create({"strategy": "ddp", "devices": 2, "accelerator": "cpu"})
    strategy = resolve_strategy(t, unused_parameters=True, world_size=2)
    assert isinstance(strategy, DDPStrategy) and strategy._ddp_kwargs["find_unused_parameters"]
    assert resolve_strategy(t, unused_parameters=False, world_size=2) == "ddp"
    t.strategy = "auto"
    assert isinstance(resolve_strategy(t, unused_parameters=True, world_size=2), DDPStrategy)
    assert resolve_strategy(t, unused_parameters=True, world_size=1) == "auto"


# ----- several processes on a fresh cache -----------------------------------------------------
def _generate(cache: str, q) -> None:
    os.environ["SOLO_RGBD_CACHE"] = cache
    from solo_rgbd.data.sources import synthetic_root

    root = synthetic_root({"n": 6, "n_test": 2, "seed": 0, "size": 32})
    q.put(json.loads((root / "info.json").read_text()) if (root / "info.json").exists() else 1)


@pytest.mark.slow
def test_concurrent_processes_share_one_synthetic_generation(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_generate, args=(str(tmp_path), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    results = [q.get(timeout=5) for _ in procs]
    assert all(r == results[0] for r in results)
    made = sorted(p.name for p in (tmp_path / "synthetic").iterdir())
    assert [m for m in made if not m.endswith(".lock")] == [made[0]]  # one dataset, no leftovers


@pytest.mark.parametrize("devices, expected", [("3", "3 processes"), ("-1", "trainer.devices")])
def test_the_device_count_is_lightnings_answer(tmp_path, devices, expected):
    """A global batch that does not split over the processes Lightning would start, or a device
    setting Lightning refuses: a clear error before anything is written (the old parser gave 2
    devices for '-1', and a batch of -64 for -1)."""
    from solo_rgbd.commands.pretrain import run_pretrain
    from solo_rgbd.config import compose
    from solo_rgbd.errors import ConfigError
    from tests.conftest import tiny_overrides

    over = tiny_overrides(tmp_path, **{"trainer.accelerator": "cpu", "trainer.devices": devices})
    with pytest.raises(ConfigError, match=expected):
        run_pretrain(compose("pretrain", over))
    assert not (tmp_path / "outputs" / "mbcf").exists() or not any(
        (tmp_path / "outputs" / "mbcf").rglob("config.yaml")
    )


def test_the_run_trainer_is_built_once_with_the_strategy_its_device_count_needs(
    tmp_path, monkeypatch
):
    """Issue 33: the process count comes from Lightning's device parsers before the Trainer is
    built, so DDP with find_unused_parameters is chosen without building a second Trainer."""
    from lightning.pytorch.strategies import DDPStrategy

    from solo_rgbd.config import compose
    from solo_rgbd.engine import fit
    from solo_rgbd.engine.run import plan_run
    from solo_rgbd.engine.trainer import planned_world_size
    from tests.conftest import tiny_overrides

    t = OmegaConf.create({"accelerator": "cpu", "devices": 2, "num_nodes": 3})
    assert planned_world_size(t) == 6
    t.devices, t.num_nodes = "auto", 1
    assert planned_world_size(t) == 1
    built = []
    real = fit._trainer
    monkeypatch.setattr(fit, "_trainer", lambda *a, **k: built.append(a[2]) or real(*a, **k))
    extra = {"trainer.strategy": "ddp", "trainer.devices": "2", "trainer.accelerator": "cpu"}
    cfg = compose("pretrain", tiny_overrides(tmp_path, **extra))
    spec = fit.RunSpec(cfg=cfg, plan=plan_run(cfg), max_epochs=1, unused_parameters=True)
    trainer = fit.build_run_trainer(spec, [])
    assert len(built) == 1 and trainer.world_size == 2
    assert isinstance(trainer.strategy, DDPStrategy)
