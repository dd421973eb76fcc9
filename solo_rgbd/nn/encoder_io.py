"""Encoders on disk: exports written as one verified unit, and loading encoders for a task.

Exports: ``<dir>/{rgb,depth}.safetensors`` + ``encoders.json``. safetensors holds tensors and
nothing else (loading runs no pickle), and the same weights give the same bytes. Exports
written by earlier versions (``.pt`` state dicts) still load.
An export is built in a new temporary folder beside ``<dir>`` (the state dicts first, the
manifest with their sha256 last, every file fsynced), then swapped in by two renames: the old
folder aside (``.<dir>.<pid>.old``), the new one into place; the old one is then deleted. A
kill between the two renames leaves no ``<dir>``, and :func:`resolve_export_dir` puts the
newest complete folder back, so a reader always finds one complete export of one epoch.
NaN weights are never exported. :func:`verify_export` checks every hash on load.

Loading (``encoders=`` of a task): ``random``, ``imagenet`` (``backbone.weights=FILE`` or
``backbone.pretrained=true``), a pretraining run folder, its ``encoders/`` folder, or a
pretraining checkpoint of any method (read from its state_dict, without building the method).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from omegaconf import DictConfig

from solo_rgbd.errors import CheckpointError, ConfigError, NonFiniteError
from solo_rgbd.nn.backbone import Encoder, export_state_dict
from solo_rgbd.nn.streams import CHANNELS, Streams
from solo_rgbd.utils.atomic import fsync_dir, temp_dir
from solo_rgbd.utils.console import say
from solo_rgbd.utils.finite import all_finite
from solo_rgbd.utils.paths import is_component
from solo_rgbd.utils.safe_load import load_user_checkpoint

MANIFEST = "encoders.json"


def _siblings(out_dir: Path, kind: str) -> list[Path]:
    return sorted(out_dir.parent.glob(f".{out_dir.name}.*.{kind}"))


def resolve_export_dir(out_dir: str | os.PathLike[str], clean: bool = True) -> Path:
    """Finish an interrupted swap and (``clean``) remove leftovers; returns ``out_dir``.
    Readers pass ``clean=False``: a ``.partial`` beside a complete export may be the one a
    running pretraining has built and is about to swap in."""
    out_dir = Path(out_dir)
    complete = [p for p in _siblings(out_dir, "partial") if (p / MANIFEST).is_file()]
    if not (out_dir / MANIFEST).is_file():
        backups = [p for p in _siblings(out_dir, "old") if (p / MANIFEST).is_file()]
        newest = (complete or backups or [None])[-1]
        if newest is not None:
            # our swap never leaves out_dir without a manifest: only an empty one is replaced
            if out_dir.exists() and any(out_dir.iterdir()):
                raise CheckpointError(
                    f"'{out_dir}' holds files but no {MANIFEST}, so it is not an export "
                    f"solo-rgbd wrote, and a complete export waits beside it in '{newest}'. "
                    "Nothing was deleted: move your files out of the folder (then the export "
                    "is put in place), or point encoders= at the export folder."
                )
            if out_dir.exists():
                out_dir.rmdir()
            os.replace(newest, out_dir)
            fsync_dir(out_dir.parent)
    for leftover in _siblings(out_dir, "partial") + _siblings(out_dir, "old") if clean else []:
        shutil.rmtree(leftover, ignore_errors=True)
    return out_dir


@dataclass(frozen=True)
class EncoderSnapshot:
    """One encoder's weights copied off the live model (host tensors), ready to be written."""

    state: dict[str, torch.Tensor]
    backbone: str
    in_chans: int


def snapshot_encoders(encoders: dict[str, Any]) -> dict[str, EncoderSnapshot]:
    """Host copies of ``encoders`` ({name: Encoder}): the training loop may go on updating the
    live weights while :func:`write_export` writes these (e.g. on a background thread)."""
    return {
        name: EncoderSnapshot(export_state_dict(enc), enc.name, enc.in_chans)
        for name, enc in encoders.items()
    }


def export_encoders(
    encoders: dict[str, Any], out_dir: str | os.PathLike[str], info: dict[str, Any]
) -> dict[str, Any]:
    """Write ``encoders`` ({name: Encoder}) as timm-loadable state dicts plus the manifest.

    Each ``<name>.safetensors`` loads into ``timm.create_model(backbone, in_chans=...,
    num_classes=0)`` with ``model.load_state_dict(safetensors.torch.load_file(path))``.
    """
    return write_export(snapshot_encoders(encoders), out_dir, info)


