"""LitData shards: pack, then read, is bit-identical to the folder reader; an interrupted pack
is continued by a rerun; every bad folder gets a clear error and exit 2."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from solo_rgbd.cli import main
from solo_rgbd.config import compose
from solo_rgbd.data import disk_cache, shards
from solo_rgbd.data.decode import RootSpec
from solo_rgbd.data.pack_store import ShardStore as ShardPairs
from solo_rgbd.data.pairstore import PairStore
from solo_rgbd.data.shards import pack
from solo_rgbd.data.sources import build_from_config
from solo_rgbd.errors import DataError
from tests.data.stores import store_of as build_cache


@pytest.fixture(scope="module")
def packed(synth_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packs") / "synth40"
    return pack([RootSpec(str(synth_root))], out, 40, workers=2, chunk_bytes="40KB", progress=False)


def test_pack_then_read_is_bit_identical_to_the_folder_reader(synth_root, packed):
    folder = build_cache([RootSpec(str(synth_root))], size=40, storage="ram")
    pairs = ShardPairs(packed)
    assert isinstance(pairs, PairStore) and isinstance(folder, PairStore)
    assert len(pairs) == len(folder) == 32 and len(list(packed.glob("chunk-*.bin"))) > 2
    a, b = pairs.batch(range(32)), folder.batch(range(32))
    for key in ("rgb", "depth", "gt", "index"):
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert pairs.meta == folder.meta  # stems, sources, sizes, GT paths, meta rows
    flat = pairs.materialize()
    assert flat.meta == folder.meta and torch.equal(flat.gt, folder.gt)
    view = pairs.subset([7, 2, 30]).subset([2, 0])  # views of views read the right pairs
    assert view.meta.stems == [folder.meta.stems[30], folder.meta.stems[7]]
    assert torch.equal(view.batch([0, 1])["rgb"], folder.batch([30, 7])["rgb"])
    assert not (packed.parent / "synth40.partial").exists()


def test_a_data_config_reads_the_pack_and_checks_its_size(packed):
    cfg = compose("pretrain", ["data.format=litdata", f"data.path={packed}", "data.image_size=40"])
    assert len(build_from_config(cfg.data)) == 32
    cfg.data.image_size = 64
    with pytest.raises(DataError, match="packed at 40 px and this run reads 64 px; set"):
        build_from_config(cfg.data)


KILLED_PACK = """
import sys, time
from solo_rgbd.data import shards
from solo_rgbd.data.decode import RootSpec
real = shards._item
def slow(job, size, on_constant_depth, errors, labels="saliency"):
    time.sleep(0.1)  # long enough to be killed part-way
    return real(job, size, on_constant_depth, errors, labels)
shards._item = slow
shards.pack([RootSpec(sys.argv[1])], sys.argv[2], 40, chunk_bytes="20KB", progress=False)
"""


def _until_the_killed_workers_are_gone(out: Path) -> None:
    """The forked LitData workers hold the pack's lock until they are reaped; a rerun while one
    still lives is refused (rightly: it may still be writing)."""
    from solo_rgbd.data.pack_checks import pack_lock

    deadline = time.monotonic() + 30
    while True:
        try:
            with pack_lock(out):
                return
        except DataError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_pack_killed_part_way_is_continued_by_a_rerun(synth_root, tmp_path, monkeypatch):
    out, work = tmp_path / "pk", tmp_path / "pk.partial"
    script = tmp_path / "pack.py"
    script.write_text(KILLED_PACK)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(synth_root), str(out)], start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(list(work.glob("chunk-*.bin"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, the workers too
    proc.wait()
    _until_the_killed_workers_are_gone(out)
    assert not out.exists() and len(list(work.glob("chunk-*.bin"))) >= 4
    with pytest.raises(DataError, match="unfinished pack: rerun the same"):
        ShardPairs(out)
    decoded = tmp_path / "decoded.txt"
    real = shards._item

    def counting(job, size, on_constant_depth, errors, labels="saliency"):
        with open(decoded, "a") as f:
            f.write("x")
        return real(job, size, on_constant_depth, errors, labels)

    monkeypatch.setattr(shards, "_item", counting)
    pack([RootSpec(str(synth_root))], out, 40, chunk_bytes="20KB", progress=False)
    assert len(decoded.read_text()) < 32  # continued from LitData's checkpoint
    folder = build_cache([RootSpec(str(synth_root))], size=40, storage="ram")
    got = ShardPairs(out).batch(range(32))
    assert torch.equal(got["depth"], folder.depth) and torch.equal(got["rgb"], folder.rgb)
    assert not work.exists()


def test_a_corrupt_image_stops_the_pack_with_its_name_and_keeps_nothing(
    synth_root, tmp_path, capsys
):
    src = tmp_path / "src"
    shutil.copytree(synth_root, src)
    victim = sorted((src / "RGB").iterdir())[5]
    victim.write_bytes(b"not an image")
    out = tmp_path / "pk"
    assert main(["data", "pack", str(src), str(out), "--size", "40", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "packing stopped, nothing was kept" in err and victim.name in err
    assert not out.exists() and not (tmp_path / "pk.partial").exists()


def _copy(packed: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(packed, dst)
    return dst


def test_a_truncated_chunk_or_a_foreign_folder_is_a_clear_error_with_exit_2(
    packed, tmp_path, capsys
):
    bad = _copy(packed, tmp_path)
    chunk = sorted(bad.glob("chunk-*.bin"))[1]
    chunk.write_bytes(chunk.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"chunk '{chunk}' has .* bytes \\(truncated"):
        ShardPairs(bad)
    old = _copy(packed, tmp_path / "old")
    manifest = json.loads((old / "solo_rgbd.json").read_text())
    (old / "solo_rgbd.json").write_text(json.dumps({**manifest, "format": 0}))
    with pytest.raises(DataError, match="packed by another version of solo-rgbd"):
        ShardPairs(old)
    (old / "solo_rgbd.json").unlink()
    with pytest.raises(DataError, match="holds LitData chunks but no solo_rgbd.json"):
        ShardPairs(old)
    overrides = ["data.format=litdata", f"data.path={bad}", "data.image_size=40"]
    overrides.append("augmentations.crop_size=32")
    assert main(["pretrain", "backbone=tiny", *overrides]) == 2
    err = capsys.readouterr().err
    assert "truncated or damaged" in err and "Traceback" not in err


def test_packing_into_a_used_folder_or_a_full_disk_writes_nothing(
    synth_root, packed, tmp_path, monkeypatch, capsys
):
    assert main(["data", "pack", str(synth_root), str(packed), "--size", "40"]) == 2
    assert "already a packed dataset" in capsys.readouterr().err
    small = tmp_path / "small"  # a 120 KB disk; the pack needs 0.3 MB
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk cases are untested")
    try:
        args = ["data", "pack", str(synth_root), str(small / "pk"), "--size", "40", "--quiet"]
        assert main(args) == 2  # refused before any decoding
        assert "needs 0.3 MiB" in capsys.readouterr().err
        assert list(small.iterdir()) == []
        # told there is room, the pack runs into the full disk part-way
        fake = shutil.disk_usage(small)._replace(free=1 << 30)
        monkeypatch.setattr(disk_cache.shutil, "disk_usage", lambda _: fake)
        assert main([*args, "--chunk-bytes", "20KB"]) == 2
        assert "filled up while packing; the partial pack was removed" in capsys.readouterr().err
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
