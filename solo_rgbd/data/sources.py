"""Where data comes from: a data config's roots (or the generated synthetic set) as a
:class:`~solo_rgbd.data.decode.DecodeSpec`, its store, and the loaders that gather batches from
it. No Lightning here: the pretraining DataModule
is :class:`solo_rgbd.engine.datamodule.RGBDDataModule`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from solo_rgbd.data.check import check_polarity
from solo_rgbd.data.decode import SALIENCY, DecodeSpec, LabelPolicy, RootSpec, default_cache_root
from solo_rgbd.data.pairstore import PairStore
from solo_rgbd.data.sampler import EpochSampler, ResumableLoader
from solo_rgbd.data.store import open_store
from solo_rgbd.data.synthetic import SYNTH_VERSION, write_synthetic
from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.console import say
from solo_rgbd.utils.locks import cache_lock

log = logging.getLogger(__name__)


def synthetic_root(syn: DictConfig | dict, split: str = "train") -> Path:
    """Generate (once) and return the cached synthetic dataset for ``split`` (train | test)."""
    n = int(syn["n"] if split == "train" else syn["n_test"])
    seed = int(syn["seed"]) + (0 if split == "train" else 100_003)
    size = int(syn["size"])
    ratio = float(syn.get("camouflage_ratio", 0.25))
    difficulty = str(syn.get("difficulty", "standard"))
    name = f"v{SYNTH_VERSION}-{split}-n{n}-s{seed}-px{size}-c{ratio:g}"
    name += "" if difficulty == "standard" else f"-{difficulty}"  # v1 caches keep their names
    root = default_cache_root() / "synthetic" / name
    if (root / "meta.csv").exists():
        return root
    # several processes (DDP ranks, parallel runs) wait for the one that generates it
    with cache_lock(root):
        if not (root / "meta.csv").exists():
            log.info("generating the synthetic dataset %s (%d pairs)", root, n)
            write_synthetic(
                root,
                n=n,
                seed=seed,
                size=size,
                camouflage_ratio=ratio,
                overwrite=True,
                difficulty=difficulty,
            )
    return root


def resolve_roots(data: DictConfig, split: str = "train") -> list[RootSpec]:
    """The dataset folders a data config points at (generating synthetic data on demand)."""
    if data.get("synthetic") and not data.get("roots") and not data.get("path"):
        root = str(synthetic_root(data.synthetic, split))
        return [RootSpec(root, bool(data.get("invert_depth", False)), f"synthetic-{split}")]
    roots = []
    for i, entry in enumerate(data.get("roots") or []):
        if isinstance(entry, str):
            roots.append(RootSpec(entry, bool(data.invert_depth)))
        else:
            entry = (
                OmegaConf.to_container(entry, resolve=True)
                if not isinstance(entry, dict)
                else entry
            )
            if "path" not in entry:
                raise ConfigError(f"data.roots[{i}] needs a 'path' (got {entry}).")
            unknown = set(entry) - {"path", "invert_depth", "name"}
            if unknown:
                raise ConfigError(
                    f"data.roots[{i}] has unknown key(s) {sorted(unknown)}; allowed: path, "
                    "invert_depth, name."
                )
            roots.append(
                RootSpec(
                    str(entry["path"]),
                    bool(entry.get("invert_depth", data.invert_depth)),
                    str(entry.get("name", "")),
                )
            )
    if data.get("path"):
        roots.append(RootSpec(str(data.path), bool(data.invert_depth), str(data.get("name", ""))))
    if not roots:
        raise ConfigError("the data config names no dataset: set data.path=/path/to/dataset.")
    return roots


def build_from_config(
    data: DictConfig,
    split: str = "train",
    require_gt: bool = False,
    size: int | None = None,
    labels: LabelPolicy = SALIENCY,
    copies: int = 1,
) -> PairStore:
    """The store of a data config's ``split``; ``copies``: processes on this node (DDP ranks).
    ``data.format``: ``folder`` (held as ``data.cache`` says), ``litdata`` (a pack at
    ``data.path``) or a plug-in store's name."""
    fmt = str(data.get("format", "folder"))
    if fmt == "litdata":
        check_pack_config(data, split, labels)
        if not data.get("path"):
            raise ConfigError(
                "data.format=litdata needs data.path=FOLDER, a folder made by 'solo-rgbd data "
                "pack'."
            )
        roots = [RootSpec(str(data.path))]
    else:
        roots = resolve_roots(data, split)
    if fmt not in ("folder", "litdata") and str(data.get("cache", "auto")) != "auto":
        raise ConfigError(
            f"data.cache={data.cache} cannot apply with data.format={fmt}: a plug-in store holds "
            "its pairs itself. Remove data.cache."
        )
    spec = DecodeSpec(
        tuple(roots),
        size=size or int(data.image_size),
        strict_pairs=bool(data.strict_pairs),
        on_constant_depth=str(data.on_constant_depth),
        labels=labels,
        require_gt=require_gt,
        split=split,
        threads=int(data.decode_threads or os.cpu_count() or 1),
    )
    kind = str(data.get("cache", "auto")) if fmt == "folder" else fmt
    store = open_store(spec, kind, cache_dir=data.get("cache_dir"), copies=copies)
    what = f"the {split} pairs of data '{data.get('name') or roots[0].path}'"
    check_polarity(store, what, bool(data.invert_depth), bool(data.get("check_polarity", True)))
    own = not (data.get("synthetic") and not data.get("roots") and not data.get("path"))
    if own:  # the embedded set is generated larger than its presets cache it, on purpose
        _say_if_shrunk(store, spec.size, what, "data.image_size" if size is None else "image_size")
    return store


