"""The embedded synthetic RGB-D saliency dataset.

Scenes reproduce the field's modality imbalance: **RGB is the strong modality, depth the weak,
complementary one.**

- *Plain scenes* (about 3/4): the salient object wears a distinct colour and texture, while
  1-3 distractors wear the background's appearance. Distractors often stand *nearer* than the
  salient object, so "pick the nearest thing" (depth alone) fails and appearance is needed.
- *Camouflaged scenes* (``camouflage_ratio``, default 0.25): the salient object wears the
  background's appearance, so only depth reveals it; its distractors stand farther away.
- Depth is sensor-like: rendered at half resolution and upsampled (blocky), noise growing with
  distance squared, holes (0) at depth edges and in random blobs; stored as 16-bit PNG,
  near = bright (disparity-like).

Every image is drawn from its own ``numpy.random.default_rng([seed, index])``, so a dataset is
deterministic for a seed and the first ``n`` images do not depend on how many are made.
``meta.csv`` records per image whether it is camouflaged and how many distractors it has.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from solo_rgbd.errors import DataError
from solo_rgbd.utils.atomic import atomic_dir, remove_leftovers
from solo_rgbd.utils.console import progress_while

SYNTH_VERSION = 1
META_COLUMNS = ("stem", "camouflaged", "n_distractors", "n_nearer", "object_depth", "gt_area")


@dataclass(frozen=True)
class Appearance:
    colour_a: np.ndarray  # (3,) in [0, 1]
    colour_b: np.ndarray
    pattern: int  # 0 stripes, 1 checker, 2 blotches
    freq: float
    angle: float
    phase: float

    def render(self, xx: np.ndarray, yy: np.ndarray, noise: np.ndarray) -> np.ndarray:
        u = xx * np.cos(self.angle) + yy * np.sin(self.angle)
        v = -xx * np.sin(self.angle) + yy * np.cos(self.angle)
        if self.pattern == 0:
            t = 0.5 + 0.5 * np.sin(2 * np.pi * self.freq * u + self.phase)
        elif self.pattern == 1:
            t = (np.sin(2 * np.pi * self.freq * u) * np.sin(2 * np.pi * self.freq * v) > 0) * 1.0
        else:
            t = np.clip(noise * 1.6 - 0.3, 0, 1)
        return self.colour_a * t[..., None] + self.colour_b * (1 - t[..., None])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    h = h % 1.0
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _random_appearance(rng: np.random.Generator, hue: float) -> Appearance:
    return Appearance(
        colour_a=_hsv(hue, rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.95)),
        colour_b=_hsv(hue + rng.uniform(-0.06, 0.06), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5)),
        pattern=int(rng.integers(0, 3)),
        freq=float(rng.uniform(3, 9)),
        angle=float(rng.uniform(0, np.pi)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _shape_mask(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, radius: float):
    cx, cy = rng.uniform(0.2, 0.8, size=2)
    kind = int(rng.integers(0, 3))
    angle = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    a, b = radius * rng.uniform(0.7, 1.3), radius * rng.uniform(0.5, 1.0)
    if kind == 0:
        mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    elif kind == 1:
        mask = (np.abs(u) <= a * 0.85) & (np.abs(v) <= b * 0.85)
    else:
        mask = (u / a) ** 2 + (v / b) ** 2 <= 1
        for _ in range(2):
            ox, oy = rng.uniform(-a, a), rng.uniform(-b, b)
            mask |= ((u - ox) / (a * 0.6)) ** 2 + ((v - oy) / (b * 0.6)) ** 2 <= 1
    return mask, (cx, cy)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int = 8) -> np.ndarray:
    coarse = rng.random((cells, cells))
    rep = int(np.ceil(size / cells))
    fine = np.kron(coarse, np.ones((rep, rep)))[:size, :size]
    # two box blurs make the blocks soft blotches
    for _ in range(2):
        fine = (fine + np.roll(fine, rep // 2, 0) + np.roll(fine, rep // 2, 1)) / 3
    return fine


#: ``standard`` is version 1's scenes, unchanged; ``hard`` adds what makes encoders matter
DIFFICULTIES = ("standard", "hard")


def _add_distractors(rng, xx, yy, layers, background, camouflaged, z_obj, n) -> int:
    """``n`` background-like distractors appended to ``layers``; how many are nearer than the
    object."""
    n_nearer = 0
    for _ in range(n):
        mask, _ = _shape_mask(rng, xx, yy, rng.uniform(0.08, 0.18))
        nearer = (not camouflaged) and rng.random() < 0.7
        z = rng.uniform(0.8, z_obj - 0.4) if nearer else rng.uniform(z_obj + 0.6, z_obj + 2.5)
        n_nearer += int(nearer)
        # background-like: the background's pattern, slightly shifted and re-lit
        app = Appearance(
            background.colour_a * rng.uniform(0.85, 1.1),
            background.colour_b * rng.uniform(0.85, 1.1),
            background.pattern,
            background.freq * rng.uniform(0.9, 1.1),
            background.angle + rng.uniform(-0.3, 0.3),
            background.phase + rng.uniform(0, np.pi),
        )
        layers.append((z, mask, app, False))
    return n_nearer


def _check_difficulty(difficulty: str) -> None:
    if difficulty not in DIFFICULTIES:
        raise DataError(
            f"synthetic difficulty '{difficulty}' is unknown; use one of {DIFFICULTIES}."
        )


def _add_clutter(rng, xx, yy, layers, bg_hue, radius, z_obj, n) -> int:
    """``n`` colourful, textured objects smaller than the salient one, at any depth, appended
    to ``layers``; how many are nearer than the object."""
    n_nearer = 0
    for _ in range(n):
        mask, _ = _shape_mask(rng, xx, yy, radius * rng.uniform(0.35, 0.6))
        app = _random_appearance(rng, bg_hue + rng.uniform(0.2, 0.8))
        z = rng.uniform(0.8, z_obj + 2.5)
        n_nearer += int(z < z_obj)
        layers.append((z, mask, app, False))
    return n_nearer


def _composite(rng, xx, yy, noise, layers, rgb, depth, label) -> tuple[np.ndarray, ...]:
    """Paint the layers far to near onto (rgb, depth, label), each with a random depth slope."""
    for z, mask, app, salient in sorted(layers, key=lambda layer: -layer[0]):
        slope = rng.uniform(-0.3, 0.3)
        depth = np.where(mask, z + slope * (xx - 0.5), depth)
        rgb = np.where(mask[..., None], app.render(xx, yy, noise), rgb)
        label = np.where(mask, salient, label)
    return rgb, depth, label


def make_scene(
    seed: int,
    index: int,
    size: int = 128,
    camouflage_ratio: float = 0.25,
    difficulty: str = "standard",
):
    """Render one scene: rgb uint8 (H, W, 3), depth uint16 (H, W), gt uint8 (H, W), meta.

    ``difficulty="hard"``: clutter that a colour contrast alone cannot reject. Plain scenes get
    2-4 extra *colourful* objects (their own hues and textures, smaller than the salient one,
    at any depth), so the salient object is the largest distinct object, a judgement over the
    whole image; object scales span a wider range; depth is twice as noisy. RGB still finds
    the salient object in plain scenes (largest distinct object) and depth still finds it in
    camouflaged ones (the nearest object), so the RGB-strong / depth-complementary imbalance
    and the camouflaged subset stay."""
    _check_difficulty(difficulty)
    hard = difficulty == "hard"
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    noise = _smooth_noise(rng, size)
    camouflaged = bool(rng.random() < camouflage_ratio)

    bg_hue = rng.random()
    background = _random_appearance(rng, bg_hue)
    rgb = background.render(xx, yy, noise)
    z_far, z_bottom = rng.uniform(7, 9.5), rng.uniform(3.5, 5)
    depth = z_far + (z_bottom - z_far) * yy  # ground plane: the bottom of the image is nearer
    label = np.zeros((size, size), dtype=bool)

    z_obj = rng.uniform(1.5, 2.5) if camouflaged else rng.uniform(2.0, 3.2)
    if camouflaged:
        obj_app = background  # wears the background: invisible in RGB, visible in depth
        n_distractors = int(rng.integers(0, 2))
    else:
        obj_hue = bg_hue + rng.uniform(0.3, 0.7)
        obj_app = _random_appearance(rng, obj_hue)
        n_distractors = int(rng.integers(1, 4))

    layers = []  # (z, mask, appearance, is_salient)
    radius = rng.uniform(0.16, 0.3) if hard else rng.uniform(0.14, 0.26)
    obj_mask, _ = _shape_mask(rng, xx, yy, radius)
    layers.append((z_obj, obj_mask, obj_app, True))
    n_nearer = _add_distractors(rng, xx, yy, layers, background, camouflaged, z_obj, n_distractors)
    n_clutter = 0 if (camouflaged or not hard) else int(rng.integers(2, 5))
    n_nearer += _add_clutter(rng, xx, yy, layers, bg_hue, radius, z_obj, n_clutter)
    n_distractors += n_clutter
    rgb, depth, label = _composite(rng, xx, yy, noise, layers, rgb, depth, label)

    rgb = np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1)
    sensor = _sensor_depth(rng, depth, noise_scale=2.0 if hard else 1.0)
    meta = {
        "stem": f"{index:05d}",
        "camouflaged": int(camouflaged),
        "n_distractors": n_distractors,
        "n_nearer": n_nearer,
        "object_depth": round(float(z_obj), 3),
        "gt_area": round(float(label.mean()), 4),
    }
    return (rgb * 255).round().astype(np.uint8), sensor, (label * 255).astype(np.uint8), meta


def _sensor_depth(rng: np.random.Generator, z: np.ndarray, noise_scale: float = 1.0) -> np.ndarray:
    """Half resolution, noise ~ z^2, holes at edges and in blobs; 16-bit, near = bright."""
    size = z.shape[0]
    low = z[::2, ::2]
    low = low + rng.normal(0, 1, low.shape) * 0.004 * noise_scale * low**2
    gy, gx = (
        np.abs(np.diff(low, axis=0, prepend=low[:1])),
        np.abs(np.diff(low, axis=1, prepend=low[:, :1])),
    )
    holes = ((gx + gy) / low > 0.2) & (rng.random(low.shape) < 0.5)
    ly, lx = np.mgrid[0 : low.shape[0], 0 : low.shape[1]]
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.integers(0, low.shape[0], size=2)
        holes |= (ly - cy) ** 2 + (lx - cx) ** 2 <= rng.integers(1, 4) ** 2
    z_min, z_max = 0.5, 10.0
    disparity = (1 / np.clip(low, z_min, z_max) - 1 / z_max) / (1 / z_min - 1 / z_max)
    stored = np.clip(np.round(disparity * 65535), 1, 65535).astype(np.uint16)
    stored[holes] = 0
    return np.kron(stored, np.ones((2, 2), dtype=np.uint16))[:size, :size]


def _write_scenes(
    folder: str,
    seed: int,
    indices: range,
    size: int,
    camouflage_ratio: float,
    difficulty: str = "standard",
) -> list[dict]:
    """Render and save scenes ``indices`` into ``folder``; their meta rows, in order."""
    tmp, rows = Path(folder), []
    for i in indices:
        rgb, depth, gt, meta = make_scene(seed, i, size, camouflage_ratio, difficulty)
        stem = meta["stem"]
        Image.fromarray(rgb).save(tmp / "RGB" / f"{stem}.jpg", quality=95)
        Image.fromarray(depth).save(tmp / "depth" / f"{stem}.png")
        Image.fromarray(gt).save(tmp / "GT" / f"{stem}.png")
        rows.append(meta)
    return rows


def _run_worker(
    tmp: Path, seed: int, size: int, ratio: float, start: int, step: int, n: int, difficulty: str
) -> list[dict]:
    cmd = [sys.executable, "-m", "solo_rgbd.data.synthetic", str(tmp), str(seed), str(size)]
    cmd += [repr(ratio), str(start), str(step), str(n), difficulty]
    env = {**os.environ, _PARENT: str(os.getpid())}  # the worker ends when this process does
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise DataError(
            f"a synthetic-data worker failed ({proc.stderr.strip().splitlines()[-1:]}); retry "
            "with workers=1 (solo-rgbd data synth --workers 1)."
        )
    return json.loads(proc.stdout)


def _clear_target(out: Path, n: int, size: int, difficulty: str, overwrite: bool) -> None:
    """Check the settings and that ``out`` may be written (emptied with ``overwrite``)."""
    _check_difficulty(difficulty)
    if n < 1 or size < 16:
        raise DataError(f"synthetic dataset needs n >= 1 and size >= 16 (got n={n}, size={size}).")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(
                f"'{out}' already exists and is not empty; choose another folder or pass "
                "--overwrite to replace it."
            )
        import shutil

        shutil.rmtree(out)


def write_synthetic(
    out: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    size: int = 128,
    camouflage_ratio: float = 0.25,
    overwrite: bool = False,
    workers: int | None = None,
    difficulty: str = "standard",
) -> Path:
    """Write ``n`` scenes to ``out`` in the standard layout (RGB/, depth/, GT/, meta.csv).

    The folder is built under a temporary name and renamed when complete, so an interrupted
    run leaves nothing half-written. ``out`` must not exist or be empty unless ``overwrite``.
    Scenes are rendered by ``workers`` processes (default: every core); each scene draws from
    its own RNG, so the files are the same for any number of workers.
    """
    out = Path(out).expanduser()
    _clear_target(out, n, size, difficulty, overwrite)
    remove_leftovers(out)  # a generation killed earlier (callers hold the cache's lock)
    with atomic_dir(out) as tmp:
        for sub in ("RGB", "depth", "GT"):
            (tmp / sub).mkdir()
        workers = max(1, min(workers or os.cpu_count() or 1, n // 32))  # >= 32 scenes each

        def write(k: int) -> list[dict]:
            if workers == 1:
                return _write_scenes(str(tmp), seed, range(n), size, camouflage_ratio, difficulty)
            # worker processes started clean (python -m), whatever the caller's __main__
            return _run_worker(tmp, seed, size, camouflage_ratio, k, workers, n, difficulty)

        with ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(write, k) for k in range(workers)]
            progress_while(jobs, n, lambda: len(os.listdir(tmp / "GT")), "generating pairs")
            parts = [job.result() for job in jobs]
        rows = sorted((r for part in parts for r in part), key=lambda r: r["stem"])
        with open(tmp / "meta.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=META_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        info = {
            "generator": "solo-rgbd synthetic",
            "version": SYNTH_VERSION,
            "n": n,
            "seed": seed,
            "size": size,
            "camouflage_ratio": camouflage_ratio,
            "difficulty": difficulty,
            "depth_polarity": "near=bright (invert_depth=false)",
        }
        (tmp / "synth.json").write_text(json.dumps(info, indent=2))
    return out


def read_meta(root: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Per-stem metadata from ``<root>/meta.csv`` ({} when the file is absent)."""
    path = Path(root) / "meta.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["stem"]: row for row in csv.DictReader(f)}


_PARENT = "SOLO_RGBD_GENERATOR_PID"


def _exit_with_parent() -> None:
    """A worker ends when the process that started it is gone (killed, say), so a killed
    generation leaves no worker behind: a thread watches the parent's id (passed by the
    parent: one killed before the worker started would otherwise go unnoticed)."""
    import threading
    import time

    parent = int(os.environ.get(_PARENT) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":  # a worker: folder seed size ratio start step n difficulty
    _exit_with_parent()
    _dir, _seed, _size, _ratio, _start, _step, _n, _difficulty = sys.argv[1:9]
    _rows = _write_scenes(
        _dir,
        int(_seed),
        range(int(_start), int(_n), int(_step)),
        int(_size),
        float(_ratio),
        _difficulty,
    )
    print(json.dumps(_rows))
