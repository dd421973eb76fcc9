"""The shared on-disk cache (data.cache=disk|auto): the same bytes as the RAM cache, decoded
once, memory-mapped, views instead of copies, and clear errors with nothing half-written."""

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from solo_rgbd.data import disk_cache, store
from solo_rgbd.data.decode import DecodeSpec, RootSpec
from solo_rgbd.data.pairstore import StoreView
from solo_rgbd.errors import ConfigError, DataError
from tests.data.stores import count_decodes
from tests.data.stores import store_of as build_cache


def _copy(synth_root: Path, tmp_path: Path) -> list[RootSpec]:
    """A private copy of the dataset: a test may rewrite its files."""
    root = tmp_path / "ds"
    shutil.copytree(synth_root, root)
    return [RootSpec(str(root))]


def _disk(roots, tmp_path, **kw):
    return build_cache(roots, size=40, storage="disk", cache_dir=tmp_path / "decoded", **kw)


def test_the_disk_cache_holds_the_ram_caches_bytes_and_is_decoded_once(synth_root, tmp_path):
    roots = _copy(synth_root, tmp_path)
    ram = build_cache(roots, size=40, storage="ram")
    with count_decodes() as decoded:
        disk = _disk(roots, tmp_path)
        assert decoded.n == len(ram) == 32  # each pair decoded once
        assert disk.mapped and not ram.mapped
        for name in ("rgb", "depth", "gt"):
            assert torch.equal(getattr(disk, name), getattr(ram, name)), name
        assert disk.meta == ram.meta  # stems, sources, sizes, GT paths, meta rows
        # another process (here: a fresh open) maps the folder and decodes nothing
        again = _disk(roots, tmp_path)
        assert decoded.n == 32 and torch.equal(again.rgb, ram.rgb)
    (folder,) = [p for p in (tmp_path / "decoded").iterdir() if p.is_dir()]
    index = json.loads((folder / "index.json").read_text())
    assert index["n"] == 32 and index["format"] == disk_cache.DISK_FORMAT
    assert sorted(p.name for p in folder.iterdir()) == [
        "depth.npy", "gt.npy", "index.json", "rgb.npy",
    ]  # fmt: skip


def test_a_subset_of_a_mapped_cache_is_a_view_with_the_same_batches(synth_root, tmp_path):
    roots = _copy(synth_root, tmp_path)
    ram = build_cache(roots, size=40, storage="ram")
    disk = _disk(roots, tmp_path)
    pick = [5, 3, 30, 0, 17, 9]
    view, copy = disk.subset(pick), ram.subset(pick).materialize()
    assert isinstance(view, StoreView) and view.base is disk  # no copy of the arrays
    assert view.rows.tolist() == pick and len(view) == 6
    inner = view.subset([4, 1])  # a view of a view is one flat view
    assert inner.base is disk and inner.rows.tolist() == [17, 3]
    assert inner.meta.stems == [ram.meta.stems[17], ram.meta.stems[3]]
    for a, b in ((view, copy), (inner, copy.subset([4, 1]))):
        ba, bb = a.batch([1, 0]), b.batch([1, 0])
        assert all(torch.equal(ba[k], bb[k]) for k in ("rgb", "depth", "gt", "index"))
    flat = view.materialize()
    assert not flat.mapped and torch.equal(flat.rgb, copy.rgb) and flat.meta == copy.meta


def test_auto_switches_to_disk_with_one_line_and_a_forced_ram_that_cannot_fit_is_an_error(
    synth_root, tmp_path, monkeypatch, caplog
):
    roots = _copy(synth_root, tmp_path)
    need = disk_cache.decoded_bytes(32, 40, with_gt=True)
    monkeypatch.setattr(store, "available_memory", lambda: 2 * need * 2 - 1)  # 2 ranks: no
    with caplog.at_level(logging.WARNING, logger="solo_rgbd.data.store"):
        auto = build_cache(roots, size=40, storage="auto", cache_dir=tmp_path / "decoded", copies=2)
    assert auto.mapped
    lines = [r.getMessage() for r in caplog.records if r.name == "solo_rgbd.data.store"]
    assert len(lines) == 1 and "using the shared disk cache" in lines[0]
    assert store.choose_storage("auto", need, copies=1) == "ram"  # one process fits
    with pytest.raises(DataError, match="data.cache=ram needs .* use data.cache=disk"):
        store.choose_storage("ram", need, copies=5)
    with pytest.raises(ConfigError, match="data.cache='memory' is unknown"):
        store.choose_storage("memory", need)


def test_too_little_disk_is_an_error_before_any_decoding(synth_root, tmp_path, monkeypatch):
    roots = _copy(synth_root, tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk_cache.shutil, "disk_usage", lambda _: usage._replace(free=1 << 20))
    full = r"needs 0\.3 MiB .* 1\.0 MiB free; point data.cache_dir"
    with count_decodes() as decoded, pytest.raises(DataError, match=full):
        _disk(roots, tmp_path)
    assert decoded.n == 0
    assert [p.name for p in (tmp_path / "decoded").iterdir() if p.is_dir()] == []


def test_a_killed_build_is_cleaned_up_and_a_corrupt_cache_says_how_to_fix_it(synth_root, tmp_path):
    roots = _copy(synth_root, tmp_path)
    key = DecodeSpec(tuple(roots), 40).key()
    stale = tmp_path / "decoded" / f"{key}.tmp-99999"  # what a kill -9 mid-build leaves
    stale.mkdir(parents=True)
    (stale / "rgb.npy").write_bytes(b"half")
    cache = _disk(roots, tmp_path)
    assert len(cache) == 32 and not stale.exists()
    folder = tmp_path / "decoded" / key
    (folder / "rgb.npy").write_bytes((folder / "rgb.npy").read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="is unreadable .* delete that folder"):
        disk_cache.open_disk_cache(folder)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_a_disk_that_fills_up_while_decoding_leaves_nothing_behind(
    synth_root, tmp_path, monkeypatch
):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "96k"):
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is untested")
    try:
        roots = _copy(synth_root, tmp_path)
        # the free-space check passes (it is told 1 GiB), the writes then hit a full disk
        fake = shutil.disk_usage(small)._replace(free=1 << 30)
        monkeypatch.setattr(disk_cache.shutil, "disk_usage", lambda _: fake)
        with pytest.raises(DataError, match="writing the disk cache .* failed .* nothing was"):
            build_cache(roots, size=40, storage="disk", cache_dir=small)
        assert [p for p in small.iterdir() if p.is_dir()] == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.parametrize("storage", ["disk", "ram"])
def test_a_file_rewritten_in_place_is_decoded_again(synth_root, tmp_path, storage):
    """Issue 30, finding 2: the key covered only the folders' times, which an in-place rewrite
    does not change, so a run trained on the old GT without a word."""
    roots = _copy(synth_root, tmp_path)
    build = dict(size=40, storage=storage, cache_dir=tmp_path / "decoded")
    first = build_cache(roots, **build)
    gt_dir = Path(roots[0].path) / "GT"
    folder_times = gt_dir.stat().st_mtime_ns
    for path in sorted(gt_dir.iterdir()):  # every GT rewritten in place as all zero
        from PIL import Image

        with open(path, "r+b") as f:
            Image.new("L", Image.open(path).size, 0).save(f, format="PNG")
            f.truncate()
    assert gt_dir.stat().st_mtime_ns == folder_times  # the folder did not change
    again = build_cache(roots, **build)
    assert first.gt.float().mean() > 0 and again.gt.float().mean() == 0
