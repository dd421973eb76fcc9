import numpy as np
import pytest
from PIL import Image

from solo_rgbd.data.readers import (
    ConstantDepthError,
    normalize_depth,
    read_depth,
    read_depth_raw,
    read_mask,
    read_rgb,
)
from solo_rgbd.errors import DataError


def test_16bit_png_keeps_its_full_range(tmp_path):
    ramp = np.linspace(1000, 60000, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(ramp).save(path)
    raw = read_depth_raw(path)
    assert raw.dtype == np.uint16
    assert raw.min() == 1000 and raw.max() == 60000  # not clipped at 255 like convert('L')
    depth, info = read_depth(path)
    assert info.dtype == "uint16" and info.max == 60000
    assert depth.min() == 0.0 and depth.max() == 1.0
    # far more than 256 distinct levels survive: 16-bit precision is kept
    assert len(np.unique(depth)) > 4000


def test_8bit_float_tiff_and_npy_depth(tmp_path):
    arr8 = np.tile(np.arange(1, 65, dtype=np.uint8), (8, 1))
    Image.fromarray(arr8).save(tmp_path / "d8.png")
    d8, info8 = read_depth(tmp_path / "d8.png")
    assert info8.dtype == "uint8" and d8.max() == 1.0 and d8.min() == 0.0
    arrf = np.linspace(0.5, 9.5, 100, dtype=np.float32).reshape(10, 10)
    Image.fromarray(arrf, mode="F").save(tmp_path / "df.tif")
    df, infof = read_depth(tmp_path / "df.tif")
    assert infof.dtype == "float32"
    np.testing.assert_allclose(df, (arrf - 0.5) / 9.0, atol=1e-6)
    np.save(tmp_path / "dn.npy", arrf)
    dn, _ = read_depth(tmp_path / "dn.npy")
    np.testing.assert_allclose(dn, df)


def test_holes_stay_zero_and_invert_flips_valid_pixels_only():
    raw = np.array([[0, 10, 20], [30, 0, 40]], dtype=np.uint16)
    d = normalize_depth(raw)
    np.testing.assert_allclose(d, [[0, 0, 1 / 3], [2 / 3, 0, 1]], atol=1e-6)
    inv = normalize_depth(raw, invert=True)
    np.testing.assert_allclose(inv, [[0, 1, 2 / 3], [1 / 3, 0, 0]], atol=1e-6)


def test_constant_depth_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(path)
    with pytest.raises(ConstantDepthError, match="flat.png.*constant"):
        read_depth(path)


def test_truncated_image_names_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 50).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match="bad.png"):
        read_rgb(bad)
    notimg = tmp_path / "text.jpg"
    notimg.write_text("hello")
    with pytest.raises(DataError, match="text.jpg.*not an"):
        read_depth(notimg)


def test_rgba_and_grayscale_rgb_become_three_channels(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and out[0, 0, 0] == 200
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (4, 5, 3)
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()


def test_binary_01_masks_are_rescaled(tmp_path):
    m = np.zeros((6, 6), np.uint8)
    m[2:4, 2:4] = 1
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.max() == 255 and (out > 0).sum() == 4


def test_channel_first_and_last_npy_depth_are_squeezed(tmp_path):
    depth = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    for name, arr in (("first.npy", depth[None]), ("last.npy", depth[..., None])):
        np.save(tmp_path / name, arr)
        assert np.array_equal(read_depth_raw(tmp_path / name), depth)  # (3, 4), not a strip
    np.save(tmp_path / "stack.npy", np.ones((2, 5, 6), np.float32))
    with pytest.raises(DataError, match="stack.npy' has shape"):
        read_depth_raw(tmp_path / "stack.npy")


def test_colour_mapped_depth_is_refused_grey_rgb_depth_is_read(tmp_path):
    grey = np.tile(np.arange(16, dtype=np.uint8)[:, None, None] * 10 + 5, (1, 8, 3))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert np.array_equal(read_depth_raw(tmp_path / "grey.png"), grey[..., 0])
    cmap = grey.copy()
    cmap[..., 1] = 255 - cmap[..., 0]  # a jet-like colour map: the channels differ
    Image.fromarray(cmap).save(tmp_path / "cmap.png")
    with pytest.raises(DataError, match="cmap.png' has 3 different colour channels.*raw depth"):
        read_depth_raw(tmp_path / "cmap.png")
