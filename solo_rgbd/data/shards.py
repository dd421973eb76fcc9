"""Datasets packed into LitData chunks (``solo-rgbd data pack``, ``data.format=litdata``).

Packing decodes every pair once (any supported layout, depth polarity applied, resized to
``--size``) into LitData's chunk files, each item ``{"rgb": uint8 (3, S, S), "depth": int16
(1, S, S), "gt"?: uint8 (1, S, S), "h", "w"}``, in the folder's pair order, plus
``solo_rgbd.json`` (the format, size, stems, sources, meta rows, original sizes, and the
``split`` and ``labels`` policy it was packed for: a task reading another split, or labels read
another way, is refused, see :func:`check_pack_fits`). The job is
LitData's ``optimize`` with its checkpoints: it writes ``OUT.partial`` and a rerun after a kill
continues it; the finished folder is renamed to ``OUT``, so ``OUT`` is whole or absent.

Training reads items by index through LitData's ``StreamingDataset``: the order, the rank
shares and the resume position are the library's own sampler's (:mod:`solo_rgbd.data.sampler`),
so a run from the chunks draws exactly the pairs of the same run from the folder, and a killed
run resumes at the same pair. LitData's own shuffle (chunk-wise, for sequential streaming from
object stores) would draw a different order than the folder path, so it is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from solo_rgbd.data.cache import (
    SALIENCY,
    LabelPolicy,
    PairJobs,
    RGBDCache,
    RootSpec,
    fingerprint,
    load_pair,
    pair_jobs,
)
from solo_rgbd.data.disk_cache import check_free_space, decoded_bytes
from solo_rgbd.data.pack_checks import (
    PLAN,
    check_pack_settings,
    check_partial,
    check_plan,
    descendants,
    pack_error,
    pack_lock,
    refuse_bad_pairs,
)
from solo_rgbd.errors import DataError
from solo_rgbd.utils.atomic import atomic_write_text

SHARD_FORMAT = 1
MANIFEST = "solo_rgbd.json"


LABELS = {"saliency": SALIENCY, "classes": LabelPolicy(resize="nearest")}
SPLITS = ("train", "test")


def label_name(policy: LabelPolicy) -> str | None:
    """The pack's name of a task's label policy (None: one a pack cannot hold)."""
    return next((name for name, known in LABELS.items() if known == policy), None)


def _item(
    job: list, size: int, on_constant_depth: str, errors: str, labels: str = "saliency"
) -> dict:
    """One pair as a LitData item (a module-level function: the workers pickle it).

    ``job``: [rgb path, depth path, GT path or None, invert depth], JSON for LitData's
    checkpoints. A pair that cannot be read never raises in the worker (LitData's error path
    can hang): its error goes to a file under ``errors`` and the pack is refused at the end."""
    rgb_path, depth_path, gt_path, invert = job
    gt = Path(gt_path) if gt_path else None
    if torch.get_num_threads() != 1:  # a forked worker: no OpenMP pool (see pack)
        torch.set_num_threads(1)
    try:
        r, d, g, _, (h, w) = load_pair(
            Path(rgb_path),
            Path(depth_path),
            gt,
            size,
            bool(invert),
            on_constant_depth,
            LABELS[labels],
        )
    except (DataError, OSError, ValueError) as exc:
        with open(Path(errors) / f"{os.getpid()}.txt", "a") as f:
            f.write(" ".join(str(exc).split()) + "\n")
        r, d = torch.zeros(3, size, size, dtype=torch.uint8), torch.zeros(1, size, size).short()
        g, h, w = (torch.zeros(1, size, size, dtype=torch.uint8) if gt else None), 0, 0
    item = {"rgb": r.numpy(), "depth": d.numpy(), "h": int(h), "w": int(w)}
    if g is not None:
        item["gt"] = g.numpy()
    return item


def pack(
    roots: Sequence[RootSpec],
    out: str | Path,
    size: int,
    workers: int = 1,
    chunk_bytes: str | int = "64MB",
    strict_pairs: bool = True,
    on_constant_depth: str = "error",
    progress: bool = True,
    split: str = "train",
    labels: str = "saliency",
) -> Path:
    """Pack ``roots`` into LitData chunks at ``out`` (resumable; see the module docstring).
    ``split``: which split of a dataset these roots are (``train`` or ``test``); ``labels``:
    ``saliency`` (soft maps, resized bilinearly) or ``classes`` (class ids, nearest)."""
    out = Path(out)
    chunk_bytes = check_pack_settings(size, workers, chunk_bytes)
    if split not in SPLITS or labels not in LABELS:
        bad, key, ok = (
            (split, "--split", SPLITS)
            if split not in SPLITS
            else (labels, "--labels", tuple(LABELS))
        )
        raise DataError(f"{key} {bad!r} is not one of {', '.join(ok)}; nothing was written.")
    if (out / MANIFEST).exists():
        raise DataError(f"'{out}' is already a packed dataset; pack into a new folder.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"'{out}' exists and is not empty; pack into a new or empty folder.")
    work = out.with_name(out.name + ".partial")
    check_partial(work)  # before any decoding: a folder of the user's is never touched
    found = pair_jobs(roots, strict_pairs, require_gt=False)
    plan = {"format": SHARD_FORMAT, "size": size, "roots": [r.path for r in roots], "n": len(found)}
    plan.update(split=split, labels=labels)
    plan["files"] = hashlib.sha256(repr(fingerprint(roots)).encode()).hexdigest()[:20]
    with pack_lock(out):
        check_partial(work)  # again, now that no other pack can make it
        check_free_space(work.parent, decoded_bytes(len(found), size, found.use_gt))
        check_plan(work, plan)
        _optimize(work, found, size, workers, chunk_bytes, on_constant_depth, progress, labels)
        _finish(work, out, found, plan)
    return out


def _finish(work: Path, out: Path, found: PairJobs, plan: dict) -> None:
    """The manifest, written last, then ``OUT.partial`` renamed to ``OUT``."""
    manifest = {
        **plan,
        "has_gt": found.use_gt,
        "stems": [job[2] for job in found.jobs],
        "sources": [job[1] for job in found.jobs],
        "meta": found.meta if any(found.meta) else [],
        "gt_paths": [str(job[5]) for job in found.jobs] if found.use_gt else [],
    }
    atomic_write_text(json.dumps(manifest), work / MANIFEST)
    (work / PLAN).unlink(missing_ok=True)
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(work, out)


def _optimize(
    work: Path,
    found: PairJobs,
    size: int,
    workers: int,
    chunk_bytes: str,
    on_constant_depth: str,
    progress: bool,
    labels: str = "saliency",
) -> None:
    """LitData's ``optimize`` over every pair, in order, resumable; then the checks."""
    import litdata

    errors = work / "errors"
    errors.mkdir(exist_ok=True)
    fn = partial(
        _item, size=size, on_constant_depth=on_constant_depth, errors=str(errors), labels=labels
    )
    inputs = [
        [str(rgb), str(depth), str(gt) if gt and found.use_gt else None, spec.invert_depth]
        for spec, _, _, rgb, depth, gt in found.jobs
    ]
    before = {p.pid for p in multiprocessing.active_children()}
    try:
        if not (work / "index.json").exists():  # else: killed after LitData finished
            litdata.optimize(
                fn=fn,
                inputs=inputs,
                output_dir=str(work),
                chunk_bytes=chunk_bytes,
                num_workers=max(1, workers),
                keep_data_ordered=True,  # item i is pair i of the folder
                reorder_files=False,
                use_checkpoint=True,  # a rerun after a kill continues the job
                verbose=progress,
                # fork: workers start in milliseconds (spawn re-imports torch, 5 s each); they
                # run torch single-threaded, as DataLoader workers do, so a parent whose
                # OpenMP pool has run cannot hang them
                start_method="fork" if sys.platform.startswith("linux") else None,
            )
    except (OSError, RuntimeError) as exc:
        raise pack_error(exc, work) from None
    finally:  # LitData leaves forked helpers alive; the caller would wait for them at exit
        for child in multiprocessing.active_children():
            if child.pid not in before:
                for pid in descendants(child.pid):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                child.terminate()
                child.join(5)
    refuse_bad_pairs(errors, work)
    _check_count(work, len(found))


