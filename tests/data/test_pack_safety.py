"""``data pack`` owns only what it made (issue 30, finding 1): a user's ``OUT.partial`` is
never adopted or deleted, bad settings write nothing, two packs into one OUT are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from solo_rgbd.cli import main
from solo_rgbd.data.decode import RootSpec
from solo_rgbd.data.pack_checks import check_pack_settings, pack_lock
from solo_rgbd.data.shards import pack
from solo_rgbd.errors import DataError


@pytest.fixture
def src(synth_root, tmp_path) -> Path:
    copy = tmp_path / "src"
    shutil.copytree(synth_root, copy)
    return copy


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.partial"
    victim.mkdir()
    (victim / "thesis.txt").write_text("draft")
    return victim


@pytest.mark.parametrize("bad_pair", [True, False])
def test_a_users_partial_folder_is_refused_and_left_as_it_was(src, tmp_path, capsys, bad_pair):
    if bad_pair:  # the reproduction: one corrupt image
        next((src / "RGB").iterdir()).write_bytes(b"\x89PNG not really")
    victim = _victim(tmp_path)
    rc = main(["data", "pack", str(src), str(tmp_path / "victim"), "--size", "32", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "was not made by 'solo-rgbd data pack'" in err and "Traceback" not in err
    assert (victim / "thesis.txt").read_text() == "draft"
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.txt"]
    assert not (tmp_path / "victim").exists()


@pytest.mark.parametrize(
    "args, key",
    [(["--size", "0"], "--size"), (["--size", "-5"], "--size"),
     (["--chunk-bytes", "banana"], "--chunk-bytes"), (["--chunk-bytes", "0MB"], "--chunk-bytes"),
     (["--workers", "0"], "--workers")],
)  # fmt: skip
def test_bad_settings_are_refused_before_anything_is_written(src, tmp_path, capsys, args, key):
    rc = main(["data", "pack", str(src), str(tmp_path / "out"), *args, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and key in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing written


def test_chunk_sizes_are_given_to_litdata_as_it_takes_them():
    assert check_pack_settings(32, 1, "64MB") == "64MB"
    assert check_pack_settings(32, 1, "1.5 gb") == "1.5 gb"
    assert check_pack_settings(32, 1, "4096") == 4096


def test_a_second_pack_into_the_same_out_is_refused_while_the_first_runs(src, tmp_path):
    out = tmp_path / "packed"
    with pack_lock(out), pytest.raises(DataError, match="another 'solo-rgbd data pack'"):
        pack([RootSpec(str(src))], out, 32, progress=False)
    assert not out.exists() and not out.with_name("packed.partial").exists()
    assert pack([RootSpec(str(src))], out, 32, progress=False) == out  # once it is free


def test_settings_a_pack_cannot_honour_are_errors_naming_the_key(src, tmp_path):
    """Issue 30, finding 5: data.roots, invert_depth, cache, a test split and class-id labels
    were dropped without a word with data.format=litdata. (Issue 33: a pack records its split
    and label policy; reading another is an error naming the pack option that makes it.)"""
    from solo_rgbd.config import compose
    from solo_rgbd.data.decode import LabelPolicy
    from solo_rgbd.data.sources import build_from_config
    from solo_rgbd.errors import ConfigError, DataError

    packed = pack([RootSpec(str(src))], tmp_path / "packed", 32, progress=False)
    base = ["data.format=litdata", f"data.path={packed}", "data.image_size=32"]
    assert len(build_from_config(compose("pretrain", base).data)) == 32
    for extra, key in [
        (f"data.roots=[{src}]", "data.roots"),
        ("data.invert_depth=true", "data.invert_depth"),
        ("data.cache=disk", "data.cache"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_from_config(compose("pretrain", [*base, extra]).data)
    data = compose("pretrain", base).data
    with pytest.raises(DataError, match="packed as the train split.*--split test"):
        build_from_config(data, split="test")
    with pytest.raises(DataError, match="holds saliency labels.*--labels classes"):
        build_from_config(data, require_gt=True, labels=LabelPolicy(resize="nearest"))


def test_a_killed_pack_whose_sources_changed_is_not_continued(src, tmp_path, monkeypatch):
    from solo_rgbd.data import shards

    out = tmp_path / "packed"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill after the plan was written

    monkeypatch.setattr(shards, "_optimize", killed)
    with pytest.raises(KeyboardInterrupt):
        pack([RootSpec(str(src))], out, 32, progress=False)
    monkeypatch.undo()
    assert (tmp_path / "packed.partial" / "plan.json").is_file()
    gt = next((src / "GT").iterdir())
    gt.write_bytes(gt.read_bytes())  # rewritten in place: same bytes, new times
    with pytest.raises(DataError, match="changed since it started"):
        pack([RootSpec(str(src))], out, 32, progress=False)
    assert not out.exists()


def test_a_class_id_pack_gives_a_task_its_test_split_and_exact_labels(tmp_path):
    """Issue 33: pack a class-id labelled test folder; the task's test split from the pack has
    the folder path's pairs and nearest-resized labels, bit for bit."""
    import numpy as np
    from PIL import Image

    from solo_rgbd.config import compose
    from solo_rgbd.data.decode import LabelPolicy
    from solo_rgbd.data.sources import build_from_config
    from solo_rgbd.errors import DataError
    from tests.data.stores import store_of as build_cache

    folder = tmp_path / "seg_test"
    for sub in ("RGB", "depth", "GT"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(6):
        ids = np.zeros((30, 36), np.uint8)
        ids[:, 10 + k : 20], ids[:, 20 + k :] = 3, 7  # classes 0, 3, 7
        Image.fromarray(rng.integers(0, 255, (30, 36, 3), dtype=np.uint8)).save(
            folder / "RGB" / f"p{k}.png"
        )
        depth = rng.integers(1, 60000, (30, 36)).astype(np.uint16)
        Image.fromarray(depth).save(folder / "depth" / f"p{k}.png")
        Image.fromarray(ids).save(folder / "GT" / f"p{k}.png")
    classes = LabelPolicy(resize="nearest")
    assert (
        main(
            ["data", "pack", str(folder), str(tmp_path / "packed"), "--size", "16", "--quiet"]
            + ["--split", "test", "--labels", "classes"]
        )
        == 0
    )
    cfg = compose(
        "pretrain",
        ["data.format=litdata", f"data.path={tmp_path / 'packed'}", "data.image_size=16"],
    )
    packed = build_from_config(cfg.data, "test", require_gt=True, labels=classes)
    direct = build_cache([RootSpec(str(folder))], size=16, require_gt=True, labels=classes)
    got, want = packed.batch(list(range(6))), direct.batch(list(range(6)))
    for key in ("rgb", "depth", "gt"):
        assert torch.equal(got[key], want[key]), key
    assert set(got["gt"].unique().tolist()) == {0, 3, 7}  # no id invented between classes
    assert packed.meta == direct.meta  # stems, sources, original sizes, GT paths
    with pytest.raises(DataError, match="packed as the test split"):
        build_from_config(cfg.data, "train", require_gt=True, labels=classes)
    with pytest.raises(DataError, match="holds classes labels"):
        build_from_config(cfg.data, "test", require_gt=True)  # saliency: another policy
