"""Where the SOD network's encoders come from (``encoders=`` in ``configs/sod.yaml``).

- ``random``: timm's random initialisation of ``backbone.name``;
- ``imagenet``: ImageNet weights, from a local file (``backbone.weights=FILE``) or timm's hub
  (``backbone.pretrained=true``, needs internet and fails with a clear message offline);
- a path: a pretraining run folder, its ``encoders/`` folder (``encoders.json`` + state dicts),
  or a Lightning checkpoint of any registered method.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from solo_rgbd.engine.checkpoint import load_user_checkpoint
from solo_rgbd.engine.export import MANIFEST, resolve_export_dir, verify_export
from solo_rgbd.errors import CheckpointError, ConfigError
from solo_rgbd.nn.backbone import Encoder


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


CHANNELS = {"rgb": 3, "depth": 1, "rgbd": 4}


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
    names = ["rgbd"] if set(entries) == {"rgbd"} else ["rgb", "depth"]
    if not set(names) <= set(entries):
        raise ConfigError(
            f"'{source}' lists encoders {sorted(entries)}; the SOD network needs 'rgb' and "
            "'depth' (two streams) or 'rgbd' (early fusion)."
        )
    return names


def _from_manifest(folder: Path) -> tuple[Encoder, Encoder | None]:
    manifest = verify_export(folder)  # every file's sha256 is checked
    entries = manifest.get("encoders", {})
    out: list[Encoder] = []
    for name in _pick(entries, str(folder / MANIFEST)):
        path = folder / entries[name]["file"]
        state = load_user_checkpoint(path, f"{name} encoder file")
        out.append(_build(name, entries[name]["backbone"], state, str(path)))
    return out[0], (out[1] if len(out) > 1 else None)


def _from_checkpoint(path: Path) -> tuple[Encoder, Encoder | None]:
    """The encoders out of a method checkpoint's state_dict, without building the method."""
    ckpt = load_user_checkpoint(path, "encoders checkpoint")
    entries = ckpt.get("encoders")
    if not isinstance(entries, dict) or "state_dict" not in ckpt:
        raise ConfigError(
            f"'{path}' is not a solo-rgbd pretraining checkpoint (it lists no encoders); pass "
            "a run folder, an encoders/ folder, a pretraining .ckpt, or random/imagenet."
        )
    out: list[Encoder] = []
    for name in _pick(entries, str(path)):
        prefix = entries[name]["prefix"]
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        out.append(_build(name, entries[name]["backbone"], state, f"{path} ({prefix}*)"))
    return out[0], (out[1] if len(out) > 1 else None)


def load_encoders(spec: str, backbone: DictConfig) -> tuple[Encoder, Encoder | None]:
    """The (rgb, depth) encoders named by ``spec`` (depth None: one early-fusion encoder)."""
    if spec == "random":
        return Encoder(str(backbone.name), 3), Encoder(str(backbone.name), 1)
    if spec == "imagenet":
        if not backbone.get("weights") and not backbone.get("pretrained"):
            raise ConfigError(
                "encoders=imagenet needs backbone.weights=/path/to/imagenet_weights.pth (a "
                "timm or torchvision state dict) or backbone.pretrained=true (downloads "
                "through timm's hub, needs internet)."
            )
        args = (bool(backbone.get("pretrained")), backbone.get("weights"))
        return Encoder(str(backbone.name), 3, *args), Encoder(str(backbone.name), 1, *args)
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "encoders").is_dir():
        path = resolve_export_dir(path / "encoders")
    if path.is_dir() and (path / MANIFEST).exists():
        return _from_manifest(path)
    if path.is_file():
        return _from_checkpoint(path)
    raise ConfigError(
        f"encoders='{spec}' is neither random, imagenet, a pretraining run folder, an "
        "encoders/ folder with encoders.json, nor a checkpoint file. Fix the path."
    )
