"""backbone.weights=PATH: timm / torchvision state dicts and solo-learn checkpoints."""

import pytest
import timm
import torch

from solo_rgbd.errors import ConfigError
from solo_rgbd.nn.backbone import Encoder


def _ref():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=10)  # with a classifier, like ImageNet


def _first_conv(model):
    return next(v for k, v in model.state_dict().items() if v.ndim == 4)


def test_a_solo_learn_checkpoint_starts_the_rgb_encoder(tmp_path):
    ref = _ref()
    ckpt = {  # what solo-learn's Lightning checkpoints hold
        "state_dict": {
            **{f"backbone.{k}": v for k, v in ref.state_dict().items() if not k.startswith("fc")},
            **{f"momentum_backbone.{k}": v * 0 for k, v in ref.state_dict().items()},
            "projector.0.weight": torch.zeros(4, 4),
        },
        "epoch": 399,
    }
    torch.save(ckpt, tmp_path / "solo_learn.ckpt")
    rgb = Encoder("test_resnet", 3, weights=str(tmp_path / "solo_learn.ckpt"))
    assert torch.equal(_first_conv(rgb.model), _first_conv(ref))
    depth = Encoder("test_resnet", 1, weights=str(tmp_path / "solo_learn.ckpt"))
    assert _first_conv(depth.model).shape[1] == 1  # the stem adapted to in_chans=1


def test_torchvision_style_and_ddp_prefixed_state_dicts_load(tmp_path):
    ref = _ref()
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, tmp_path / "ddp.pth")
    enc = Encoder("test_resnet", 3, weights=str(tmp_path / "ddp.pth"))
    assert torch.equal(_first_conv(enc.model), _first_conv(ref))


def test_weights_of_another_architecture_fail_naming_the_format(tmp_path):
    other = timm.create_model("resnet18", num_classes=0)
    torch.save(
        {"state_dict": {f"backbone.{k}": v for k, v in other.state_dict().items()}},
        tmp_path / "r18.ckpt",
    )
    with pytest.raises(
        ConfigError,
        match=r"solo-learn checkpoint \(backbone\.\*\).*test_resnet|"
        r"solo-learn checkpoint \(backbone\.\*\).*ResNet",
    ):
        Encoder("test_resnet", 3, weights=str(tmp_path / "r18.ckpt"))
