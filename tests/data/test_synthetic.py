import numpy as np
import pytest
from PIL import Image

from solo_rgbd.data.readers import normalize_depth
from solo_rgbd.data.synthetic import META_COLUMNS, make_scene, read_meta, write_synthetic
from solo_rgbd.errors import DataError

#: sha256 prefix of version 1's scene (seed 0, index 3, 64 px): standard must never change
STANDARD_SCENE_3 = "30e429802d7edda0"


def test_deterministic_for_a_seed_and_independent_of_n():
    a = make_scene(7, 3, size=64)
    b = make_scene(7, 3, size=64)
    c = make_scene(8, 3, size=64)
    for x, y in zip(a[:3], b[:3], strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_files_meta_and_layout(tmp_path):
    out = write_synthetic(tmp_path / "ds", n=12, seed=1, size=48)
    meta = read_meta(out)
    assert len(meta) == 12 and set(META_COLUMNS) <= set(next(iter(meta.values())))
    depth = np.asarray(Image.open(out / "depth" / "00000.png"))
    assert depth.dtype == np.uint16 and depth.shape == (48, 48)
    assert (depth == 0).any()  # sensor holes
    assert sorted(p.name for p in out.iterdir()) == ["GT", "RGB", "depth", "meta.csv", "synth.json"]


def test_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "ds"
    write_synthetic(out, n=2, size=32)
    with pytest.raises(DataError, match="not empty.*--overwrite"):
        write_synthetic(out, n=2, size=32)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def _ring(mask: np.ndarray, width: int = 4) -> np.ndarray:
    grown = mask.copy()
    for _ in range(width):
        grown = (
            grown
            | np.roll(grown, 1, 0)
            | np.roll(grown, -1, 0)
            | np.roll(grown, 1, 1)
            | np.roll(grown, -1, 1)
        )
    return grown & ~mask


def test_scenes_reproduce_the_modality_imbalance():
    """RGB separates plain scenes' objects, only depth separates camouflaged ones, and depth
    alone (the nearest thing) is often a distractor."""
    rgb_contrast = {0: [], 1: []}
    depth_contrast = {0: [], 1: []}
    nearest_is_object = []
    n_camo = 0
    for i in range(120):
        rgb, depth_raw, gt, meta = make_scene(11, i, size=96)
        camo = meta["camouflaged"]
        n_camo += camo
        mask = gt > 127
        ring = _ring(mask)
        if mask.sum() < 20 or ring.sum() < 20:
            continue
        colour = rgb.astype(float)
        rgb_contrast[camo].append(np.abs(colour[mask].mean(0) - colour[ring].mean(0)).sum())
        depth = normalize_depth(depth_raw)
        valid = depth > 0
        depth_contrast[camo].append(depth[mask & valid].mean() - depth[ring & valid].mean())
        if not camo:
            near = depth >= np.quantile(depth[valid], 0.97)
            nearest_is_object.append((near & mask).sum() > 0.5 * near.sum())
    assert 0.15 <= n_camo / 120 <= 0.35  # about a quarter camouflaged
    # plain scenes: strong colour contrast; camouflaged: much weaker
    assert np.median(rgb_contrast[0]) > 3 * np.median(rgb_contrast[1])
    # camouflaged objects stand out in depth (nearer than their surroundings)
    assert np.median(depth_contrast[1]) > 0.1
    # in plain scenes the nearest region is usually NOT the salient object
    assert np.mean(nearest_is_object) < 0.5


def test_parallel_generation_writes_the_same_bytes(tmp_path):
    import hashlib

    def digest(root):
        return sorted(
            (p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in root.rglob("*")
            if p.is_file()
        )

    serial = write_synthetic(tmp_path / "one", n=64, seed=5, size=32, workers=1)
    parallel = write_synthetic(tmp_path / "two", n=64, seed=5, size=32, workers=2)
    assert digest(serial) == digest(parallel)


def test_hard_scenes_add_colourful_clutter_and_leave_standard_scenes_unchanged():
    import hashlib

    from solo_rgbd.data.synthetic import make_scene

    # standard is version 1's renderer, byte for byte (its caches keep their names)
    rgb, depth, gt, _ = make_scene(0, 3, 64, 0.25)
    digest = hashlib.sha256(rgb.tobytes() + depth.tobytes() + gt.tobytes()).hexdigest()[:16]
    assert digest == STANDARD_SCENE_3
    plain_std, plain_hard, camo = [], [], 0
    for i in range(40):
        std_meta = make_scene(0, i, 48, 0.25)[3]
        rgb, depth, gt, meta = make_scene(0, i, 48, 0.25, "hard")
        assert std_meta["camouflaged"] == meta["camouflaged"]  # the same scene plan
        if meta["camouflaged"]:
            camo += 1
            continue
        plain_std.append(std_meta["n_distractors"])
        plain_hard.append(meta["n_distractors"])
        assert gt.max() == 255 and 0 < (gt > 0).mean() < 0.6  # the object is still there
    assert camo > 0 and min(h - s for h, s in zip(plain_hard, plain_std, strict=True)) >= 0
    assert np.mean(plain_hard) >= np.mean(plain_std) + 2  # 2-4 clutter objects per plain scene
    with pytest.raises(DataError, match="difficulty 'extreme' is unknown"):
        make_scene(0, 0, 48, 0.25, "extreme")
