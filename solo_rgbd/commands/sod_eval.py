"""``solo-rgbd sod {eval,predict,score}`` and the per-modality linear probe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from solo_rgbd.data.check import check_polarity
from solo_rgbd.data.decode import DecodeSpec, RootSpec, decode_depth
from solo_rgbd.data.pack_store import is_pack
from solo_rgbd.data.pairstore import ArrayStore
from solo_rgbd.data.sources import build_from_config
from solo_rgbd.data.store import open_store
from solo_rgbd.errors import ConfigError
from solo_rgbd.tasks.sod.predict import (
    device,
    load_sod_module,
    predict_cache,
    subsets,
    test_cache,
    test_sets,
)
from solo_rgbd.tasks.sod.spec import SOD
from solo_rgbd.utils.atomic import atomic_dir
from solo_rgbd.utils.console import say
from solo_rgbd.utils.paths import mark_own_dir, own_marker, remove_own_dir


def sod_eval(cfg: DictConfig) -> Path:
    from solo_rgbd.evaluation import artefacts
    from solo_rgbd.evaluation.report import plot_curves, write_tables
    from solo_rgbd.evaluation.scoring import image_table, score_folder_images, summarise_subsets

    module, ckpt = load_sod_module(cfg)
    train_cfg = module.cfg
    out = Path(str(cfg.out)) if cfg.get("out") else ckpt.parent.parent / "eval"
    results: dict[str, dict] = {}
    label = str(cfg.get("run_name") or train_cfg.get("encoders", "model"))
    label = Path(label).name if "/" in label else label
    for name, spec in test_sets(cfg):
        cache = test_cache(cfg, spec, int(train_cfg.image_size))
        if not cache.meta.gt_paths:  # a store without GT files (a plug-in): its own maps
            cache = with_gt_files(cache, out / "gt" / name)
        pred_dir = out / "predictions" / name
        remove_own_dir(pred_dir)
        preds = predict_cache(module, cache, pred_dir, int(cfg.batch_size))
        mark_own_dir(pred_dir)  # a later eval may replace this folder, and only this one
        gt_paths = {s: Path(p) for s, p in zip(cache.meta.stems, cache.meta.gt_paths, strict=True)}
        per_image = score_folder_images(pred_dir, gt_paths)
        results[name] = summarise_subsets(per_image, subsets(cache, cfg.subset_keys))
        rows = image_table(per_image)
        artefacts.write_per_image(rows, out, name)
        _qualitative(cache, preds, rows, int(cfg.qualitative), out, name)
    paths = write_tables({label: results}, out, report=SOD.report)
    artefacts.write_curves(results, out)
    plot_curves({name: r["all"] for name, r in results.items()}, out)
    print(paths["md"].read_text())
    print(f"tables and plots: {out}")
    return out


def with_gt_files(cache: ArrayStore, folder: Path) -> ArrayStore:
    """The store with its GT maps written as PNGs under ``folder`` (at the store's size) and
    named in its meta, for a store that holds GT but no GT files: it is scored at its size."""
    remove_own_dir(folder)
    with atomic_dir(folder) as tmp:
        for stem, gt in zip(cache.meta.stems, cache.batch(range(len(cache)))["gt"], strict=True):
            Image.fromarray(gt[0].numpy()).save(tmp / f"{stem}.png")
    mark_own_dir(folder)
    size = cache.rgb.shape[-1]
    say(f"note: test set {folder.name} has no GT files; scored against its own GT at {size} px.")
    paths = [str(folder / f"{stem}.png") for stem in cache.meta.stems]
    meta = dataclasses.replace(cache.meta, gt_paths=paths)
    return ArrayStore(cache.rgb, cache.depth, cache.gt, meta)


def _qualitative(cache, preds, rows, n_fixed: int, out: Path, name: str) -> None:
    """The first ``n_fixed`` images (the same for every model) and the best, median and worst
    as PNGs under ``qualitative/<name>/``, and the fixed ones as one figure."""
    from solo_rgbd.evaluation import artefacts
    from solo_rgbd.evaluation.report import plot_qualitative

    meta = cache.meta
    index = {s: i for i, s in enumerate(meta.stems)}

    def pictures(stem: str) -> dict[str, np.ndarray]:
        i = index[stem]
        pair = cache.batch([i])  # through the PairStore interface
        rgb = pair["rgb"][0].permute(1, 2, 0).numpy()
        size = rgb.shape[1::-1]
        depth = (decode_depth(pair["depth"][0])[0] * 255).round().byte().numpy()
        gt = np.asarray(Image.open(meta.gt_paths[i]).convert("L").resize(size))
        pred = np.asarray(Image.fromarray(preds[i]).resize(size))
        return dict(zip(artefacts.KINDS, (rgb, depth, gt, pred), strict=True))

    fixed = list(meta.stems[: max(0, n_fixed)])
    folder = out / artefacts.QUALITATIVE / name
    remove_own_dir(folder)
    artefacts.write_qualitative(folder, fixed, artefacts.ranked(rows), pictures)
    mark_own_dir(folder)
    if fixed:
        rows = [tuple(pictures(s).values()) for s in fixed]
        plot_qualitative(rows, out / f"qualitative_{name}.png")


def sod_probe(cfg: DictConfig, steps: int = 100) -> dict[str, dict[str, dict[str, float]]]:
    """Per-modality linear probes of ``cfg.encoders``: trained on the training pairs, scored on
    every test set; {dataset: {modality: {"maxF", "MAE"}}}."""
    from solo_rgbd.nn.encoder_io import load_encoders
    from solo_rgbd.tasks.sod.linear_probe import probe_modalities

    encoders = load_encoders(str(cfg.encoders), cfg.backbone, str(cfg.missing_stream))
    size = int(cfg.image_size)
    train = build_from_config(cfg.data, "train", require_gt=True, size=size, labels=SOD.labels)
    out = {}
    for name, spec in test_sets(cfg):
        test = test_cache(cfg, spec, size)
        out[name] = probe_modalities(
            encoders, train, test, size=size, steps=steps, device=device(), seed=int(cfg.seed)
        )
    return out


def sod_predict(cfg: DictConfig) -> Path:
    module, _ = load_sod_module(cfg)
    if not cfg.get("input") or not cfg.get("out"):
        raise ConfigError("sod predict needs input=DIR (with RGB/depth folders) and out=DIR.")
    size = int(module.cfg.image_size)
    packed = is_pack(str(cfg.input))  # a packed dataset: every pair, any split
    spec = DecodeSpec(
        (RootSpec(str(cfg.input), bool(cfg.data.invert_depth) and not packed),),
        size,
        strict_pairs=bool(cfg.data.strict_pairs),
        on_constant_depth=str(cfg.data.on_constant_depth),
        split=None,
    )
    cache = open_store(spec, "litdata" if packed else "ram")
    check_polarity(cache, f"'{cfg.input}'", spec.roots[0].invert_depth)  # without GT: said so
    out = Path(str(cfg.out))
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"out='{out}' exists and is not empty; choose an empty folder.")
    predict_cache(module, cache, out, int(cfg.batch_size), to_gt_size=False)
    mark_own_dir(out)  # 'sod score pred=OUT' may write its tables beside these maps
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
    for name, spec in test_sets(cfg):
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
    pred = Path(str(cfg.pred))
    if not cfg.get("out") and not (own_marker(pred).is_file() or any(pred.glob(".*.solo-rgbd"))):
        raise ConfigError(
            f"pred='{pred}' holds maps solo-rgbd did not write ('sod predict' and 'sod eval' mark "
            "theirs), so the score tables are not written into it; pass out=DIR for them."
        )
    out = Path(str(cfg.out)) if cfg.get("out") else pred
    paths = write_tables({Path(str(cfg.pred)).name: results}, out, "scores", report=SOD.report)
    print(paths["md"].read_text())
    return out
