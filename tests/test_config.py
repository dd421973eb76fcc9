import os

import pytest
from omegaconf import OmegaConf

from solo_rgbd.config import compose
from solo_rgbd.errors import ConfigError


def test_default_composition_is_the_quick_mbcf_run():
    cfg = compose("pretrain")
    assert cfg.method == "mbcf" and cfg.data.name == "synthetic"
    assert cfg.backbone.name == "resnet10t"  # quick preset (the main job)
    assert cfg.method_kwargs.queue_size == 1024  # method_preset/mbcf_quick
    assert OmegaConf.is_struct(cfg)


def test_paper_preset_restores_the_paper_settings():
    cfg = compose("pretrain", ["experiment=paper"])
    kw = cfg.method_kwargs
    assert cfg.backbone.name == "resnet50" and cfg.augmentations.crop_size == 224
    assert kw.queue_size == 16384 and kw.tau_intra == 0.1 and kw.tau_inter == 0.04
    assert kw.fusion.mask_ratio == 0.5 and kw.lambda_intra == 0.5 == kw.lambda_inter
    assert (kw.stage1_epochs, kw.stage2_epochs, kw.stage1_lr, kw.stage2_lr) == (
        200,
        100,
        0.03,
        0.05,
    )
    assert cfg.optimizer.weight_decay == 2e-4 and cfg.data.batch_size == 64


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "data.batch_sze=3",
            "unknown config key 'data.batch_sze'. Did you mean 'data.batch_size'?",
        ),
        ("method_kwargs.tau_intr=0.2", "Did you mean 'method_kwargs.tau_intra'?"),
        ("sede=1", "Did you mean 'seed'?"),
        ("backbone=resnet5", "'resnet5' is not an option of the config group 'backbone'"),
    ],
)
def test_typos_are_errors_that_suggest_the_valid_key(override, expected):
    with pytest.raises(ConfigError) as err:
        compose("pretrain", [override])
    assert expected in str(err.value)


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(
        ConfigError, match=r"method 'simclrr' is not registered; registered: .*mbcf"
    ):
        compose("pretrain", ["method=simclrr"])


def test_overrides_and_any_working_directory(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = compose("pretrain", ["backbone.name=resnet34", "data.batch_size=7"])
    finally:
        os.chdir(cwd)
    assert cfg.backbone.name == "resnet34" and cfg.data.batch_size == 7


def test_mandatory_dataset_path_is_named():
    from solo_rgbd.config import check_missing

    cfg = compose("pretrain", ["data=njud"])
    with pytest.raises(ConfigError, match="data.path"):
        check_missing(cfg)


def test_a_renamed_key_points_to_its_new_name():
    with pytest.raises(ConfigError, match="'data.num_workers' was renamed to 'data.decode_thr"):
        compose("pretrain", ["data.num_workers=4"])


@pytest.mark.parametrize(
    "config, override, key",
    [
        ("pretrain", "data.batch_size=big", "data.batch_size"),
        ("pretrain", "method_kwargs.queue_size=many", "method_kwargs.queue_size"),
        ("pretrain", "method_kwargs.fusion.mask_keys=maybe", "method_kwargs.fusion.mask_keys"),
        ("sod", "freeze=sometimes", "freeze"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_at_compose_time(config, override, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}' has the wrong type"):
        compose(config, [override])


def test_every_method_kwargs_default_lives_in_its_dataclass_only(tmp_path):
    """configs/method/*.yaml no longer repeat method_kwargs; the composed paper config is the
    Kwargs dataclass's defaults (plus the paper preset's changes, e.g. shuffle-BN), and a
    method built from an empty dict gets the defaults."""
    import yaml

    from solo_rgbd.config import config_dir
    from solo_rgbd.methods.registry import METHODS

    for path in sorted((config_dir() / "method").glob("*.yaml")):
        assert "method_kwargs" not in (yaml.safe_load(path.read_text()) or {}), path.name
        cls = METHODS[path.stem]
        composed = compose("pretrain", [f"method={path.stem}", "experiment=paper"])
        preset = config_dir() / "method_preset" / f"{path.stem}_paper.yaml"
        changes = yaml.safe_load(preset.read_text()) if preset.exists() else {}
        expected = OmegaConf.merge(cls.default_kwargs(), changes.get("method_kwargs") or {})
        assert composed.method_kwargs == expected, path.stem
        assert cls.validate_kwargs({}) == cls.default_kwargs()


def test_a_data_preset_needs_only_what_differs_and_required_keys_are_named():
    from solo_rgbd.config import check_missing

    cfg = compose("pretrain", ["data=nlpr", "data.path=/x", "experiment=paper"])
    assert cfg.data.invert_depth is True and cfg.data.strict_pairs is True  # schema default
    paper = compose("pretrain", ["data=paper_pretrain"])
    with pytest.raises(ConfigError, match=r"config key 'data.base' must be set"):
        check_missing(paper)
    paper = compose("pretrain", ["data=paper_pretrain", "data.base=/d"])
    check_missing(paper)
    assert paper.data.roots[1].path == "/d/NLPR/train"
