"""Predictions of a trained SOD network: loading its checkpoint, 8-bit saliency maps per
image, the test sets and subsets a config names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from solo_rgbd.config import check_missing
from solo_rgbd.data.check import check_polarity
from solo_rgbd.data.decode import DecodeSpec, RootSpec
from solo_rgbd.data.pack_store import is_pack
from solo_rgbd.data.pairstore import ArrayStore, PairStore
from solo_rgbd.data.sources import check_pack_config, resolve_roots
from solo_rgbd.data.store import open_store
from solo_rgbd.errors import ConfigError
from solo_rgbd.tasks.sod.spec import SOD
from solo_rgbd.utils.atomic import atomic_dir
from solo_rgbd.utils.console import say
from solo_rgbd.utils.paths import check_component
from solo_rgbd.utils.safe_load import load_user_checkpoint


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_sod_module(cfg: DictConfig):
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
    return module.to(device()).eval(), path


@torch.no_grad()
def predict_cache(
    module, cache: PairStore, out_dir: Path, batch_size: int = 16, to_gt_size: bool = True
) -> list[np.ndarray]:
    """Write 8-bit PNG saliency maps named by stem, at the GT's (or RGB's) original size."""
    probs_all: list[np.ndarray] = []
    meta = cache.meta
    with atomic_dir(out_dir) as tmp:
        for start in range(0, len(cache), batch_size):
            idx = list(range(start, min(start + batch_size, len(cache))))
            batch = {k: v.to(module.device) for k, v in cache.batch(idx).items()}
            probs = module.predict_probs(batch).float().cpu()
            for j, i in enumerate(idx):
                if to_gt_size and meta.gt_paths:
                    w, h = Image.open(meta.gt_paths[i]).size
                else:
                    h, w = meta.sizes[i]
                p = F.interpolate(
                    probs[j : j + 1], size=(h, w), mode="bilinear", align_corners=False
                )[0, 0]
                arr = (p.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                Image.fromarray(arr).save(tmp / f"{meta.stems[i]}.png")
                probs_all.append(arr)
    return probs_all


def test_sets(cfg: DictConfig) -> list[tuple[str, RootSpec]]:
    if cfg.test_sets:
        out = []
        for i, entry in enumerate(OmegaConf.to_container(cfg.test_sets, resolve=True)):
            if not isinstance(entry, dict) or "path" not in entry:
                raise ConfigError(f"test_sets[{i}] needs a path: {{name: X, path: /dir}}.")
            name = check_component(
                entry.get("name") or Path(entry["path"]).name, f"test_sets[{i}].name"
            )
            if entry.get("optional") and not Path(entry["path"]).expanduser().exists():
                say(f"note: test set {name} skipped: '{entry['path']}' is absent (optional).")
                continue
            out.append(
                (name, RootSpec(entry["path"], bool(entry.get("invert_depth", False)), name))
            )
        if not out:
            raise ConfigError("every test set in test_sets is absent; nothing to evaluate.")
        return out
    check_missing(cfg)
    name = check_component(cfg.data.name, "data.name")
    if cfg.data.get("format", "folder") == "litdata":
        check_pack_config(cfg.data, "test")  # roots, depth polarity: fixed when it was packed
    return [(name, spec) for spec in resolve_roots(cfg.data, "test")]


def test_cache(cfg: DictConfig, root: RootSpec, size: int, require_gt: bool = True) -> ArrayStore:
    """A test set's pairs, whole in memory: a folder in any layout, or a pack (``data pack
    --split test``; checked for its split and labels)."""
    spec = DecodeSpec(
        (root,),
        size,
        strict_pairs=bool(cfg.data.strict_pairs),
        on_constant_depth=str(cfg.data.on_constant_depth),
        labels=SOD.labels,
        require_gt=require_gt,
        split="test",
    )
    fmt = str(cfg.data.get("format", "folder"))
    if is_pack(root.path):
        kind = "litdata"
    elif fmt in ("folder", "litdata"):
        kind = "ram"  # a test set is small: decoded into this process
    else:
        kind = fmt  # a plug-in store reads its test sets too
    store = open_store(spec, kind).materialize()
    check = bool(cfg.data.get("check_polarity", True))
    check_polarity(store, f"test set '{root.name or root.path}'", root.invert_depth, check)
    return store


def subsets(cache: PairStore, keys: Sequence[str]) -> dict[str, list[str]]:
    """The stems of each subset the meta rows name (``camouflaged``: plain / camouflaged)."""
    subsets: dict[str, list[str]] = {}
    meta = cache.meta
    if not meta.rows:
        return subsets
    for key in keys:
        values = sorted({m.get(key, "") for m in meta.rows} - {""})
        for value in values:
            label = {("camouflaged", "1"): "camouflaged", ("camouflaged", "0"): "plain"}.get(
                (key, value), f"{key}={value}"
            )
            subsets[label] = [
                s for s, m in zip(meta.stems, meta.rows, strict=True) if m.get(key) == value
            ]
    return subsets
