"""Datasets packed into LitData chunks (``solo-rgbd data pack``, ``data.format=litdata``).

Packing decodes every pair once (any supported layout, depth polarity applied, resized to
``--size``) into LitData's chunk files, each item ``{"rgb": uint8 (3, S, S), "depth": int16
(1, S, S), "gt"?: uint8 (1, S, S), "h", "w"}``, in the folder's pair order, plus
``solo_rgbd.json`` (the format, size, stems, sources, meta rows, original sizes, and the
``split`` and ``labels`` policy it was packed for: a task reading another split, or labels read
another way, is refused, see :func:`~solo_rgbd.data.pack_store.check_pack_fits`). The job is
LitData's ``optimize`` with its checkpoints: it writes ``OUT.partial`` and a rerun after a kill
continues it; the finished folder is renamed to ``OUT``, so ``OUT`` is whole or absent. Reading
a pack: :mod:`solo_rgbd.data.pack_store`.
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

import torch
from PIL import Image

from solo_rgbd.data.decode import (
    SALIENCY,
    DecodeSpec,
    LabelPolicy,
    PairFile,
    PairFiles,
    RootSpec,
    decode_file,
    find_pairs,
    fingerprint,
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
    root = RootSpec(str(Path(rgb_path).parent), bool(invert))
    file = PairFile(root, "", Path(rgb_path).stem, Path(rgb_path), Path(depth_path), gt)
    spec = DecodeSpec((root,), size, on_constant_depth=on_constant_depth, labels=LABELS[labels])
    try:
        pair, _ = decode_file(file, spec)
        r, d, g, (h, w) = pair.rgb, pair.depth, pair.gt, pair.hw
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
    spec = DecodeSpec(tuple(roots), size, strict_pairs, on_constant_depth)
    found = find_pairs(spec)
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


def _finish(work: Path, out: Path, found: PairFiles, plan: dict) -> None:
    """The manifest, written last, then ``OUT.partial`` renamed to ``OUT``."""
    manifest = {
        **plan,
        "has_gt": found.use_gt,
        "stems": [f.stem for f in found.files],
        "sources": [f.source for f in found.files],
        "meta": found.meta if any(found.meta) else [],
        "gt_paths": [str(f.gt) for f in found.files] if found.use_gt else [],
        "sizes": [_rgb_hw(f.rgb) for f in found.files],  # the original (H, W), from headers
    }
    atomic_write_text(json.dumps(manifest), work / MANIFEST)
    (work / PLAN).unlink(missing_ok=True)
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(work, out)


def _rgb_hw(path: Path) -> list[int]:
    with Image.open(path) as img:  # the header only: what read_rgb would decode
        return [img.size[1], img.size[0]]


def _optimize(
    work: Path,
    found: PairFiles,
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
        [str(f.rgb), str(f.depth), str(f.gt) if f.gt and found.use_gt else None,
         f.root.invert_depth]
        for f in found.files
    ]  # fmt: skip
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
    check_count(work, len(found))


def check_count(path: Path, n: int, chunks: list[dict] | None = None) -> None:
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
