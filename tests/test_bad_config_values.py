"""Issue 17, item 8 and the config tracebacks: each bad value is exit 2, one paragraph naming
the key, and nothing written."""

import pytest

from solo_rgbd.cli import main

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
