"""``solo-rgbd sod {train,eval,predict,score}``: the downstream RGB-D SOD workflow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from solo_rgbd.config import check_missing, compose
from solo_rgbd.data.cache import RGBDCache, RootSpec, build_cache, decode_depth
from solo_rgbd.data.sources import build_from_config, resolve_roots
from solo_rgbd.errors import ConfigError, SoloRGBDError
from solo_rgbd.tasks.sod.spec import SOD
from solo_rgbd.utils.atomic import atomic_dir, atomic_write_text
from solo_rgbd.utils.paths import check_component, mark_own_dir, remove_own_dir
from solo_rgbd.utils.safe_load import load_user_checkpoint

ACTIONS = ("train", "eval", "predict", "score")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----- train ------------------------------------------------------------------------------
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


def _split(cfg: DictConfig) -> tuple[RGBDCache, RGBDCache | None, dict[str, int]]:
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
    from solo_rgbd.tasks.sod.module import SODModule

    check_missing(cfg)
    if cfg.select_by not in ("MAE", "maxF"):
        hint = " (metric names are MAE and maxF)" if str(cfg.select_by).lower() == "mae" else ""
        raise ConfigError(f"select_by must be MAE or maxF, not '{cfg.select_by}'{hint}.")
    if cfg.get("run_name"):
        check_component(str(cfg.run_name), "run_name")
    plan = plan_run(cfg, group="train")
    pl.seed_everything(int(cfg.seed), verbose=False)
    rgb, depth = load_encoders(str(cfg.encoders), cfg.backbone)
    cfg.backbone.name = rgb.name  # the architecture the encoders come with
    cfg.encoder_layout = "early_fusion" if depth is None else "two_stream"
    module = SODModule(cfg)
    module.set_encoders(rgb, depth)
    check_resume(plan, module)
    train, val, counts = _split(cfg)
    data = CacheDataModule(train, val, int(cfg.batch_size), int(cfg.seed))
    # with a validation split: the best epoch by select_by; without (the paper trains on all
    # pairs): the last epoch, saved under the same name
    monitor, mode = ("val/MAE", "min") if cfg.select_by == "MAE" else ("val/maxF", "max")
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
        trainer_kwargs={"use_distributed_sampler": False},  # the EpochSampler shards by rank
    )
    fit_run(spec, module, datamodule=data)
    if plan.rank_zero:
        score = best.best_model_score
        summary = {
            "best_checkpoint": best.best_model_path,
            "select_by": cfg.select_by,
            "best_score": float(score) if score is not None else None,
            **counts,
        }
        atomic_write_text(json.dumps(summary, indent=2), plan.run_dir / "summary.json")
        print(f"best checkpoint ({monitor} {summary['best_score']}): {best.best_model_path}")
    return plan.run_dir


# ----- predictions ------------------------------------------------------------------------
def _load_module(cfg: DictConfig):
    from solo_rgbd.tasks.sod.module import SODModule

    if not cfg.get("ckpt"):
        raise ConfigError("ckpt= is required: the SOD checkpoint written by 'solo-rgbd sod train'.")
    path = Path(str(cfg.ckpt)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise ConfigError(f"SOD checkpoint '{path}' does not exist; fix ckpt=.")
    ckpt = load_user_checkpoint(path, "SOD checkpoint")
    cfg = (ckpt.get("hyper_parameters") or {}).get("cfg") or {}
    if "method" in cfg or "decoder_dim" not in cfg:
        what = f"a '{cfg['method']}' pretraining checkpoint" if "method" in cfg else "not one"
        raise ConfigError(
            f"ckpt='{path}' is {what}, not an SOD checkpoint written by 'solo-rgbd sod train'. "
            f"Train the decoder first: solo-rgbd sod train encoders={path}, then pass its "
            "run folder (outputs/sod/train/<run>) as ckpt=."
        )
    del ckpt
    module = SODModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return module.to(_device()).eval(), path


@torch.no_grad()
def predict_cache(
    module, cache: RGBDCache, out_dir: Path, batch_size: int = 16, to_gt_size: bool = True
) -> list[np.ndarray]:
    """Write 8-bit PNG saliency maps named by stem, at the GT's (or RGB's) original size."""
    probs_all: list[np.ndarray] = []
    with atomic_dir(out_dir) as tmp:
        for start in range(0, len(cache), batch_size):
            idx = list(range(start, min(start + batch_size, len(cache))))
            batch = {k: v.to(module.device) for k, v in cache.batch(idx).items()}
            probs = module.predict_probs(batch).float().cpu()
            for j, i in enumerate(idx):
                if to_gt_size and cache.gt_paths:
                    w, h = Image.open(cache.gt_paths[i]).size
                else:
                    h, w = cache.sizes[i]
                p = F.interpolate(
                    probs[j : j + 1], size=(h, w), mode="bilinear", align_corners=False
                )[0, 0]
                arr = (p.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                Image.fromarray(arr).save(tmp / f"{cache.stems[i]}.png")
                probs_all.append(arr)
    return probs_all


def _test_sets(cfg: DictConfig) -> list[tuple[str, RootSpec]]:
    if cfg.test_sets:
        out = []
        for i, entry in enumerate(OmegaConf.to_container(cfg.test_sets, resolve=True)):
            if not isinstance(entry, dict) or "path" not in entry:
                raise ConfigError(f"test_sets[{i}] needs a path: {{name: X, path: /dir}}.")
            name = check_component(
                entry.get("name") or Path(entry["path"]).name, f"test_sets[{i}].name"
            )
            if entry.get("optional") and not Path(entry["path"]).expanduser().exists():
                print(f"note: test set {name} skipped: '{entry['path']}' is absent (optional).")
                continue
            out.append(
                (name, RootSpec(entry["path"], bool(entry.get("invert_depth", False)), name))
            )
        if not out:
            raise ConfigError("every test set in test_sets is absent; nothing to evaluate.")
        return out
    check_missing(cfg)
    name = check_component(cfg.data.name, "data.name")
    return [(name, spec) for spec in resolve_roots(cfg.data, "test")]


def _subsets(cache: RGBDCache, keys: Sequence[str]) -> dict[str, list[str]]:
    subsets: dict[str, list[str]] = {}
    if not cache.meta:
        return subsets
    for key in keys:
        values = sorted({m.get(key, "") for m in cache.meta} - {""})
        for value in values:
            label = {("camouflaged", "1"): "camouflaged", ("camouflaged", "0"): "plain"}.get(
                (key, value), f"{key}={value}"
            )
            subsets[label] = [
                s for s, m in zip(cache.stems, cache.meta, strict=True) if m.get(key) == value
            ]
    return subsets


def sod_eval(cfg: DictConfig) -> Path:
    from solo_rgbd.evaluation.report import plot_curves, plot_qualitative, write_tables
    from solo_rgbd.evaluation.scoring import score_folder

    module, ckpt = _load_module(cfg)
    train_cfg = module.cfg
    out = Path(str(cfg.out)) if cfg.get("out") else ckpt.parent.parent / "eval"
    results: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    label = str(cfg.get("run_name") or train_cfg.get("encoders", "model"))
    label = Path(label).name if "/" in label else label
    for name, spec in _test_sets(cfg):
        cache = build_cache(
            [spec],
            size=int(train_cfg.image_size),
            require_gt=True,
            labels=SOD.labels,
            strict_pairs=bool(cfg.data.strict_pairs),
            on_constant_depth=str(cfg.data.on_constant_depth),
        )
        pred_dir = out / "predictions" / name
        remove_own_dir(pred_dir)
        preds = predict_cache(module, cache, pred_dir, int(cfg.batch_size))
        mark_own_dir(pred_dir)  # a later eval may replace this folder, and only this one
        gt_paths = {s: Path(p) for s, p in zip(cache.stems, cache.gt_paths, strict=True)}
        results[name] = score_folder(pred_dir, gt_paths, _subsets(cache, cfg.subset_keys))
        curves[name] = results[name]["all"]
        rows = []
        for i in range(min(int(cfg.qualitative), len(cache))):
            rgb = cache.rgb[i].permute(1, 2, 0).numpy()
            depth = (decode_depth(cache.depth[i])[0] * 255).round().byte().numpy()
            gt = np.asarray(Image.open(cache.gt_paths[i]).convert("L").resize(rgb.shape[1::-1]))
            pred = np.asarray(Image.fromarray(preds[i]).resize(rgb.shape[1::-1]))
            rows.append((rgb, depth, gt, pred))
        if rows:
            plot_qualitative(rows, out / f"qualitative_{name}.png")
    paths = write_tables({label: results}, out)
    plot_curves(curves, out)
    print(paths["md"].read_text())
    print(f"tables and plots: {out}")
    return out


def sod_probe(cfg: DictConfig, steps: int = 100) -> dict[str, dict[str, dict[str, float]]]:
    """Per-modality linear probes of ``cfg.encoders``: trained on the training pairs, scored on
    every test set; {dataset: {modality: {"maxF", "MAE"}}}."""
    from solo_rgbd.nn.encoder_io import load_encoders
    from solo_rgbd.tasks.sod.linear_probe import probe_modalities

    rgb, depth = load_encoders(str(cfg.encoders), cfg.backbone)
    encoders = {"rgbd": rgb} if depth is None else {"rgb": rgb, "depth": depth}
    size = int(cfg.image_size)
    train = build_from_config(cfg.data, "train", require_gt=True, size=size, labels=SOD.labels)
    out = {}
    for name, spec in _test_sets(cfg):
        test = build_cache([spec], size=size, require_gt=True, labels=SOD.labels)
        out[name] = probe_modalities(
            encoders, train, test, size=size, steps=steps, device=_device(), seed=int(cfg.seed)
        )
    return out


def sod_predict(cfg: DictConfig) -> Path:
    module, _ = _load_module(cfg)
    if not cfg.get("input") or not cfg.get("out"):
        raise ConfigError("sod predict needs input=DIR (with RGB/depth folders) and out=DIR.")
    cache = build_cache(
        [RootSpec(str(cfg.input), bool(cfg.data.invert_depth))],
        size=int(module.cfg.image_size),
        strict_pairs=bool(cfg.data.strict_pairs),
        on_constant_depth=str(cfg.data.on_constant_depth),
    )
    out = Path(str(cfg.out))
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"out='{out}' exists and is not empty; choose an empty folder.")
    predict_cache(module, cache, out, int(cfg.batch_size), to_gt_size=False)
    print(f"wrote {len(cache)} saliency maps to {out}")
    return out


def sod_score(cfg: DictConfig) -> Path:
    from solo_rgbd.data.layout import discover_pairs
    from solo_rgbd.evaluation.report import write_tables
    from solo_rgbd.evaluation.scoring import score_folder

    if not cfg.get("pred"):
        raise ConfigError("sod score needs pred=DIR, a folder of saliency maps named by stem.")
    if not Path(str(cfg.pred)).expanduser().is_dir():
        raise ConfigError(
            f"pred='{cfg.pred}' is not a folder; pass the folder of saliency maps (PNG named by "
            "stem) written by 'solo-rgbd sod predict' or 'sod eval'."
        )
    results = {}
    for name, spec in _test_sets(cfg):
        pairs = discover_pairs(spec.path, strict=bool(cfg.data.strict_pairs))
        if not pairs.gt:
            raise ConfigError(f"test set '{spec.path}' has no GT folder; it cannot be scored.")
        pred_dir = (
            Path(str(cfg.pred)) / name
            if (Path(str(cfg.pred)) / name).is_dir()
            else Path(str(cfg.pred))
        )
        results[name] = score_folder(
            pred_dir, {s: pairs.gt[s] for s in pairs.stems if s in pairs.gt}
        )
    out = Path(str(cfg.out)) if cfg.get("out") else Path(str(cfg.pred))
    paths = write_tables({Path(str(cfg.pred)).name: results}, out, "scores")
    print(paths["md"].read_text())
    return out


def run_sod_command(args: Sequence[str]) -> int:
    args = list(args)
    if not args or args[0] in ("-h", "--help") or args[0] not in ACTIONS:
        print(
            __doc__ or "",
            "\nusage: solo-rgbd sod {train,eval,predict,score} [--cfg] [key=value ...]"
            "\n  keys and defaults: solo_rgbd/tasks/sod/config.py (--cfg prints them); e.g.\n"
            "  solo-rgbd sod train encoders=outputs/mbcf/<run>\n"
            "  solo-rgbd sod eval ckpt=outputs/sod/train/<run>\n"
            "  solo-rgbd sod predict ckpt=... input=DIR out=DIR",
        )
        if args and args[0] not in ("-h", "--help"):
            raise SoloRGBDError(f"unknown sod action '{args[0]}'; use one of {', '.join(ACTIONS)}.")
        return 0
    cfg = compose("sod", [a for a in args[1:] if a != "--cfg"])
    if "--cfg" in args:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    if args[0] == "train":
        sod_train(cfg, args[1:])
        return 0
    {"eval": sod_eval, "predict": sod_predict, "score": sod_score}[args[0]](cfg)
    return 0
