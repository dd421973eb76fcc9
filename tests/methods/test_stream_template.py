"""The one per-stream template: what its flags build, and checkpoints of the two former
templates (``heads.<s>.projector`` keys) still load."""

import torch

from solo_rgbd.config import compose
from solo_rgbd.methods import METHODS
from tests.conftest import tiny_overrides


def _model(tmp_path, method: str, **extra: str):
    cfg = compose(
        "pretrain",
        [
            f"method={method}",
            *tiny_overrides(tmp_path, **{"method_kwargs.proj_hidden_dim": "16", **extra}),
        ],
    )
    torch.manual_seed(0)
    return METHODS[method](cfg)


def test_the_flags_decide_the_momentum_copies_queues_and_predictors(tmp_path):
    byol = _model(tmp_path, "byol")
    assert set(byol.projectors_k) == set(byol.predictors) == {"rgb", "depth"}
    assert not hasattr(byol, "queues")
    assert [g.name for g in byol.learnable_params] == [
        "rgb",
        "depth",
        "rgb_predictor",
        "depth_predictor",
    ]
    simclr = _model(tmp_path, "simclr", **{"method_kwargs.rgbd_mode": "early_fusion"})
    assert list(simclr.encoders) == ["rgbd"] and simclr.momentum_pairs == []
    assert not hasattr(simclr, "encoders_k") and len(simclr.predictors) == 0
    mbcf = _model(tmp_path, "mbcf", **{"method_kwargs.queue_size": "16"})
    assert list(mbcf.queues) == ["rgb", "depth"]
    assert [g.name for g in mbcf.learnable_params] == ["rgb", "depth", "inter"]
    roles = mbcf.state_roles()
    assert roles["queues"] == ["queue_fused", "queues.depth", "queues.rgb"]
    assert "fusion_k" in roles["momentum"] and "projectors_k.rgb" in roles["momentum"]


def _legacy(state: dict) -> dict:
    """The keys the former StreamMethod wrote."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in ("projectors", "predictors"):
            parts = ["heads", parts[1], parts[0][:-1], *parts[2:]]
        elif parts[0] == "projectors_k":
            parts[0] = "heads_k"
        out[".".join(parts)] = value
    return out


def test_a_checkpoint_with_the_former_head_keys_loads_strictly_and_bit_exactly(tmp_path):
    source = _model(tmp_path, "byol")
    for p in source.parameters():  # not the init the target starts from
        p.data.add_(0.5)
    legacy = _legacy(source.state_dict())
    assert any(k.startswith("heads.rgb.predictor.") for k in legacy)
    assert any(k.startswith("heads_k.depth.") for k in legacy)
    target = _model(tmp_path, "byol")
    target.load_state_dict(legacy, strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
