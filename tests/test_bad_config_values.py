"""Issue 17, item 8 and the config tracebacks: each bad value is exit 2, one paragraph naming
the key, and nothing written."""

import pytest

from solo_rgbd.cli import main
from tests.conftest import SHORT_MBCF, tiny_overrides

BAD = {
    "augmentations.rgb.blur_sigma=[0,0]": "augmentations.rgb.blur_sigma",
    "augmentations.rgb.blur_sigma=[2.0,0.5]": "augmentations.rgb.blur_sigma",
    "augmentations.rgb.blur_sigma=[-1,-1]": "augmentations.rgb.blur_sigma",
    "method=mocov2plus optimizer.lr=inf": "optimizer.lr",
    "method_kwargs.stage1_lr=inf": "method_kwargs.stage1_lr",
    "augmentations.min_scale=0 augmentations.max_scale=0": "augmentations.min_scale",
    "augmentations.rgb.color_jitter_prob=2.0": "augmentations.rgb.color_jitter_prob",
    "augmentations.rgb.hue=5.0": "augmentations.rgb.hue",
    "data.synthetic.camouflage_ratio=2.0": "data.synthetic.camouflage_ratio",
    "trainer.channels_last=maybe": "trainer.channels_last",
    "data.cache_device=cuda": "data.cache_device",
    "trainer.accelerator=tpu": "trainer.accelerator",
    "trainer.devices=0": "trainer.devices",
    "trainer.devices=-1": "trainer.devices",
    "seed=99999999999999": "seed",
    "method_kwargs.proj_output_dim=0": "method_kwargs.proj_output_dim",
    "+foo=1": "foo",
    "checkpoint.every_n_minutes=-5": "checkpoint.every_n_minutes",
    "checkpoint.async_save=sometimes": "checkpoint.async_save",
}


@pytest.mark.parametrize("overrides, key", BAD.items(), ids=list(BAD))
def test_a_bad_value_is_exit_2_naming_the_key_and_nothing_is_written(
    tmp_path, capsys, overrides, key
):
    import torch

    if key in ("data.cache_device",) and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "out"
    code = main(["pretrain", "backbone=tiny", f"output_dir={out}", *overrides.split()])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"'{key}'" in err or f"{key} =" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not out.exists()


NOTHING_WRITTEN = {
    "method_kwargs.stage1_epochs=1 method_kwargs.stage2_epochs=1 trainer.max_epochs=100": (
        "trainer.max_epochs"
    ),
    "trainer.strategy=bogus": "trainer.strategy",
    "probes.online.enabled=true": "probes.online.enabled",
    "probes.frozen.enabled=true": "probes.frozen.enabled",
}


@pytest.mark.parametrize("overrides, key", NOTHING_WRITTEN.items(), ids=list(NOTHING_WRITTEN))
def test_settings_refused_by_the_trainer_write_nothing(tmp_path, capsys, overrides, key):
    code = main(["pretrain", *tiny_overrides(tmp_path, run_name="r"), *overrides.split()])
    err = capsys.readouterr().err
    assert code == 2 and key in err, err
    assert not (tmp_path / "outputs" / "mbcf" / "r").exists()


def test_a_rejected_setting_on_resume_keeps_the_runs_config(tmp_path, capsys):
    tiny = tiny_overrides(tmp_path, run_name="r", **SHORT_MBCF)
    assert main(["pretrain", *tiny, "trainer.max_epochs=1"]) == 0
    run = tmp_path / "outputs" / "mbcf" / "r"
    config = (run / "config.yaml").read_text()
    assert main(["pretrain", *tiny, "resume=last", "trainer.strategy=bogus"]) == 2
    assert (run / "config.yaml").read_text() == config
    assert not list(run.glob("config.before-resume-*"))
