"""Issue 17: decompression bombs, complex depth, ambiguous predictions: one-paragraph errors."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from solo_rgbd.data.readers import read_depth_raw, read_mask, read_rgb
from solo_rgbd.errors import DataError
from solo_rgbd.evaluation.scoring import match_predictions


def _png_declaring(path, width, height):
    """A tiny PNG whose header declares width x height (a decompression bomb's header)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "reader, kind", [(read_rgb, "RGB"), (read_depth_raw, "depth"), (read_mask, "GT")]
)
@pytest.mark.parametrize("side", [30000, 100000])
def test_a_decompression_bomb_is_refused_naming_its_size_and_the_limit(
    tmp_path, monkeypatch, reader, kind, side
):
    path = tmp_path / "bomb.png"
    _png_declaring(path, side, side)
    with pytest.raises(DataError, match=rf"'{path}' declares .*SOLO_RGBD_MAX_PIXELS"):
        reader(path)
    monkeypatch.setenv("SOLO_RGBD_MAX_PIXELS", "32")  # a limit below a real image's size
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(small)
    with pytest.raises(DataError, match="8 x 8 = 64"):
        reader(small)


def test_complex_depth_is_an_error_not_a_warning(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, (np.ones((8, 8)) + 1j).astype(np.complex64))
    with pytest.raises(DataError, match="complex64 values; depth must be real"):
        read_depth_raw(path)


def test_two_prediction_maps_for_one_stem_are_ambiguous(tmp_path):
    for name in ("000.png", "000.jpg", "001.png"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    gt = {"000": tmp_path / "gt0.png", "001": tmp_path / "gt1.png"}
    with pytest.raises(DataError, match=r"more than one map for 1 stem\(s\) \(000.jpg, 000.png\)"):
        match_predictions(tmp_path, gt)
    (tmp_path / "000.jpg").unlink()
    assert [p.name for p in match_predictions(tmp_path, gt)] == ["000.png", "001.png"]