def _say_if_shrunk(store: PairStore, size: int, what: str, key: str) -> None:
    """One line when the pairs are cached at less than half their median size."""
    sides = sorted(min(hw) for hw in store.meta.sizes if hw and min(hw) > 0)
    if sides and sides[len(sides) // 2] > 2 * size:
        h, w = sorted(store.meta.sizes, key=min)[len(sides) // 2]
        say(
            f"note: {what} are about {w}x{h} (median) and are cached at {size}x{size}, more "
            f"than 2x smaller; set {key}=N for more detail.",
            err=True,
        )


def check_pack_config(
    data: DictConfig, split: str = "train", labels: LabelPolicy = SALIENCY
) -> None:
    """Settings a pack cannot honour are errors naming the key, never silently dropped: its
    roots and depth polarity were fixed when it was packed, and LitData reads it without the
    decoded-pair cache. (Its split and label policy are checked against the task's when it is
    opened: :func:`~solo_rgbd.data.shards.check_pack_fits`.)"""
    why = {
        "data.roots": "a pack holds the roots it was packed from: pack them together with "
        "'solo-rgbd data pack ROOT1 ROOT2 OUT', then give data.path=OUT",
        "data.invert_depth": "the depth polarity was applied when packing ('data pack "
        "--invert-depth')",
        "data.cache": "LitData reads the chunks itself; the decoded-pair cache is for folders",
    }
    given = {
        "data.roots": bool(data.get("roots")),
        "data.invert_depth": bool(data.get("invert_depth")),
        "data.cache": str(data.get("cache", "auto")) != "auto",
    }
    for key, set_ in given.items():
        if set_:
            raise ConfigError(
                f"{key} cannot apply with data.format=litdata: {why[key]}. Remove {key}."
            )


def index_loader(
    cache: PairStore, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0
) -> DataLoader:
    """Batches are gathered from the cache by index: no per-sample Python, no decoding."""
    if drop_last and len(cache) < batch_size:
        raise ConfigError(
            f"data.batch_size={batch_size} is larger than the {len(cache)} training pairs; "
            "lower data.batch_size or add data."
        )
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        range(len(cache)),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=cache.batch,
        num_workers=0,
        generator=gen if shuffle else None,
        pin_memory=cache.device.type == "cpu" and torch.cuda.is_available(),
    )


def train_loader(
    cache: PairStore, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
) -> ResumableLoader:
    if len(cache) < batch_size * world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} x {world_size} device(s) is larger than the "
            f"{len(cache)} training pairs; lower data.batch_size or add data."
        )
    sampler = EpochSampler(len(cache), batch_size, seed, True, rank, world_size)
    return ResumableLoader(
        len(cache),
        cache.batch,
        sampler,
        pin_memory=cache.device.type == "cpu" and torch.cuda.is_available(),
    )
