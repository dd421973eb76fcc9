import csv
import dataclasses
import json
import math

import pytest
import torch

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods import METHODS, registered_methods
from solo_rgbd.nn.encoder_io import load_encoders
from solo_rgbd.nn.streams import Streams, network_pair
from solo_rgbd.tasks.sod.model import SODNet
from tests.conftest import tiny_overrides

STREAM_METHODS = ["mocov2plus", "simclr", "byol", "barlow_twins", "vicreg"]
SMALL = {
    "method_kwargs.proj_hidden_dim": "32",
    "trainer.limit_train_batches": "2",
    "trainer.max_epochs": "1",
}


def _cases():
    cases = [(m, "two_stream") for m in registered_methods()]
    cases += [(m, "early_fusion") for m in STREAM_METHODS]
    # one modality is an ordinary case of the streams (nn/streams.py)
    cases += [("simclr", "rgb_only"), ("mocov2plus", "depth_only")]
    return cases


@pytest.mark.parametrize("method, mode", _cases())
def test_every_method_trains_two_steps_and_exports_loadable_encoders(tmp_path, method, mode):
    extra = dict(SMALL)
    if method in STREAM_METHODS:
        extra["method_kwargs.rgbd_mode"] = mode
    if method in ("mbcf", "alignment"):
        extra["method_kwargs.schedule"] = "one_stage"  # both terms from step one
    if method in ("mbcf", "alignment", "mocov2plus"):
        extra["method_kwargs.queue_size"] = "32"
    cfg = compose("pretrain", [f"method={method}", *tiny_overrides(tmp_path, **extra)])
    run_dir = run_pretrain(cfg)
    with open(run_dir / "logs" / "metrics.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    backbone = compose("sod", ["backbone=tiny"]).backbone
    if mode.endswith("_only"):  # a two-input task refuses a one-modality export by default
        with pytest.raises(ConfigError, match="missing_stream=random"):
            load_encoders(str(run_dir), backbone)
    rgb, depth = network_pair(load_encoders(str(run_dir), backbone, missing_stream="random"))
    net = SODNet(rgb, depth, dim=8).eval()
    assert (depth is None) == (mode == "early_fusion")
    if depth is None:
        assert rgb.in_chans == 4
    exported = json.loads((run_dir / "encoders" / "encoders.json").read_text())["encoders"]
    assert set(exported) == set(Streams.of_mode(mode).names)  # one encoder per stream
    if mode.endswith("_only"):  # the other modality starts random for the task
        assert (rgb.in_chans, depth.in_chans) == (3, 1)
    out = net(torch.randn(1, 3, 32, 32), torch.randn(1, 1, 32, 32))
    assert out[0].shape == (1, 1, 32, 32)


def test_alignment_needs_two_streams_and_rgbd_mode_is_validated(tmp_path):
    from solo_rgbd.errors import ConfigError

    # alignment contrasts the two modalities: it has no early-fusion mode to choose
    with pytest.raises(ConfigError, match="unknown config key 'method_kwargs.rgbd_mode'"):
        compose("pretrain", ["method=alignment", "method_kwargs.rgbd_mode=early_fusion"])
    cfg = compose("pretrain", ["method=alignment", *tiny_overrides(tmp_path)])
    model = METHODS["alignment"](cfg)
    assert set(model.export_encoders()) == {"rgb", "depth"}
    assert model.export_encoders()["depth"].in_chans == 1
    cfg = compose(
        "pretrain", ["method=simclr", "method_kwargs.rgbd_mode=late", *tiny_overrides(tmp_path)]
    )
    with pytest.raises(ConfigError, match="method_kwargs.rgbd_mode"):
        METHODS["simclr"](cfg)


@pytest.mark.slow
def test_early_fusion_encoders_go_through_sod_train_and_eval(tmp_path):
    from solo_rgbd.cli import main

    extra = {**SMALL, "method_kwargs.rgbd_mode": "early_fusion"}
    run_dir = run_pretrain(
        compose("pretrain", ["method=simclr", *tiny_overrides(tmp_path, **extra)])
    )
    sod = [
        "backbone=tiny",
        "data.synthetic.n=32",
        "data.synthetic.n_test=8",
        "data.synthetic.size=40",
        "image_size=32",
        "batch_size=8",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "decoder_dim=8",
        f"output_dir={tmp_path / 's'}",
        "run_name=ef",
    ]
    assert main(["sod", "train", f"encoders={run_dir}", *sod]) == 0
    ckpt = tmp_path / "s" / "train" / "ef"
    assert (
        main(
            [
                "sod",
                "eval",
                f"ckpt={ckpt}",
                "data.synthetic.n=32",
                "data.synthetic.n_test=8",
                "data.synthetic.size=40",
            ]
        )
        == 0
    )
    assert (ckpt / "eval" / "results.json").is_file()


@pytest.mark.parametrize("aware", [True, False])
def test_queues_store_sample_ids_and_a_queue_larger_than_the_data_warns_without_them(
    tmp_path, aware
):
    import warnings

    extra = {
        "method_kwargs.queue_size": "64",  # 32 training pairs: every sample twice
        "method_kwargs.instance_aware_queue": str(aware).lower(),
        "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "2",
        "run_name": "r",
    }
    cfg = compose("pretrain", ["method=mocov2plus", *tiny_overrides(tmp_path, **extra)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = run_pretrain(cfg)
    warned = [w for w in caught if "instance_aware_queue=false" in str(w.message)]
    assert len(warned) == (0 if aware else 1)
    state = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["state_dict"]
    ids = state["queues.rgb.ids"]
    written = ids[ids >= 0]
    assert len(written) == 2 * 8 and len(set(written.tolist())) == 16  # 2 batches of 8 pairs
    assert torch.equal(ids, state["queues.depth.ids"])


def test_a_static_lr_group_keeps_its_lr_while_the_others_follow_the_schedule(tmp_path):
    from solo_rgbd.methods.base import set_scheduled_lr

    cfg = compose("pretrain", tiny_overrides(tmp_path) + ["method=simclr"])
    model = METHODS["simclr"](cfg)
    groups = model.learnable_params
    groups[-1] = dataclasses.replace(groups[-1], lr=0.5, static_lr=True)  # SimSiam's predictor
    type(model).learnable_params = property(lambda self: groups)
    try:
        opt = model.configure_optimizers()
    finally:
        del type(model).learnable_params
    base = model.base_lr
    for lr in (base, base / 4, 0.0):
        set_scheduled_lr(opt, lr)
        static = [g["lr"] for g in opt.param_groups if g.get("static_lr")]
        scheduled = [g["lr"] for g in opt.param_groups if not g.get("static_lr")]
        assert static and set(static) == {0.5} and scheduled and set(scheduled) == {lr}


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", [["method=mocov2plus"], ["method=mbcf", "method_kwargs.schedule=one_stage"]]
)
def test_one_stage_methods_run_through_the_cli_with_the_progress_bar_on(tmp_path, capsys, method):
    """Issue 29: the default path has the progress bar on; the conftest turns it off."""
    from solo_rgbd.cli import main

    over = tiny_overrides(tmp_path, **{**SMALL, "method_kwargs.queue_size": "32"})
    over = [o for o in over if not o.startswith("trainer.enable_progress_bar")]
    assert main(["pretrain", *method, *over, "run_name=bar"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Epoch 0: 100%|" in text and "Traceback" not in text
    assert (tmp_path / "outputs" / method[0].split("=")[1] / "bar" / "report.html").is_file()


def test_a_methods_self_log_per_step_fills_the_engines_row_and_nothing_else_does(tmp_path):
    """Issue 33: one logging call. ``self.log`` / ``self.log_dict`` of a training step go into
    the row MetricsWriter writes (no host read until a logging step); an epoch aggregate is
    Lightning's own."""
    cfg = compose("pretrain", tiny_overrides(tmp_path) + ["method=simclr"])
    model = METHODS["simclr"](cfg)
    loss = torch.tensor(0.5)
    model.log("loss", loss, prog_bar=True)
    model.log_dict({"acc": torch.tensor(0.25), "tau": 0.99})
    row = model.pop_log_row()
    assert list(row) == ["loss", "acc", "tau"] and row["loss"] is loss  # the tensor, not read
    assert "loss" in model.progress_keys and "acc" not in model.progress_keys
    assert model.pop_log_row() == {}
    assert not hasattr(model, "log_scalars")
