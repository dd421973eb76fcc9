"""Writing a safetensors file over the previous version of itself.

A pretraining run exports the same encoders every epoch: the same names, dtypes and shapes,
new values. safetensors' header depends on those alone (and the metadata), so the header of the
file an export wrote before is byte for byte the one ``safetensors.torch.save_file`` would
write now, and the data section is each tensor's bytes at the header's offsets. Writing over
that file's cached pages, without truncating it first, costs a fraction of a new file (the
main job's two 20 MB encoders: see ``docs/benchmarks.md``); the bytes are those of
``save_file`` (``tests/nn/test_safetensors_io.py``). Anything else (no file, another layout, a
file with other hard links, a symlink) goes through ``save_file`` into a new file.
The sha256 of the bytes is returned as a function, to be called later (on the export's writer
thread, while the step loop serialises the checkpoint).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch

from solo_rgbd.utils.atomic import file_mode, rewritable_in_place

#: safetensors' dtype names
DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_MAX_HEADER = 100 << 20  # safetensors' own limit


def write_safetensors(
    path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]
) -> Callable[[], str]:
    """Write ``state`` (host tensors) as the safetensors file ``path``; returns a function that
    gives the sha256 of the bytes written (neither ``state`` nor the file may change until it
    is called).

    Written over the file in place when it holds the same tensors and metadata (module doc);
    otherwise the file is unlinked (never written through a link) and made anew."""
    found = _same_layout(path, state, metadata)
    if found is None:
        path.unlink(missing_ok=True)
        safetensors.torch.save_file(state, path, metadata)
        os.chmod(path, file_mode())  # save_file makes it 0600; runs are shared in labs
        return functools.partial(sha256_of, path)
    prefix, order = found
    parts = [_bytes_of(state[name]) for name in order]
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "wb") as f:
        f.write(prefix)
        for data in parts:
            f.write(data)
        f.truncate()
    return functools.partial(_sha256_of_parts, [prefix, *parts])


def _bytes_of(tensor: torch.Tensor):
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()


def _sha256_of_parts(parts: list) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)  # hashlib lets go of the GIL on large buffers
    return digest.hexdigest()


def _same_layout(
    path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[bytes, list[str]] | None:
    """The file's size prefix and header, and the tensor names in data order, when ``path`` is a
    plain file of one link whose header describes exactly ``state`` and ``metadata``."""
    if not rewritable_in_place(path) or sys.byteorder != "little":
        return None
    with open(path, "rb") as f:
        size = f.read(8)
        n = int.from_bytes(size, "little") if len(size) == 8 else -1
        if not 0 < n <= _MAX_HEADER:
            return None
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.pop("__metadata__", None) != metadata:
        return None
    if set(header) != set(state):
        return None
    spans = []
    for name, tensor in state.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("dtype") != DTYPES.get(tensor.dtype):
            return None
        if entry.get("shape") != list(tensor.shape):
            return None
        begin, end = entry.get("data_offsets") or (None, None)
        if not isinstance(begin, int) or end != begin + tensor.numel() * tensor.element_size():
            return None
        spans.append((begin, end, name))
    spans.sort()
    offset = 0
    for begin, end, _ in spans:  # back to back from 0, as safetensors lays them out
        if begin != offset:
            return None
        offset = end
    return size + raw, [name for _, _, name in spans]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
