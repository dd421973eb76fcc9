"""What a pretraining checkpoint holds, by part: ``solo-rgbd ckpt info PATH``.

Parts: the online weights (encoders, projectors, fusion, with their BatchNorm statistics), the
momentum copies, the queues (keys, sample ids, pointers), the optimizer state, the callbacks'
state (probe heads, RNG states) and the rest (loop progress, config). Every storage is counted
once, as ``torch.save`` writes it. Which module is a momentum copy or a queue is recorded by
the method in the checkpoint (``state_roles``); older checkpoints fall back to the names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

PARTS = ("weights", "momentum copies", "queues", "optimizer", "callbacks", "other")


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def _role(key: str, roles: Mapping[str, Any]) -> str:
    for part, role in (("momentum copies", "momentum"), ("queues", "queues")):
        prefixes = roles.get(role)
        if prefixes is not None:
            if any(key == p or key.startswith(p + ".") for p in prefixes):
                return part
        elif _guess(key, role):
            return part
    return "weights"


def _guess(key: str, role: str) -> bool:
    """Names for checkpoints written before ``state_roles`` existed."""
    parts = key.split(".")[:-1]
    if role == "momentum":
        return any(p.endswith("_k") or p in ("momentum", "target", "teacher") for p in parts)
    return any("queue" in p for p in parts)


def breakdown(ckpt: Mapping[str, Any]) -> dict[str, int]:
    """Bytes per part (:data:`PARTS`), each storage counted once, in the part that first
    holds it."""
    seen: set[tuple] = set()
    sizes = dict.fromkeys(PARTS, 0)
    roles = ckpt.get("state_roles") or {}

    def add(part: str, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = (storage.device, storage.data_ptr(), storage.nbytes())
        if storage.nbytes() and key in seen:
            return
        seen.add(key)
        sizes[part] += storage.nbytes()

    for key, t in (ckpt.get("state_dict") or {}).items():
        add(_role(key, roles), t)
    for t in _tensors(ckpt.get("optimizer_states") or []):
        add("optimizer", t)
    for t in _tensors(ckpt.get("callbacks") or {}):
        add("callbacks", t)
    rest = {
        k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer_states", "callbacks")
    }
    for t in _tensors(rest):
        add("other", t)
    return sizes


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def summary_line(sizes: Mapping[str, int]) -> str:
    """``285.3 MB: weights 95.1 MB, momentum copies 95.1 MB, ...`` (non-empty parts)."""
    total = sum(sizes.values())
    parts = ", ".join(f"{k} {_mb(v)}" for k, v in sizes.items() if v)
    return f"{_mb(total)}: {parts}"


def describe(path: str | os.PathLike[str]) -> str:
    """The report ``solo-rgbd ckpt info`` prints."""
    from solo_rgbd.utils.safe_load import load_user_checkpoint

    path = Path(path)
    ckpt = load_user_checkpoint(path, "checkpoint")
    sizes = breakdown(ckpt)
    cfg = (ckpt.get("hyper_parameters") or {}).get("cfg") or {}
    total = sum(sizes.values())
    lines = [
        f"checkpoint '{path}': {_mb(path.stat().st_size)} on disk; method "
        f"{cfg.get('method', '?')}, backbone {(cfg.get('backbone') or {}).get('name', '?')}, "
        f"epoch {ckpt.get('epoch', '?')}, step {ckpt.get('global_step', '?')}",
    ]
    for part in PARTS:
        share = sizes[part] / total if total else 0.0
        lines.append(f"  {part:<16} {_mb(sizes[part]):>10}  {share:6.1%}")
    lines.append(f"  {'tensors in all':<16} {_mb(total):>10}")
    if not ckpt.get("state_roles"):
        lines.append("  (written before state_roles: momentum copies and queues found by name)")
    return "\n".join(lines)
