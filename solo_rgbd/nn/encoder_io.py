"""Encoders on disk: exports written as one verified unit, and loading encoders for a task.

Exports: ``<dir>/{rgb,depth}.safetensors`` + ``encoders.json``. safetensors holds tensors and
nothing else (loading runs no pickle), and the same weights give the same bytes. Exports
written by earlier versions (``.pt`` state dicts) still load.
An export is built in a sibling folder (state dicts first, the manifest with their sha256
last, every file fsynced), then swapped in: one atomic exchange of the two folders' names where
the system has it (the old export stays as the folder the next export writes over), else two
renames, the old folder aside and the new one into place. :func:`resolve_export_dir` completes
a swap that a kill interrupted, so a reader always finds one complete export of one epoch.
Identical weights give identical bytes (and sha256). NaN weights are never exported.
:func:`verify_export` checks every hash on load.

Loading (``encoders=`` of a task): ``random``, ``imagenet`` (``backbone.weights=FILE`` or
``backbone.pretrained=true``), a pretraining run folder, its ``encoders/`` folder, or a
pretraining checkpoint of any method (read from its state_dict, without building the method).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from omegaconf import DictConfig

from solo_rgbd.errors import CheckpointError, ConfigError, NonFiniteError
from solo_rgbd.nn.backbone import Encoder, export_state_dict
from solo_rgbd.nn.safetensors_io import sha256_of, write_safetensors
from solo_rgbd.nn.streams import CHANNELS, Streams
from solo_rgbd.utils.atomic import exchange_names, fsync_dir, fsync_file, temp_dir
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
    manifest = write_export(snapshot_encoders(encoders), out_dir, info)
    discard_spare_folder(out_dir)  # one export, not a series: the one before is not kept
    return manifest


def write_export(
    snapshot: dict[str, EncoderSnapshot], out_dir: str | os.PathLike[str], info: dict[str, Any]
) -> dict[str, Any]:
    """Write a :func:`snapshot_encoders` as one verified export (module doc); the manifest with
    every file's sha256 comes last, and the folder is swapped in by renames. The export before
    is kept as ``.<name>.spare`` for the next call to write over (a run's series of exports):
    :func:`discard_spare_folder` removes it."""
    staged = stage_export(snapshot, out_dir, info)
    staged.commit()
    return staged.manifest


def stage_export(
    snapshot: dict[str, EncoderSnapshot], out_dir: str | os.PathLike[str], info: dict[str, Any]
) -> StagedExport:
    """Build the export of ``snapshot`` beside ``out_dir``, in the folder of the export before
    last (``.<name>.spare``, kept by the previous swap): the state dicts, written over that
    folder's files where they hold the same tensors (:mod:`solo_rgbd.nn.safetensors_io`).
    ``commit()`` hashes them, writes the manifest with their sha256, fsyncs and swaps the folder
    in (on the writer thread, the hashing overlaps the checkpoint's serialisation); until then
    ``snapshot`` must not change (:func:`snapshot_encoders` makes a copy)."""
    out_dir = Path(out_dir)
    if not all_finite(t for snap in snapshot.values() for t in snap.state.values()):
        raise NonFiniteError(
            f"refusing to export non-finite encoder weights to '{out_dir}' (step "
            f"{info.get('global_step')}); the previous export is kept."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    resolve_export_dir(out_dir)
    staged = StagedExport(out_dir, _spare_folder(out_dir), {**info, "encoders": {}})
    try:
        files = {f"{name}.safetensors" for name in snapshot} | {MANIFEST}
        for stale in staged.tmp.iterdir():  # another layout's files, or not a plain file
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            elif stale.name not in files or stale.is_symlink():
                stale.unlink()
        (staged.tmp / MANIFEST).unlink(missing_ok=True)  # never written through a hard link
        for name, snap in snapshot.items():
            path = staged.tmp / f"{name}.safetensors"
            staged.manifest["encoders"][name] = {
                "file": path.name,
                "backbone": snap.backbone,
                "in_chans": snap.in_chans,
            }
            staged.digests[name] = write_safetensors(path, snap.state, {"backbone": snap.backbone})
    except BaseException:
        staged.discard()
        raise
    return staged


def spare_folder_of(out_dir: Path) -> Path:
    """Where the export before last waits to be written over: ``.<name>.spare``."""
    return out_dir.parent / f".{out_dir.name}.spare"


def _spare_folder(out_dir: Path) -> Path:
    spare = spare_folder_of(out_dir)
    if spare.is_symlink() or (spare.exists() and not spare.is_dir()):
        spare.unlink()
    if not spare.is_dir():
        os.replace(temp_dir(out_dir), spare)  # a new folder with the umask's mode
    return spare


@dataclass
class StagedExport:
    """An export built in ``tmp`` (:func:`stage_export`); :meth:`commit` takes the files'
    sha256 (``digests``), writes the manifest, fsyncs every file and swaps ``tmp`` and
    ``out_dir`` (one atomic exchange where the system has it), so the old export becomes the
    next spare; :meth:`discard` removes ``tmp``."""

    out_dir: Path
    tmp: Path
    manifest: dict[str, Any]
    digests: dict[str, Callable[[], str]] = field(default_factory=dict)

    def commit(self) -> None:
        out_dir, tmp = self.out_dir, self.tmp
        try:
            for name, digest in self.digests.items():
                self.manifest["encoders"][name]["sha256"] = digest()
            text = json.dumps(self.manifest, indent=2, sort_keys=True) + "\n"
            (tmp / MANIFEST).write_text(text)  # last: a folder with a manifest is complete
            for path in sorted(tmp.iterdir()):
                fsync_file(path)
            fsync_dir(tmp)
            if not out_dir.exists():
                os.replace(tmp, out_dir)
            elif not exchange_names(tmp, out_dir):
                old = out_dir.parent / f".{out_dir.name}.{os.getpid()}.old"
                os.replace(out_dir, old)
                os.replace(tmp, out_dir)
                os.replace(old, tmp)
            fsync_dir(out_dir.parent)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        if self.tmp.is_dir() and not self.tmp.is_symlink():
            shutil.rmtree(self.tmp, ignore_errors=True)


def discard_spare_folder(out_dir: str | os.PathLike[str]) -> None:
    """Remove the spare :func:`stage_export` keeps beside ``out_dir`` (when the run is over)."""
    spare = spare_folder_of(Path(out_dir))
    if spare.is_dir() and not spare.is_symlink():
        shutil.rmtree(spare, ignore_errors=True)


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
