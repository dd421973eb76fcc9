"""``solo-rgbd sod train``: the SOD decoder (and the encoders with ``freeze=false``) trained
through the engine, and the Supervised bound's encoders out of such a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from solo_rgbd.config import check_missing
from solo_rgbd.data.pairstore import PairStore
from solo_rgbd.data.sources import build_from_config
from solo_rgbd.errors import ConfigError
from solo_rgbd.tasks.sod.spec import SOD
from solo_rgbd.utils.atomic import atomic_write_text
from solo_rgbd.utils.paths import check_component


def _labelled(train_ids: torch.Tensor, cfg: DictConfig) -> list[int]:
    """The training pairs whose labels are used: the first ``label_fraction`` of the seed's
    permutation (the same pairs for every row of a compare cell), cycled back to the full
    count so that every fraction trains for the same number of steps."""
    frac = float(cfg.label_fraction)
    if not 0 < frac <= 1:
        raise ConfigError(f"label_fraction={frac} must be in (0, 1]; 1 uses every label.")
    ids = train_ids.tolist()
    kept = ids[: max(1, int(round(frac * len(ids))))]
    return [kept[i % len(kept)] for i in range(len(ids))]


def _split(cfg: DictConfig) -> tuple[PairStore, PairStore | None, dict[str, int]]:
    """(training pairs with labels used, validation pairs or None, their counts)."""
    cache = build_from_config(
        cfg.data, "train", require_gt=True, size=int(cfg.image_size), labels=SOD.labels
    )
    frac = float(cfg.val_fraction)
    if not 0 <= frac < 1:
        raise ConfigError(f"val_fraction={frac} must be in [0, 1); 0 trains on every pair.")
    n_val = int(round(frac * len(cache))) if frac > 0 else 0
    if frac > 0:
        n_val = min(max(1, n_val), len(cache) - 1)
    perm = torch.randperm(len(cache), generator=torch.Generator().manual_seed(int(cfg.seed)))
    labelled = _labelled(perm[n_val:], cfg)
    train = cache.subset(labelled)
    val = cache.subset(perm[:n_val].tolist()) if n_val else None
    counts = {"train_pairs": len(train), "labelled_pairs": len(set(labelled)), "val_pairs": n_val}
    return train, val, counts


def sod_train(cfg: DictConfig, argv: Sequence[str] | None = None) -> Path:
    """Train the decoder (and the encoders with ``freeze=false``) through the engine: run
    folder ``output_dir/train/<run_name>``, ``last.ckpt``, exact resume (``resume=last|auto|
    PATH``), preemption exit codes, the non-finite guard; ``best.ckpt`` by ``select_by``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from solo_rgbd.engine.datamodule import CacheDataModule
    from solo_rgbd.engine.fit import RunSpec, check_resume, fit_run
    from solo_rgbd.engine.run import plan_run, resume_command
    from solo_rgbd.nn.encoder_io import load_encoders
    from solo_rgbd.nn.streams import Streams
    from solo_rgbd.tasks.sod.module import SODModule

    check_missing(cfg)
    mode = SOD.select_mode(str(cfg.select_by))  # the validation metric that picks best.ckpt
    if cfg.get("run_name"):
        check_component(str(cfg.run_name), "run_name")
    plan = plan_run(cfg, group="train")
    pl.seed_everything(int(cfg.seed), verbose=False)
    encoders = load_encoders(str(cfg.encoders), cfg.backbone, str(cfg.missing_stream))
    cfg.backbone.name = next(iter(encoders.values())).name  # the encoders' architecture
    cfg.encoder_layout = Streams.of_names(encoders).mode  # two_stream or early_fusion
    module = SODModule(cfg)
    module.set_encoders(encoders)
    check_resume(plan, module)
    train, val, counts = _split(cfg)
    data = CacheDataModule(train, val, int(cfg.batch_size), int(cfg.seed))
    # with a validation split: the best epoch by select_by; without (the paper trains on all
    # pairs): the last epoch, saved under the same name
    monitor = f"val/{cfg.select_by}"
    best = ModelCheckpoint(
        dirpath=str(plan.run_dir / "checkpoints"),
        filename="best",
        monitor=monitor if val is not None else None,
        mode=mode,
        save_top_k=1,
        enable_version_counter=False,
    )
    last = plan.run_dir / "checkpoints" / "last.ckpt"
    spec = RunSpec(
        cfg=cfg,
        plan=plan,
        max_epochs=int(cfg.trainer.max_epochs or 100),
        resume_hint=resume_command(list(argv), last, ("sod", "train")) if argv else "",
        log_every_n_steps=int(cfg.log_every_n_steps),
        callbacks=[best],
        summary=lambda: _summary(plan.run_dir, best, bool(cfg.report)),
    )
    fit_run(spec, module, datamodule=data)
    if plan.rank_zero:
        _write_summary(plan.run_dir, best, str(cfg.select_by), counts)
    return plan.run_dir


def _write_summary(run_dir: Path, best, select_by: str, counts: dict) -> None:
    """``summary.json`` (the best checkpoint, its score, the split's counts) and one line."""
    score = best.best_model_score
    summary = {
        "best_checkpoint": best.best_model_path,
        "select_by": select_by,
        "best_score": float(score) if score is not None else None,
        **counts,
    }
    atomic_write_text(json.dumps(summary, indent=2), run_dir / "summary.json")
    shown = "none" if score is None else f"{float(score):.4f}"
    print(f"best checkpoint (val/{select_by} {shown}): {best.best_model_path}")


def supervised_encoders(run: Path, out: Path) -> Path:
    """The encoders of a ``freeze=false`` run (its best checkpoint), exported to ``out``."""
    from solo_rgbd.nn.encoder_io import export_encoders
    from solo_rgbd.tasks.sod.module import SODModule

    net = SODModule.load_from_checkpoint(
        run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True
    ).net
    encoders = {"rgb": net.rgb_encoder, "depth": net.depth_encoder}
    export_encoders(encoders, out, {"method": "supervised"})
    return out


def _summary(run_dir: Path, best, report: bool) -> dict[str, str]:
    """What the trackers get at the end: the best checkpoint and the report's path."""
    out = {"run_dir": str(run_dir.resolve()), "best_checkpoint": str(best.best_model_path)}
    if report:
        out["report"] = str((run_dir / "report.html").resolve())
    return out
