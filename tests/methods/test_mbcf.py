import csv
import json
import math

import lightning.pytorch as pl
import pytest
import timm
import torch

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods import METHODS
from tests.conftest import tiny_overrides


def _rows(run_dir):
    with open(run_dir / "logs" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class Recorder(pl.Callback):
    def on_train_start(self, trainer, m):
        self.start = {
            "fusion": _params(m.fusion),
            "fusion_k": _params(m.fusion_k),
            "rgb": _params(m.encoders["rgb"]),
            "q_fused": m.queue_fused.keys.clone(),
            "q_rgb": m.queues["rgb"].keys.clone(),
        }
        self.epochs = []

    def on_train_epoch_end(self, trainer, m):
        self.epochs.append(
            {
                "stage": m.stage,
                "fusion_untouched": _same(self.start["fusion"], _params(m.fusion)),
                "fusion_k_untouched": _same(self.start["fusion_k"], _params(m.fusion_k)),
                "rgb_untouched": _same(self.start["rgb"], _params(m.encoders["rgb"])),
                "q_fused_untouched": torch.equal(self.start["q_fused"], m.queue_fused.keys),
                "q_rgb_untouched": torch.equal(self.start["q_rgb"], m.queues["rgb"].keys),
            }
        )


def test_two_stage_trains_fusion_only_after_the_switch(tmp_path):
    cfg = compose(
        "pretrain",
        tiny_overrides(
            tmp_path,
            **{
                "method_kwargs.stage1_epochs": "1",
                "method_kwargs.stage2_epochs": "1",
                "method_kwargs.queue_size": "16",
                "trainer.limit_train_batches": "3",
                "method_kwargs.stage1_lr": "0.03",  # the paper's stage lrs
                "method_kwargs.stage2_lr": "0.05",
            },
        ),
    )
    rec = Recorder()
    run_dir = run_pretrain(cfg, extra_callbacks=[rec])
    first, second = rec.epochs
    assert first["stage"] == 1 and second["stage"] == 2
    assert first["fusion_untouched"] and first["fusion_k_untouched"]
    assert first["q_fused_untouched"]
    assert not first["rgb_untouched"] and not first["q_rgb_untouched"]
    assert not second["fusion_untouched"] and not second["q_fused_untouched"]
    rows = _rows(run_dir)
    stage1 = [r for r in rows if r.get("stage") == "1.0"]
    stage2 = [r for r in rows if r.get("stage") == "2.0"]
    assert stage1 and stage2
    assert all(not r["loss_inter"] for r in stage1)  # L_inter not computed before the switch
    assert all(math.isfinite(float(r["loss_inter"])) for r in stage2)
    # diagnostics: exactly half the RGB channels masked, gradients reach both encoders
    assert all(float(r["rgb_masked_share"]) == 0.5 for r in stage2)
    assert all(0 < float(r["attention_entropy_rgb"]) <= 1 for r in stage2)
    grads = [r for r in rows if r.get("grad_norm_depth_encoder")]
    assert grads and all(float(r["grad_norm_depth_encoder"]) > 0 for r in grads)
    assert all(float(r["grad_norm_inter"]) == 0 for r in grads if r["epoch"] == "0")
    # stage lrs: 0.03 at the start of stage 1, 0.05 at the start of stage 2
    assert float(stage1[0]["lr"]) == pytest.approx(0.03)
    assert float(stage2[0]["lr"]) == pytest.approx(0.05)


def test_one_stage_trains_both_from_the_start(tmp_path):
    cfg = compose(
        "pretrain",
        tiny_overrides(
            tmp_path,
            **{
                "method_kwargs.schedule": "one_stage",
                "method_kwargs.one_stage_epochs": "1",
                "method_kwargs.queue_size": "16",
                "trainer.limit_train_batches": "2",
            },
        ),
    )
    rec = Recorder()
    run_pretrain(cfg, extra_callbacks=[rec])
    assert rec.epochs[0]["stage"] == 2 and not rec.epochs[0]["fusion_untouched"]


def test_resume_restores_queues_pointer_and_stage(tmp_path):
    over = tiny_overrides(
        tmp_path,
        **{
            "method_kwargs.stage1_epochs": "1",
            "method_kwargs.stage2_epochs": "1",
            "method_kwargs.queue_size": "20",
            "trainer.limit_train_batches": "3",
            "run_name": "r",
        },
    )
    run_dir = run_pretrain(compose("pretrain", over + ["trainer.max_epochs=1"]))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["state_dict"]["queues.rgb.ptr"].item() == (3 * 8) % 20
    model = METHODS["mbcf"].load_from_checkpoint(ckpt)
    assert torch.equal(model.queues["rgb"].keys, state["state_dict"]["queues.rgb.keys"])
    assert model.queues["rgb"].ptr.item() == 4

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, m):
            self.ptr, self.keys = m.queues["rgb"].ptr.item(), m.queues["rgb"].keys.clone()
            self.epoch, self.stage = trainer.current_epoch, m.stage

    probe = AtStart()
    resumed = run_pretrain(compose("pretrain", over + [f"resume={ckpt}"]), [probe])
    assert resumed == run_dir
    assert probe.ptr == 4 and torch.equal(probe.keys, state["state_dict"]["queues.rgb.keys"])
    assert probe.epoch == 1 and probe.stage == 2


