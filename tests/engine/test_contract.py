"""The declared contract between the engine and what it trains, and Lightning's ``self.log``
landing in ``metrics.csv`` for any module."""

import csv

import pytest
import torch
from omegaconf import OmegaConf

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.engine.contract import EncoderModule, RunModule
from solo_rgbd.methods import METHODS, registered_methods
from solo_rgbd.methods.mocov2plus import MoCoV2Plus
from solo_rgbd.tasks.sod.module import SODModule
from tests.conftest import tiny_overrides


@pytest.mark.parametrize("method", registered_methods())
def test_every_registered_method_satisfies_the_encoder_contract(tmp_path, method):
    cfg = compose("pretrain", [f"method={method}", *tiny_overrides(tmp_path)])
    model = METHODS[method](cfg)
    assert isinstance(model, EncoderModule) and isinstance(model, RunModule)
    assert model.run_kind == method
    assert set(model.export_encoders()) <= {"rgb", "depth", "rgbd"}
    assert set(model.state_roles()) == {"momentum", "queues"}


def test_the_sod_module_is_a_run_module_and_not_a_pretraining_method():
    cfg = compose("sod", ["backbone=tiny", "decoder_dim=8"])
    module = SODModule(cfg)
    assert isinstance(module, RunModule) and not isinstance(module, EncoderModule)
    assert module.run_kind == "sod"
    assert module.state_roles() == {"momentum": [], "queues": []}


class _LoggingMoCo(MoCoV2Plus):
    """A plug-in's habit: ``self.log`` in training_step, no project-specific logging."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("my_metric", float(self.global_step) + 0.5)
        self.log("my_epoch_metric", 2.0, on_step=False, on_epoch=True)
        return loss


def test_self_log_of_a_plugin_lands_in_metrics_csv(tmp_path, monkeypatch):
    cfg = compose(
        "pretrain",
        [
            "method=mocov2plus",
            *tiny_overrides(
                tmp_path,
                **{"trainer.max_epochs": "2", "method_kwargs.queue_size": "16"},
            ),
        ],
    )
    monkeypatch.setattr("solo_rgbd.commands.pretrain.METHODS", {"mocov2plus": _LoggingMoCo})
    run_dir = run_pretrain(cfg)
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mine = [(int(r["step"]), float(r["my_metric"])) for r in rows if r.get("my_metric")]
    steps = 2 * 32 // 8  # 2 epochs of the 32 training pairs in batches of 8
    assert mine == [(s, s + 0.5) for s in range(steps)]  # every step, at its own step
    epochs = [(int(r["epoch"]), float(r["my_epoch_metric"])) for r in rows if r["my_epoch_metric"]]
    assert epochs == [(0, 2.0), (1, 2.0)]
    assert all(r["loss"] for r in rows if r.get("acc_rgb"))  # the method's own rows stay
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.method == "mocov2plus"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt")["run_kind"] == "mocov2plus"


class _NoContract(torch.nn.Module):
    """A plug-in's LightningModule that forgot the engine's members."""


def test_fit_run_refuses_a_module_missing_a_contract_member_by_name(tmp_path):
    import lightning.pytorch as pl

    from solo_rgbd.engine.fit import RunSpec, fit_run
    from solo_rgbd.engine.run import plan_run
    from solo_rgbd.errors import ConfigError

    class Plugin(pl.LightningModule):
        run_kind = "plugin"  # but no state_roles

        def training_step(self, batch, batch_idx):
            return torch.zeros((), requires_grad=True)

    cfg = compose("pretrain", tiny_overrides(tmp_path))
    plan = plan_run(cfg)
    spec = RunSpec(cfg=cfg, plan=plan, max_epochs=1)
    with pytest.raises(ConfigError, match="lacks 'state_roles' of RunModule"):
        fit_run(spec, Plugin(), datamodule=pl.LightningDataModule())
    assert not plan.run_dir.exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="lacks 'run_kind', 'state_roles'"):
        fit_run(spec, _NoContract(), datamodule=pl.LightningDataModule())


def test_the_engine_turns_lightnings_distributed_sampler_off_itself(tmp_path):
    from solo_rgbd.engine.fit import RunSpec, build_run_trainer
    from solo_rgbd.engine.run import plan_run

    cfg = compose("pretrain", tiny_overrides(tmp_path))
    trainer = build_run_trainer(RunSpec(cfg=cfg, plan=plan_run(cfg), max_epochs=1), [])
    assert trainer._accelerator_connector.use_distributed_sampler is False
