"""timm backbones for one modality: RGB (``in_chans=3``) or depth (``in_chans=1``).

An :class:`Encoder` wraps a plain ``timm.create_model(name, in_chans=..., num_classes=0)``, so
its ``state_dict`` loads straight back into that model (see :func:`export_state_dict`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.safe_load import load_user_checkpoint


def _import_timm():
    """timm, imported without W&B: timm's utils try ``import wandb``, which (installed) writes
    debug logs and temporary folders in every run. A run that asks for W&B imports it itself."""
    absent = "wandb" not in sys.modules
    if absent:
        sys.modules["wandb"] = None  # type: ignore[assignment]  # ``import wandb`` fails here
    try:
        import timm
    finally:
        if absent and sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]
    return timm


timm = _import_timm()


def create_backbone(
    name: str,
    in_chans: int,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """A timm model without classifier. ``weights`` is a local state-dict file (ImageNet...)."""
    try:
        model = timm.create_model(name, pretrained=pretrained, in_chans=in_chans, num_classes=0)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            close = timm.list_models(f"*{name[:6]}*")[:8]
            raise ConfigError(
                f"backbone.name '{name}' is not a timm model. Close names: "
                f"{', '.join(close) or '(none)'}; see timm.list_models()."
            ) from None
        raise
    except Exception as exc:
        if pretrained:
            raise ConfigError(
                f"backbone.pretrained=true could not fetch '{name}' weights from timm's hub "
                f"({type(exc).__name__}: {exc}). Offline, download the weights elsewhere and "
                "pass the file with backbone.weights=/path/to/file.pth backbone.pretrained=false."
            ) from None
        raise
    if weights:
        load_local_weights(model, weights, in_chans)
    return model


def weights_state_dict(obj: object, path: Path) -> tuple[dict, str]:
    """The backbone weights inside a file's content, and the format they were found in.

    - a timm / torchvision state dict (classifier keys are dropped later);
    - ``{"state_dict": ...}`` or ``{"model": ...}`` wrappers, ``module.`` prefixes (DDP);
    - a solo-learn (or any Lightning) checkpoint whose backbone sits under ``backbone.*``
      (``momentum_backbone.*``, projector and classifier keys are ignored).
    """
    state = obj
    fmt = "state dict"
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state, fmt = state[wrapper], f"'{wrapper}' wrapper"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"backbone.weights '{path}' holds no state dict of tensors; pass a timm or "
            "torchvision state dict, or a solo-learn checkpoint."
        )
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        fmt = "solo-learn checkpoint (backbone.*)"
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state), fmt


def load_local_weights(model: nn.Module, path: str | os.PathLike[str], in_chans: int) -> None:
    """Load backbone weights from disk (see :func:`weights_state_dict` for the formats).

    A stem conv of another channel count is adapted to ``in_chans`` (3-channel ImageNet
    weights for the 1-channel depth encoder); any other mismatch is an error naming the keys.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"backbone.weights file '{path}' does not exist; fix the path.")
    state, fmt = weights_state_dict(load_user_checkpoint(path, "backbone.weights file"), path)
    own = model.state_dict()
    for key, value in list(state.items()):
        target = own.get(key)
        stem_mismatch = (
            target is not None
            and value.ndim == 4
            and target.ndim == 4
            and value.shape[1] != target.shape[1]
            and target.shape[1] == in_chans
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        )
        if stem_mismatch:  # the stem conv of 3-channel weights, for a 1-channel (depth) model
            state[key] = timm.models.adapt_input_conv(in_chans, value)
    resized = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    state = {k: v for k, v in state.items() if k in own}  # drop the classifier
    missing = [k for k in own if k not in state]
    if missing or resized:
        raise ConfigError(
            f"backbone.weights '{path}' ({fmt}) does not fit backbone "
            f"'{type(model).__name__}' with in_chans={in_chans}: {len(missing)} missing keys "
            f"(e.g. {', '.join(missing[:4]) or '-'}), {len(resized)} of another shape (e.g. "
            f"{', '.join(resized[:4]) or '-'}). Use weights made for the same timm architecture."
        )
    model.load_state_dict(state)


class Encoder(nn.Module):
    """A timm backbone with the views solo-rgbd needs.

    - ``forward(x)``: the last-stage feature map (B, C, h, w);
    - ``pool(fmap)``: global average pooling (B, C);
    - ``stages(x)``: the feature maps of the last four stages, shallow to deep.
    """

    def __init__(
        self, name: str, in_chans: int, pretrained: bool = False, weights: str | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.in_chans = in_chans
        self.model = create_backbone(name, in_chans, pretrained, weights)
        self.num_features: int = self.model.num_features
        info = getattr(self.model, "feature_info", None)
        self.stage_channels: list[int] = [f["num_chs"] for f in info][-4:] if info else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = len(self.model.feature_info)
        return self.model.forward_intermediates(
            x, indices=list(range(n - 4, n)), intermediates_only=True
        )


def export_state_dict(encoder: Encoder) -> dict[str, torch.Tensor]:
    """A state dict that loads into ``timm.create_model(name, in_chans=..., num_classes=0)``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in encoder.model.state_dict().items()}