def _check_count(path: Path, n: int, chunks: list[dict] | None = None) -> None:
    """LitData's index holds exactly ``n`` items (a worker that died unnoticed would not);
    ``chunks``: the index's, when the caller has read it."""
    if chunks is None:
        chunks = json.loads((path / "index.json").read_text())["chunks"]
    have = sum(int(c["chunk_size"]) for c in chunks)
    if have != n:
        raise DataError(
            f"'{path}' holds {have} of {n} pairs: a packing worker died; rerun the same "
            "'solo-rgbd data pack' to complete it."
        )


class ShardPairs:
    """The pairs of a packed folder, read by index (the training interface of
    :class:`~solo_rgbd.data.cache.RGBDCache`: ``len``, ``batch``, ``subset``, ``to``)."""

    mapped = False

    def __init__(self, path: str | Path, rows: torch.Tensor | None = None, **state) -> None:
        self.path = Path(path)
        if state:
            self.__dict__.update(state)
        else:
            self.manifest = open_manifest(self.path)
            self.dataset = _streaming(self.path)
        m = self.manifest
        self.rows = rows
        pick = range(m["n"]) if rows is None else rows.tolist()
        self.stems = [m["stems"][i] for i in pick]
        self.sources = [m["sources"][i] for i in pick]
        self.meta = [m["meta"][i] for i in pick] if m["meta"] else []
        self.gt_paths = [m["gt_paths"][i] for i in pick] if m["gt_paths"] else []

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def has_gt(self) -> bool:
        return bool(self.manifest["has_gt"])

    @property
    def split(self) -> str:
        return str(self.manifest.get("split", "train"))  # packs from before it: training pairs

    @property
    def labels(self) -> str:
        return str(self.manifest.get("labels", "saliency"))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return self.manifest["n"] if self.rows is None else len(self.rows)

    def _row(self, i: int) -> int:
        return i if self.rows is None else int(self.rows[i])

    def batch(self, indices: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """{'rgb': uint8, 'depth': int16 code, 'gt'?: uint8, 'index': long}, as the cache's."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        items = [self.dataset[self._row(int(i))] for i in idx]
        out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("rgb", "depth")}
        if self.has_gt:
            out["gt"] = torch.from_numpy(np.stack([it["gt"] for it in items]))
        out["index"] = idx
        return out

    def subset(self, indices: Sequence[int]) -> ShardPairs:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        rows = idx if self.rows is None else self.rows[idx]
        return ShardPairs(self.path, rows, manifest=self.manifest, dataset=self.dataset)

    def materialized(self) -> RGBDCache:
        """Every pair of this view, read into tensors (a validation split, or for the GPU)."""
        items = [self.dataset[self._row(i)] for i in range(len(self))]
        arrays = {
            k: torch.from_numpy(np.stack([it[k] for it in items])) if items else None
            for k in ("rgb", "depth", "gt")
            if k != "gt" or self.has_gt
        }
        sizes = [(int(it["h"]), int(it["w"])) for it in items]
        args = (self.stems, self.sources, self.meta, sizes, self.gt_paths)
        return RGBDCache(arrays["rgb"], arrays["depth"], arrays.get("gt"), *args)

    def to(self, device: str | torch.device) -> RGBDCache:
        return self.materialized().to(device)


def open_manifest(path: Path) -> dict:
    """The pack's manifest, or a clear error for an unfinished, foreign or damaged folder."""
    partial_dir = path.with_name(path.name + ".partial")
    if not (path / MANIFEST).exists():
        if partial_dir.exists() and not path.exists():
            hint = "it is an unfinished pack: rerun the same 'solo-rgbd data pack' to complete it"
        elif (path / "index.json").exists():
            hint = "it holds LitData chunks but no solo_rgbd.json: use 'solo-rgbd data pack'"
        else:
            hint = "it is not a packed dataset: make one with 'solo-rgbd data pack SRC OUT'"
        raise DataError(f"data.path='{path}' cannot be read as data.format=litdata: {hint}.")
    manifest = json.loads((path / MANIFEST).read_text())
    if manifest.get("format") != SHARD_FORMAT:
        raise DataError(
            f"'{path}' was packed by another version of solo-rgbd (format "
            f"{manifest.get('format')}, this one reads {SHARD_FORMAT}); pack the dataset again "
            "with 'solo-rgbd data pack'."
        )
    _check_count(path, int(manifest["n"]), _check_chunks(path))
    return manifest


def _check_chunks(path: Path) -> list[dict]:
    """Every chunk named in LitData's index.json is there with its full length; returns the
    index's chunks."""
    try:
        index = json.loads((path / "index.json").read_text())
        chunks = index["chunks"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"'{path}/index.json' is missing or unreadable ({exc}); pack the dataset again."
        ) from None
    for chunk in chunks:
        file = path / chunk["filename"]
        have = file.stat().st_size if file.exists() else -1
        if have != int(chunk["chunk_bytes"]):
            state = "is missing" if have < 0 else f"has {have} of {chunk['chunk_bytes']} bytes"
            raise DataError(
                f"the chunk '{file}' {state} (truncated or damaged); copy it again from where "
                "the pack was made, or pack the dataset again."
            )
    return chunks


def _streaming(path: Path):
    import litdata

    try:
        return litdata.StreamingDataset(str(path))
    except Exception as exc:  # noqa: BLE001 - LitData's own errors vary by version
        raise DataError(
            f"LitData {litdata.__version__} cannot open '{path}' ({exc}); pack the dataset "
            "again with this installation's 'solo-rgbd data pack'."
        ) from None


def is_pack(path: str | Path) -> bool:
    """A folder made by ``solo-rgbd data pack`` (finished)."""
    return (Path(path) / MANIFEST).is_file()


def read_pack(path: str | Path, size: int, split: str | None, labels: LabelPolicy | None):
    """A whole pack read into an in-memory cache (a test set), checked against what the task
    reads: its image size, and (when given) its split and label policy."""
    pairs = ShardPairs(path)
    if pairs.size != size:
        raise DataError(
            f"'{path}' was packed at {pairs.size} px and the model reads {size} px; pack it "
            f"again with --size {size}."
        )
    if split is not None and labels is not None:
        check_pack_fits(pairs, split, labels)
    return pairs.materialized()


def check_pack_fits(pairs: ShardPairs, split: str, labels: LabelPolicy) -> None:
    """A task gets the split and the labels it asked for, or a clear error, never another."""
    if pairs.split != split:
        raise DataError(
            f"'{pairs.path}' was packed as the {pairs.split} split and this task reads its "
            f"{split} split; pack the {split} folder with 'solo-rgbd data pack SRC OUT --split "
            f"{split}' and point the task at it."
        )
    wanted = label_name(labels)
    if pairs.has_gt and wanted != pairs.labels:
        how = f"--labels {wanted}" if wanted else "(a label reader packs cannot hold)"
        raise DataError(
            f"'{pairs.path}' holds {pairs.labels} labels and this task reads its labels another "
            f"way; pack it again with {how}, or use data.format=folder."
        )
