"""Where the SOD network's encoders come from (``encoders=`` in ``configs/sod.yaml``).

- ``random``: timm's random initialisation of ``backbone.name``;
- ``imagenet``: ImageNet weights, from a local file (``backbone.weights=FILE``) or timm's hub
  (``backbone.pretrained=true``, needs internet and fails with a clear message offline);
- a path: a pretraining run folder, its ``encoders/`` folder (``encoders.json`` + state dicts),
  or a Lightning checkpoint of any registered method.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

from solo_rgbd.errors import ConfigError
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


def _from_manifest(folder: Path) -> tuple[Encoder, Encoder | None]:
    manifest = json.loads((folder / "encoders.json").read_text())
    entries = manifest.get("encoders", {})
    names = ["rgbd"] if set(entries) == {"rgbd"} else ["rgb", "depth"]
    if not set(names) <= set(entries):
        raise ConfigError(
            f"'{folder / 'encoders.json'}' lists encoders {sorted(entries)}; the SOD network "
            "needs 'rgb' and 'depth' (two streams) or 'rgbd' (early fusion)."
        )
    out: list[Encoder | None] = []
    for name in names:
        entry = entries[name]
        encoder = Encoder(entry["backbone"], CHANNELS[name])
        state = torch.load(folder / entry["file"], map_location="cpu", weights_only=True)
        _load_state(encoder, state, str(folder / entry["file"]), name)
        out.append(encoder)
    return out[0], (out[1] if len(out) > 1 else None)


def _from_checkpoint(path: Path) -> tuple[Encoder, Encoder | None]:
    from solo_rgbd.methods.registry import METHODS

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = (ckpt.get("hyper_parameters") or {}).get("cfg")
    if not cfg or "method" not in cfg:
        raise ConfigError(
            f"'{path}' is not a solo-rgbd pretraining checkpoint (no method config in its "
            "hyper-parameters); pass a run folder, an encoders/ folder, or random/imagenet."
        )
    model = METHODS[cfg["method"]](cfg)
    model.load_state_dict(ckpt["state_dict"])
    encoders = model.export_encoders()
    if "rgbd" in encoders:
        return encoders["rgbd"], None
    return encoders["rgb"], encoders["depth"]


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
    if path.is_dir() and (path / "encoders" / "encoders.json").exists():
        path = path / "encoders"
    if path.is_dir() and (path / "encoders.json").exists():
        return _from_manifest(path)
    if path.is_file():
        return _from_checkpoint(path)
    raise ConfigError(
        f"encoders='{spec}' is neither random, imagenet, a pretraining run folder, an "
        "encoders/ folder with encoders.json, nor a checkpoint file. Fix the path."
    )
