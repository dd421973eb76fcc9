"""timm backbones for one modality: RGB (``in_chans=3``) or depth (``in_chans=1``).

An :class:`Encoder` wraps a plain ``timm.create_model(name, in_chans=..., num_classes=0)``, so
its ``state_dict`` loads straight back into that model (see :func:`export_state_dict`).
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from torch import nn

from solo_rgbd.errors import ConfigError


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


def load_local_weights(model: nn.Module, path: str | os.PathLike[str], in_chans: int) -> None:
    """Load an ImageNet-style state dict from disk; adapt the stem conv to ``in_chans``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"backbone.weights file '{path}' does not exist; fix the path.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
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
    state = {k: v for k, v in state.items() if k in own}  # drop the classifier
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise ConfigError(
            f"backbone.weights '{path}' does not fit backbone '{type(model).__name__}': "
            f"{len(missing)} missing keys (e.g. {', '.join(missing[:5])}). Use weights made "
            "for the same timm architecture."
        )


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
    return {k: v.detach().cpu().clone() for k, v in encoder.model.state_dict().items()}
