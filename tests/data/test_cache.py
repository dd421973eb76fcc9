import logging
import shutil

import numpy as np
import torch
from PIL import Image

from solo_rgbd.data.decode import RootSpec, decode_depth, encode_depth
from tests.data.stores import store_of as build_cache


def test_cache_dtypes_shapes_and_meta(synth_root):
    cache = build_cache([RootSpec(str(synth_root))], size=40)
    assert len(cache) == 32
    assert cache.rgb.shape == (32, 3, 40, 40) and cache.rgb.dtype == torch.uint8
    assert cache.depth.shape == (32, 1, 40, 40) and cache.depth.dtype == torch.int16
    assert cache.gt is not None and cache.gt.dtype == torch.uint8
    meta = cache.meta
    assert meta.rows[0]["stem"] == meta.stems[0] and "camouflaged" in meta.rows[0]
    assert meta.sizes == [(48, 48)] * 32 and len(meta.gt_paths) == 32
    batch = cache.batch([3, 1])
    assert torch.equal(batch["rgb"][0], cache.rgb[3]) and batch["index"].tolist() == [3, 1]


def test_depth_code_is_exact_to_16_bits():
    d = torch.linspace(0, 1, 65536)
    back = decode_depth(encode_depth(d))
    assert (back - d).abs().max() < 0.5 / 65535 + 1e-7
    assert len(torch.unique(encode_depth(d))) == 65536


def test_several_roots_are_concatenated_with_their_own_polarity(synth_root, tmp_path):
    # at the stored size (48 px) no resize blends holes into their neighbours
    a = build_cache([RootSpec(str(synth_root))], size=48)
    b = build_cache(
        [RootSpec(str(synth_root)), RootSpec(str(synth_root), invert_depth=True)], size=48
    )
    assert len(b) == 2 * len(a)
    d_plain, d_inv = decode_depth(b.depth[:32]), decode_depth(b.depth[32:])
    holes = (d_plain == 0) & (d_inv == 0)  # holes stay 0 under inversion
    assert holes.float().mean() > 0.005
    # every valid pixel flips: d -> 1 - d (the farthest valid pixel maps to 0, like a hole)
    assert torch.allclose((d_plain + d_inv)[~holes], torch.ones(1), atol=1e-4)


def test_depth_of_another_size_is_resized_with_a_warning(synth_root, tmp_path, caplog):
    root = tmp_path / "mixed"
    shutil.copytree(synth_root, root)
    d = np.asarray(Image.open(root / "depth" / "00002.png"))
    Image.fromarray(d[::2, ::2].copy()).save(root / "depth" / "00002.png")
    with caplog.at_level(logging.WARNING):
        cache = build_cache([RootSpec(str(root))], size=32)
    assert cache.depth.shape[-2:] == (32, 32)
    assert "different size" in caplog.text and "00002" in caplog.text


def test_class_maps_keep_their_ids_with_the_nearest_label_policy(tmp_path):
    import numpy as np
    from PIL import Image

    from solo_rgbd.data.decode import SALIENCY, LabelPolicy, RootSpec

    for sub in ("RGB", "depth", "GT"):
        (tmp_path / sub).mkdir()
    ids = np.zeros((30, 30), np.uint8)
    ids[:, 10:20], ids[:, 20:] = 3, 7  # three classes: 0, 3, 7
    Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(tmp_path / "RGB" / "a.png")
    Image.fromarray(np.arange(900, dtype=np.uint16).reshape(30, 30) + 1).save(
        tmp_path / "depth" / "a.png"
    )
    Image.fromarray(ids).save(tmp_path / "GT" / "a.png")
    classes = LabelPolicy(reader=lambda p: np.asarray(Image.open(p)), resize="nearest")
    seg = build_cache([RootSpec(str(tmp_path))], size=16, labels=classes)
    assert set(seg.gt.unique().tolist()) == {0, 3, 7}  # no id invented between classes
    sod = build_cache([RootSpec(str(tmp_path))], size=16, labels=SALIENCY)
    assert len(set(sod.gt.unique().tolist())) > 3  # a soft mask: bilinear is right for SOD


def test_within_keep_open_a_dataset_is_decoded_once_until_it_changes(synth_root, tmp_path):
    import os
    import shutil

    from solo_rgbd.data.decode import RootSpec
    from solo_rgbd.data.store import keep_open

    root = tmp_path / "ds"
    shutil.copytree(synth_root, root)
    roots = [RootSpec(str(root))]
    # no process-wide cache of stores outside keep_open
    assert build_cache(roots, size=24) is not build_cache(roots, size=24)
    with keep_open():  # compare: across its cells and seeds
        first = build_cache(roots, size=24)
        assert build_cache(roots, size=24) is first
        assert build_cache(roots, size=32) is not first  # another size
        stem = sorted(os.listdir(root / "RGB"))[0].rsplit(".", 1)[0]
        for sub in ("RGB", "depth", "GT"):  # remove one whole pair
            for f in (root / sub).glob(f"{stem}.*"):
                f.unlink()
        again = build_cache(roots, size=24)
        assert again is not first and len(again) == len(first) - 1  # changed: decoded again