def test_invalid_method_kwargs_name_the_key(tmp_path):
    for override, key in [
        ("method_kwargs.fusion.mask_ratio=1.5", "method_kwargs.fusion.mask_ratio"),
        ("method_kwargs.schedule=three_stage", "method_kwargs.schedule"),
    ]:
        cfg = compose("pretrain", tiny_overrides(tmp_path) + [override])
        with pytest.raises(ConfigError, match=key):
            run_pretrain(cfg)
    assert not (tmp_path / "outputs").exists()  # nothing written for a bad config


@pytest.mark.slow
def test_quick_preset_cli_run_learns_and_writes_its_files(tmp_path, capsys):
    """`solo-rgbd pretrain method=mbcf` at the quick scale, for a few dozen steps."""
    from solo_rgbd.cli import main

    rc = main(
        [
            "pretrain",
            "method=mbcf",
            f"output_dir={tmp_path}",
            "run_name=quick",
            "data.synthetic.n=192",
            "method_kwargs.queue_size=64",
            "log_every_n_steps=1",
            "trainer.enable_progress_bar=false",
        ]
    )
    assert rc == 0
    run_dir = tmp_path / "mbcf" / "quick"
    rows = [r for r in _rows(run_dir) if r.get("loss")]
    assert len(rows) == 36  # 6 steps x (3 + 3) epochs, every step logged
    losses = [float(r["loss"]) for r in rows]
    assert all(math.isfinite(v) for v in losses)
    intra = [float(r["loss_intra"]) for r in rows if r["stage"] == "1.0"]
    # after the 64-key queue is full (2 steps), the per-modality InfoNCE falls
    assert sum(intra[-4:]) / 4 < sum(intra[2:6]) / 4
    inter = [float(r["loss_inter"]) for r in rows if r["stage"] == "2.0"]
    assert sum(inter[-4:]) / 4 < sum(inter[2:6]) / 4
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    manifest = json.loads((run_dir / "encoders" / "encoders.json").read_text())
    for name, in_chans in (("rgb", 3), ("depth", 1)):
        entry = manifest["encoders"][name]
        assert entry["in_chans"] == in_chans and entry["backbone"] == "resnet10t"
        plain = timm.create_model("resnet10t", in_chans=in_chans, num_classes=0)
        plain.load_state_dict(torch.load(run_dir / "encoders" / entry["file"]))  # strict
    assert "run folder:" in capsys.readouterr().out


def test_max_epochs_only_cuts_a_staged_run_short(tmp_path):
    from solo_rgbd.methods import METHODS

    over = tiny_overrides(
        tmp_path, **{"method_kwargs.stage1_epochs": "2", "method_kwargs.stage2_epochs": "1"}
    )
    with pytest.raises(ConfigError, match="longer than.*stage1_epochs=2 \\+ stage2_epochs=1"):
        METHODS["mbcf"](compose("pretrain", over + ["trainer.max_epochs=4"])).planned_epochs()
    model = METHODS["mbcf"](compose("pretrain", over + ["trainer.max_epochs=2"]))
    with pytest.warns(UserWarning, match="stage 2 \\(InterCLM\\) is never reached"):
        assert model.planned_epochs() == 2
    assert model.schedule_epochs() == 3  # lr and momentum still span both stages


@pytest.mark.parametrize("mode", ["random", "static_random", "bottomk", "none"])
def test_every_mask_mode_resumes_bit_exactly_and_exports_timm_loadable_encoders(tmp_path, mode):
    """Issue 31: the controls are resumable (the random draws come from the checkpointed RNG,
    the static half is a buffer) and export encoders that load into timm."""
    import safetensors.torch
    import timm

    def run(name: str, *extra: str):
        over = tiny_overrides(
            tmp_path,
            **{
                "method_kwargs.stage1_epochs": "1",
                "method_kwargs.stage2_epochs": "2",
                "method_kwargs.queue_size": "16",
                "method_kwargs.fusion.mask_mode": mode,
                "trainer.limit_train_batches": "2",
                "trainer.deterministic": "true",
                "run_name": name,
            },
        )
        return run_pretrain(compose("pretrain", [*over, *extra]))

    whole = run("whole")
    run("cut", "trainer.max_epochs=2")
    cut = run("cut", "resume=last")
    for name in ("rgb", "depth"):
        a = (whole / "encoders" / f"{name}.safetensors").read_bytes()
        assert a == (cut / "encoders" / f"{name}.safetensors").read_bytes(), name
    final = {k: torch.load(r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
             for k, r in (("whole", whole), ("cut", cut))}  # fmt: skip
    for key, value in final["whole"].items():
        assert torch.equal(value, final["cut"][key]), key
    if mode == "static_random":
        assert "fusion.static_keep" in final["whole"]
    state = safetensors.torch.load_file(whole / "encoders" / "rgb.safetensors")
    backbone = compose("pretrain", tiny_overrides(tmp_path)).backbone.name
    timm.create_model(backbone, in_chans=3, num_classes=0).load_state_dict(state)