def _write_synced(path: Path, data: bytes) -> None:
    """A new file (mode: the umask's), its bytes on disk before the call returns."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_export(
    snapshot: dict[str, EncoderSnapshot], out_dir: str | os.PathLike[str], info: dict[str, Any]
) -> dict[str, Any]:
    """Write a :func:`snapshot_encoders` as one verified export (module doc) and return its
    manifest: a new folder, the manifest with every file's sha256 last, swapped in by renames.
    The bytes are safetensors' own serialisation (``safetensors.torch.save``)."""
    out_dir = Path(out_dir)
    if not all_finite(t for snap in snapshot.values() for t in snap.state.values()):
        raise NonFiniteError(
            f"refusing to export non-finite encoder weights to '{out_dir}' (step "
            f"{info.get('global_step')}); the previous export is kept."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    resolve_export_dir(out_dir)
    manifest: dict[str, Any] = {**info, "encoders": {}}
    tmp = temp_dir(out_dir)
    try:
        for name, snap in snapshot.items():
            data = safetensors.torch.save(snap.state, {"backbone": snap.backbone})
            _write_synced(tmp / f"{name}.safetensors", data)
            manifest["encoders"][name] = {
                "file": f"{name}.safetensors",
                "backbone": snap.backbone,
                "in_chans": snap.in_chans,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        _write_synced(tmp / MANIFEST, text.encode())  # last: a folder with it is complete
        fsync_dir(tmp)
        old = out_dir.parent / f".{out_dir.name}.{os.getpid()}.old"
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        fsync_dir(out_dir.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_export(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` after checking that every listed file has its sha256."""
    folder = resolve_export_dir(folder, clean=False)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"'{folder / MANIFEST}' cannot be read ({exc}); export the encoders again."
        ) from None
    encoders = manifest.get("encoders") if isinstance(manifest, dict) else None
    if not isinstance(encoders, dict) or not all(isinstance(e, dict) for e in encoders.values()):
        raise CheckpointError(
            f"'{folder / MANIFEST}' is not an encoders manifest (expected {{\"encoders\": "
            "{name: {file, backbone, in_chans, sha256}}}); export the encoders again."
        )
    for name, entry in encoders.items():
        file, digest = entry.get("file"), entry.get("sha256")
        if not is_component(file):
            raise CheckpointError(
                f"encoder '{name}' in '{folder / MANIFEST}' names the file {file!r}, which is not "
                "a file inside the export folder; an export lists only its own files."
            )
        path = folder / str(file)
        if not path.is_file():
            raise CheckpointError(f"'{path}' listed for encoder '{name}' in {MANIFEST} is missing.")
        if not isinstance(digest, str) or not digest:
            raise CheckpointError(
                f"encoder '{name}' in '{folder / MANIFEST}' has no sha256, so '{path}' cannot be "
                "verified; export the encoders again (solo-rgbd writes the hash of every file)."
            )
        if sha256_of(path) != digest:
            raise CheckpointError(
                f"'{path}' does not match the sha256 in '{folder / MANIFEST}': the file was "
                "changed or comes from another export (e.g. another epoch). Re-export the "
                "encoders (or copy the whole encoders/ folder of one run)."
            )
    return manifest


def _load_state(encoder: Encoder, state: dict, source: str, name: str) -> None:
    first = next((k for k, v in state.items() if getattr(v, "ndim", 0) == 4), None)
    own = encoder.model.state_dict()
    if first is not None and first in own and state[first].shape[1] != own[first].shape[1]:
        raise ConfigError(
            f"the {name} encoder in '{source}' takes in_chans={state[first].shape[1]} "
            f"({first}), but the {name} encoder needs in_chans={own[first].shape[1]}. Export "
            "encoders with the right modality order (rgb: 3 channels, depth: 1, rgbd: 4)."
        )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConfigError(
            f"the {name} encoder in '{source}' does not fit backbone '{encoder.name}': "
            f"{len(missing)} missing key(s) (e.g. {', '.join(missing[:4]) or '-'}), "
            f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4]) or '-'}). Set "
            "backbone.name to the architecture the encoders were trained with."
        )
    encoder.model.load_state_dict(state)


def _check_finite(state: dict, source: str, name: str) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"the {name} encoder in '{source}' has non-finite weights ({len(bad)} tensors, e.g. "
            f"{bad[0]}): the pretraining diverged. Use an earlier export or rerun with a lower lr."
        )


def _build(name: str, backbone: str, state: dict, source: str) -> Encoder:
    _check_finite(state, source, name)
    encoder = Encoder(backbone, CHANNELS[name])
    _load_state(encoder, state, source, name)
    return encoder


def _pick(entries: dict, source: str) -> list[str]:
    """The stream names of an export or checkpoint, in canonical order."""
    try:
        return list(Streams.of_names(entries).names)
    except ValueError:
        raise ConfigError(
            f"'{source}' lists encoders {sorted(entries)}; a task's network needs 'rgb' and "
            "'depth' (two streams), 'rgbd' (early fusion), or one of 'rgb' / 'depth' (one "
            "modality)."
        ) from None


def _complete(encoders: dict[str, Encoder], source: str, missing_stream: str) -> dict[str, Encoder]:
    """Stream-keyed encoders for a task's two-input network: two streams or early fusion as
    they are; a one-modality export only with ``missing_stream=random`` (the other encoder
    starts from random weights, said in one line), else an error naming that setting."""
    if missing_stream not in ("error", "random"):
        raise ConfigError(f"missing_stream={missing_stream!r} is invalid: use error or random.")
    if Streams.of_names(encoders).mode in ("two_stream", "early_fusion"):
        return encoders
    (have,) = encoders
    missing = "depth" if have == "rgb" else "rgb"
    if missing_stream != "random":
        raise ConfigError(
            f"'{source}' holds only a {have} encoder (a one-modality export) and this task's "
            f"network also needs a {missing} encoder; pass missing_stream=random to start it "
            "from random weights, or use two-stream encoders."
        )
    say(f"note: '{source}' has no {missing} encoder; it starts from random weights.", err=True)
    return {**encoders, missing: Encoder(encoders[have].name, CHANNELS[missing])}


def _from_manifest(folder: Path) -> dict[str, Encoder]:
    manifest = verify_export(folder)  # every file's sha256 is checked
    entries = manifest.get("encoders", {})
    out: dict[str, Encoder] = {}
    for name in _pick(entries, str(folder / MANIFEST)):
        path = folder / entries[name]["file"]
        state = _read_state(path, name)
        out[name] = _build(name, entries[name]["backbone"], state, str(path))
    return out


def _read_state(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A safetensors file (current exports) or a ``.pt`` state dict (earlier exports)."""
    if path.suffix != ".safetensors":
        return load_user_checkpoint(path, f"{name} encoder file")
    try:
        return safetensors.torch.load_file(path)
    except (OSError, safetensors.SafetensorError) as exc:
        raise CheckpointError(
            f"the {name} encoder file '{path}' cannot be read as safetensors ({exc}); export "
            "the encoders again."
        ) from None


def _from_checkpoint(path: Path) -> dict[str, Encoder]:
    """The encoders out of a method checkpoint's state_dict, without building the method."""
    ckpt = load_user_checkpoint(path, "encoders checkpoint")
    entries = ckpt.get("encoders")
    if not isinstance(entries, dict) or "state_dict" not in ckpt:
        raise ConfigError(
            f"'{path}' is not a solo-rgbd pretraining checkpoint (it lists no encoders); pass "
            "a run folder, an encoders/ folder, a pretraining .ckpt, or random/imagenet."
        )
    out: dict[str, Encoder] = {}
    for name in _pick(entries, str(path)):
        prefix = entries[name]["prefix"]
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        out[name] = _build(name, entries[name]["backbone"], state, f"{path} ({prefix}*)")
    return out


def load_encoders(
    spec: str, backbone: DictConfig, missing_stream: str = "error"
) -> dict[str, Encoder]:
    """The encoders named by ``spec``, keyed by stream: ``{"rgb": ..., "depth": ...}`` for two
    streams, ``{"rgbd": ...}`` for early fusion (:func:`~solo_rgbd.nn.streams.network_pair`
    gives a network's two inputs). A one-modality export is an error unless
    ``missing_stream="random"``."""
    name = str(backbone.name)
    if spec == "random":
        return {"rgb": Encoder(name, 3), "depth": Encoder(name, 1)}
    if spec == "imagenet":
        if not backbone.get("weights") and not backbone.get("pretrained"):
            raise ConfigError(
                "encoders=imagenet needs backbone.weights=/path/to/imagenet_weights.pth (a "
                "timm or torchvision state dict) or backbone.pretrained=true (downloads "
                "through timm's hub, needs internet)."
            )
        args = (bool(backbone.get("pretrained")), backbone.get("weights"))
        return {"rgb": Encoder(name, 3, *args), "depth": Encoder(name, 1, *args)}
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "encoders").is_dir():
        path = resolve_export_dir(path / "encoders", clean=False)
    if path.is_dir() and (path / MANIFEST).exists():
        return _complete(_from_manifest(path), str(path), missing_stream)
    if path.is_file():
        return _complete(_from_checkpoint(path), str(path), missing_stream)
    raise ConfigError(
        f"encoders='{spec}' is neither random, imagenet, a pretraining run folder, an "
        "encoders/ folder with encoders.json, nor a checkpoint file. Fix the path."
    )
