import csv
import math

import pytest
import torch

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.data.decode import RootSpec
from solo_rgbd.data.sources import index_loader
from solo_rgbd.errors import ConfigError
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.tasks.sod.probes import FrozenDecoderProbe, OnlineSODProbe
from tests.conftest import tiny_overrides
from tests.data.stores import store_of as build_cache


def _encoders():
    torch.manual_seed(0)
    return {"rgb": Encoder("test_resnet", 3), "depth": Encoder("test_resnet", 1)}


def test_online_probe_learns_without_touching_the_encoders(synth_root):
    cache = build_cache([RootSpec(str(synth_root))], size=40)
    encoders = _encoders()
    for e in encoders.values():
        e.train()  # as during pretraining: BatchNorm in training mode
    before = {k: {n: t.clone() for n, t in e.state_dict().items()} for k, e in encoders.items()}
    probe = OnlineSODProbe(size=32, lr=3e-3, dim=16)
    loader = index_loader(cache, 8, True, True)
    losses = []
    for _ in range(6):
        for batch in loader:
            losses.append(float(probe.step(encoders, batch)))
    for k, e in encoders.items():
        assert e.training  # mode restored
        for n, t in e.state_dict().items():
            assert torch.equal(t, before[k][n]), f"{k}.{n} changed"  # weights and BN stats
        assert all(p.grad is None for p in e.parameters())
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    scores = probe.evaluate(encoders, index_loader(cache, 16, False, False), "cpu")
    assert 0 <= scores["MAE"] <= 1 and 0 <= scores["maxF"] <= 1


def test_pretraining_with_both_probes_logs_their_scores(tmp_path):
    cfg = compose(
        "pretrain",
        tiny_overrides(
            tmp_path,
            **{
                "method_kwargs.stage1_epochs": "1",
                "method_kwargs.stage2_epochs": "1",
                "method_kwargs.queue_size": "16",
                "data.val_fraction": "0.25",
                "probes.online.enabled": "true",
                "probes.frozen.enabled": "true",
                "probes.frozen.every_n_epochs": "1",
                "probes.frozen.steps": "4",
                "probes.frozen.batch_size": "8",
            },
        ),
    )
    run_dir = run_pretrain(cfg)
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for key in ("probe/maxF", "probe/MAE", "frozen_probe/maxF", "frozen_probe/MAE"):
        values = [float(r[key]) for r in rows if r.get(key)]
        assert len(values) == 2, key  # once per epoch
        assert all(0 <= v <= 1 and math.isfinite(v) for v in values)


def test_probes_without_labels_fail_with_the_fix(tmp_path):
    cfg = compose(
        "pretrain",
        tiny_overrides(tmp_path, **{"probes.online.enabled": "true", "trainer.max_epochs": "1"}),
    )
    with pytest.raises(ConfigError, match="data.val_fraction > 0"):
        run_pretrain(cfg)


def test_frozen_probe_beats_nothing_on_a_fixed_budget(synth_root):
    cache = build_cache([RootSpec(str(synth_root))], size=40)
    probe = FrozenDecoderProbe(size=32, steps=30, lr=3e-3, batch_size=8, dim=16)
    scores = probe.run(_encoders(), cache.subset(range(24)), cache.subset(range(24, 32)), "cpu")
    gt_share = cache.gt[24:].float().mean().item() / 255
    assert scores["MAE"] < 0.5 and scores["maxF"] > 0.3 and 0 < gt_share < 0.5
