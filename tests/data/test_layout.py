import numpy as np
import pytest
from PIL import Image

from solo_rgbd.data.layout import discover_pairs
from solo_rgbd.errors import DataError


def _img(path, channels=3, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8, channels) if channels > 1 else (8, 8)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


@pytest.mark.parametrize(
    "names",
    [
        ("RGB", "depth", "GT"),
        ("Image", "Depth", "Mask"),
        ("images", "depths", "masks"),
        ("train_images", "train_depth", "train_masks"),
        ("test_images", "test_depth", "test_masks"),
    ],
)
def test_field_layouts_are_discovered(tmp_path, names):
    r, d, g = names
    for stem, ext in [("a", ".jpg"), ("b", ".png"), ("c", ".bmp")]:
        _img(tmp_path / r / f"{stem}{ext}")
        _img(tmp_path / d / f"{stem}.png", channels=1)
        _img(tmp_path / g / f"{stem}.png", channels=1)
    pairs = discover_pairs(tmp_path)
    assert pairs.stems == ["a", "b", "c"]
    assert pairs.has_gt and not pairs.missing_gt


def test_gt_is_optional(tmp_path):
    _img(tmp_path / "RGB" / "x.jpg")
    _img(tmp_path / "depth" / "x.png", 1)
    pairs = discover_pairs(tmp_path)
    assert pairs.stems == ["x"] and not pairs.has_gt


def test_missing_root_and_unrecognised_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover_pairs(tmp_path / "nope")
    (tmp_path / "photos").mkdir()
    (tmp_path / "ranges").mkdir()
    with pytest.raises(DataError, match=r"no recognisable RGB/depth pair.*photos, ranges"):
        discover_pairs(tmp_path)


def test_rgb_without_depth_lists_ten_names_and_the_count(tmp_path):
    for i in range(14):
        _img(tmp_path / "RGB" / f"im{i:02d}.jpg")
    _img(tmp_path / "depth" / "im00.png", 1)
    with pytest.raises(DataError) as err:
        discover_pairs(tmp_path)
    msg = str(err.value)
    assert "13 RGB file(s)" in msg and "im01" in msg and "im10" in msg
    assert "im11" not in msg and "and 3 more" in msg and "data.strict_pairs=false" in msg
    pairs = discover_pairs(tmp_path, strict=False)
    assert pairs.stems == ["im00"] and len(pairs.rgb_without_depth) == 13


def test_no_shared_stem_is_an_error(tmp_path):
    _img(tmp_path / "RGB" / "a.jpg")
    _img(tmp_path / "depth" / "b.png", 1)
    with pytest.raises(DataError, match="share no file stem"):
        discover_pairs(tmp_path)


def test_duplicate_stems_are_an_error_listing_them(tmp_path):
    for sub, ext in (("RGB", "jpg"), ("RGB", "png"), ("depth", "png")):
        _img(tmp_path / sub / f"a.{ext}", 1 if sub == "depth" else 3)
    with pytest.raises(DataError, match=r"appear twice.*RGB/a \(a.jpg, a.png\)"):
        discover_pairs(tmp_path)


def test_a_looping_symlink_is_named(tmp_path):
    _img(tmp_path / "RGB" / "a.jpg")
    _img(tmp_path / "depth" / "a.png", 1)
    (tmp_path / "depth" / "loop.png").symlink_to(tmp_path / "depth" / "loop.png")
    with pytest.raises(DataError, match="loop.png"):
        discover_pairs(tmp_path)


def test_an_unreadable_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    import os

    _img(tmp_path / "RGB" / "a.jpg")
    _img(tmp_path / "depth" / "a.png", 1)
    real = os.scandir

    def denied(path):
        if str(path).endswith("depth"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(DataError, match="cannot list the dataset folder.*depth.*Permission"):
        discover_pairs(tmp_path)


def test_depth_without_rgb_is_reported_with_a_warning(tmp_path, caplog):
    from solo_rgbd.data.decode import RootSpec
    from tests.data.stores import store_of as build_cache

    for stem in ("a", "b"):
        _img(tmp_path / "RGB" / f"{stem}.jpg", value=50)
        arr = np.arange(64, dtype=np.uint8).reshape(8, 8) + 1
        (tmp_path / "depth").mkdir(exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "depth" / f"{stem}.png")
    Image.fromarray(arr).save(tmp_path / "depth" / "orphan.png")
    with caplog.at_level("WARNING"):
        cache = build_cache([RootSpec(str(tmp_path))], size=8)
    assert len(cache) == 2
    assert "1 depth file(s) without an RGB partner: orphan" in caplog.text
