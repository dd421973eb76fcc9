"""The two-level method template: at most two template classes below LightningModule for every
method, what each level builds, and checkpoints of former templates (``heads.<s>.projector``
keys) still load."""

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


def test_every_method_is_itself_plus_at_most_two_template_levels():
    """MBCF -> MomentumMethod -> BaseMethod -> LightningModule: at most three classes of
    solo_rgbd in any registered method's MRO (the plug-ins' too)."""
    from tests.plugins.dino_plugin import DINOLike
    from tests.plugins.simsiam_plugin import SimSiam

    for cls in [*(METHODS[name] for name in METHODS), DINOLike, SimSiam]:
        own = [c for c in cls.__mro__ if c.__module__.startswith("solo_rgbd")]
        assert len(own) <= 3, (cls.__name__, [c.__name__ for c in own])
        assert own[-1].__name__ == "BaseMethod"


def test_each_level_builds_its_parts_and_per_stream_data_is_dicts(tmp_path):
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
    assert list(simclr.encoders) == ["rgbd"] and not hasattr(simclr, "momentum_pairs")
    assert not hasattr(simclr, "encoders_k") and len(simclr.predictors) == 0
    x = {"rgbd": torch.randn(4, 4, 32, 32)}
    assert simclr.project("rgbd", x["rgbd"]).shape == (4, 128)
    mbcf = _model(tmp_path, "mbcf", **{"method_kwargs.queue_size": "16"})
    assert list(mbcf.queues) == ["rgb", "depth"]
    assert [g.name for g in mbcf.learnable_params] == ["rgb", "depth", "inter"]
    roles = mbcf.state_roles()
    assert roles["queues"] == ["queue_fused", "queues.depth", "queues.rgb"]
    assert "fusion_k" in roles["momentum"] and "projectors_k.rgb" in roles["momentum"]
    # the fusion encoder's copy moves only in stage 2 (it is untouched before)
    online = [o for o, _ in mbcf.momentum_pairs]
    assert mbcf.stage == 1 and mbcf.fusion not in online and len(online) == 4
    views = {"rgb": torch.randn(4, 3, 32, 32), "depth": torch.randn(4, 1, 32, 32)}
    fmaps, keys = mbcf.momentum_forward(views)
    assert set(fmaps) == set(keys) == {"rgb", "depth"} and keys["rgb"].shape == (4, 128)


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


def test_the_equation_table_of_docs_methods_points_at_the_equations_in_mbcf():
    """Each ``| Eq. N | ... | a-b |`` row of docs/methods.md starts at MBCF's ``# Eq. N`` line;
    the stage switch and the queue updates at theirs."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    lines = (root / "solo_rgbd" / "methods" / "mbcf.py").read_text().splitlines()
    table = (root / "docs" / "methods.md").read_text().split("## The paper's equations")[1]
    marks = {"stage switch": "self.stage == 2", "queue updates": "after the loss"}
    rows = re.findall(r"^\| ([^|]+?) \| [^|]+ \| (\d[\d, -]*) \|$", table, flags=re.M)
    assert len(rows) == 9
    for label, ranges in rows:
        first = int(re.match(r"\d+", ranges).group())
        mark = marks.get(label, f"# {label}")
        assert mark in lines[first - 1], (label, first, lines[first - 1])
    assert len(lines) <= 300  # the whole objective on one screen or two
