"""The per-stream template covers common SSL methods: SimSiam (a predictor with a static lr)
and a DINO-style method (two global + k local crops) are small plug-ins outside the package
(``simsiam_plugin.py``, ``dino_plugin.py``); both train on CPU through ``run_pretrain``, and
export encoders that timm loads."""

import csv
import math

import pytest
import timm
import torch
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file

from solo_rgbd.augment.paired import PairedAugment
from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.methods import registry
from tests.conftest import tiny_overrides
from tests.plugins.dino_plugin import DINOLike
from tests.plugins.simsiam_plugin import SimSiam

SMALL = {"trainer.max_epochs": "2", "optimizer.warmup_epochs": "0"}


def _cfg(tmp_path, cls, kwargs: dict):
    cfg = compose("pretrain", ["method=simclr", *tiny_overrides(tmp_path, **SMALL)])
    with open_dict(cfg):
        cfg.method = cls.method_name
        cfg.method_kwargs = kwargs
    return cfg


def _train(tmp_path, monkeypatch, cls, kwargs: dict):
    monkeypatch.setitem(registry._REGISTRY, cls.method_name, cls)
    run = run_pretrain(_cfg(tmp_path, cls, kwargs))
    with open(run / "logs" / "metrics.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)  # 2 epochs x 4 steps
    for name, chans in (("rgb", 3), ("depth", 1)):  # timm-loadable exports
        model = timm.create_model("test_resnet", in_chans=chans, num_classes=0)
        model.load_state_dict(load_file(run / "encoders" / f"{name}.safetensors"))
    return run


def test_simsiam_plugin_keeps_its_predictor_lr_while_the_rest_follows_the_schedule(
    tmp_path, monkeypatch
):
    kwargs = {"proj_hidden_dim": 32, "proj_output_dim": 32, "pred_hidden_dim": 8}
    run = _train(tmp_path, monkeypatch, SimSiam, kwargs)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    static = [g for g in groups if g.get("static_lr")]
    scheduled = [g for g in groups if not g.get("static_lr")]
    base = float(OmegaConf.load(run / "config.yaml").optimizer.lr or 0.0) or static[0]["lr"]
    # one predictor group per stream (split in two when biases and norms skip weight decay)
    assert len(static) in (2, 4) and len(scheduled) == len(static)
    assert all(g["lr"] == pytest.approx(base) for g in static)
    assert all(g["lr"] < 0.5 * base for g in scheduled)  # cosine, at the last step
    assert {"predictors.rgb.layers.0.weight", "predictors.depth.layers.0.weight"} <= set(
        ckpt["state_dict"]
    )


def test_dino_like_plugin_trains_on_two_global_and_four_local_crops(tmp_path, monkeypatch):
    kwargs = {
        "proj_hidden_dim": 32,
        "proj_output_dim": 64,
        "bottleneck_dim": 16,
        "local_crops": 4,
        "local_size": 16,
    }
    seen: list[list[int]] = []
    forward = PairedAugment.forward

    def spy(self, rgb, depth):
        views = forward(self, rgb, depth)
        seen.append([v[0].shape[-1] for v in views])
        return views

    monkeypatch.setattr(PairedAugment, "forward", spy)
    run = _train(tmp_path, monkeypatch, DINOLike, kwargs)
    assert seen and all(sizes == [32, 32, 16, 16, 16, 16] for sizes in seen)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    center = state["criterion.rgb.center"]  # the loss's centre is resumable state
    assert center.shape[-1] == 64 and center.abs().sum() > 0
