"""Readers for RGB images, depth maps and GT masks, each returning numpy arrays.

Depth is the modality datasets get wrong most often, so its reader is explicit:

- 8-bit PNG/JPEG/BMP -> uint8; 16-bit PNG/TIFF -> uint16 (read as is: never through
  ``Image.convert('L')``, which clips 16-bit values at 255); float TIFF and ``.npy`` -> float32;
- grey depth stored as a 3-channel image -> its first channel; a colour-mapped depth (channels
  that differ) is an error; ``.npy`` of shape (1, H, W) or (H, W, 1) is squeezed;
- 0 (or a non-finite value) is a hole: kept as missing, it stays 0 after normalisation;
- :func:`normalize_depth` min-max scales the valid pixels of each image to [0, 1] with the
  library's one convention, **near = 1**; ``invert=True`` flips datasets that store far = white.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from solo_rgbd.errors import DataError

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ConstantDepthError(DataError):
    """A depth map whose valid pixels all have the same value (it carries no geometry)."""


@dataclass(frozen=True)
class DepthInfo:
    dtype: str  # 'uint8', 'uint16', 'float32', ...
    min: float  # over valid (non-hole) pixels
    max: float
    hole_fraction: float


#: PIL's own default guard against decompression bombs (about 89 M pixels)
DEFAULT_MAX_PIXELS = 89_478_485


def max_pixels() -> int:
    """The largest image (in pixels) solo-rgbd decodes: ``SOLO_RGBD_MAX_PIXELS``, else PIL's
    default. Raising it raises PIL's own guard with it."""
    raw = os.environ.get("SOLO_RGBD_MAX_PIXELS", "")
    limit = int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_PIXELS
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit
    return limit


def _too_large(path: Path, kind: str, size: str) -> DataError:
    return DataError(
        f"{kind} file '{path}' declares {size} pixels, more than the {max_pixels():,} that "
        "solo-rgbd decodes (a guard against decompression bombs: a small file that expands to "
        "gigabytes). If the image is genuine, resize it, or raise the limit with "
        "SOLO_RGBD_MAX_PIXELS=N."
    )


def open_image(path: str | os.PathLike[str], kind: str) -> Image.Image:
    """Open and decode an image, with one-paragraph errors for unreadable or oversized files."""
    return _open(Path(path), kind)


def _open(path: Path, kind: str) -> Image.Image:
    limit = max_pixels()
    try:
        img = Image.open(path)
        w, h = img.size
        if w * h > limit:
            raise _too_large(path, kind, f"{w} x {h} = {w * h:,}")
        img.load()
    except Image.DecompressionBombError as exc:
        found = re.search(r"(\d+) pixels", str(exc))
        raise _too_large(path, kind, f"{int(found.group(1)):,}" if found else "too many") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"cannot read {kind} file '{path}': {exc}. The file is truncated, empty or not an "
            "image; re-export it or remove this pair from the dataset."
        ) from exc
    return img


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3).

    RGBA loses its alpha channel, grayscale is repeated to three channels, 16-bit images are
    scaled to 8 bits, palette/CMYK images are converted.
    """
    path = Path(path)
    img = _open(path, "RGB")
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(arr / max(arr.max(), 1.0) * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("L", "LA", "1"):
        arr = np.array(img.convert("L"))
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")  # RGBA (alpha dropped), P, CMYK, YCbCr
    return np.array(img, dtype=np.uint8)


def read_depth_raw(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a depth map in its stored dtype as (H, W): uint8, uint16, int32 or float32."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"cannot read depth file '{path}': {exc}. Save depth as a 2-D numpy array "
                "with np.save, or as a 16-bit PNG."
            ) from exc
    else:
        img = _open(path, "depth")
        if img.mode in ("P", "1", "CMYK", "YCbCr"):
            img = img.convert("L")
        arr = np.asarray(img)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]  # (1, H, W) or (H, W, 1)
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        colour = arr[..., :3]
        if not (
            np.array_equal(colour[..., 0], colour[..., 1])
            and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            raise DataError(
                f"depth file '{path}' has 3 different colour channels: it looks like a "
                "colour-mapped visualisation, not a depth map. Use the dataset's raw depth "
                "(one channel, e.g. 16-bit PNG); grey depth saved as RGB is fine (equal channels)."
            )
        arr = colour[..., 0]  # grey depth stored as RGB: the channels are equal
    if arr.ndim != 2:
        raise DataError(
            f"depth file '{path}' has shape {arr.shape}; expected a single-channel (H, W) map."
        )
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(
            f"depth file '{path}' holds {arr.dtype} values; depth must be real numbers (integer "
            "or float). Save the real depth map, e.g. np.save(path, depth.real.astype('float32'))."
        )
    if arr.dtype == np.int32 and arr.size and arr.max() <= 65535 and arr.min() >= 0:
        arr = arr.astype(np.uint16)  # PIL's mode 'I' for 16-bit PNGs
    return arr


def depth_info(raw: np.ndarray) -> DepthInfo:
    valid = np.isfinite(raw) & (raw > 0)
    if not valid.any():
        return DepthInfo(str(raw.dtype), 0.0, 0.0, 1.0)
    values = raw[valid]
    return DepthInfo(str(raw.dtype), float(values.min()), float(values.max()), 1 - valid.mean())


def normalize_depth(raw: np.ndarray, invert: bool = False, path: str = "<array>") -> np.ndarray:
    """Min-max scale the valid pixels of ``raw`` to [0, 1], near = 1; holes stay 0.

    ``invert`` is for datasets that store far as bright (1 - d on valid pixels). Raises
    :class:`ConstantDepthError` when the valid pixels hold a single value.
    """
    raw = raw.astype(np.float64)
    valid = np.isfinite(raw) & (raw > 0)
    out = np.zeros(raw.shape, dtype=np.float32)
    if not valid.any():
        raise ConstantDepthError(
            f"depth map '{path}' has no valid pixel (all zero or non-finite). Remove this pair "
            "or set data.on_constant_depth=zeros to keep it with an empty depth."
        )
    lo, hi = raw[valid].min(), raw[valid].max()
    if hi <= lo:
        raise ConstantDepthError(
            f"depth map '{path}' is constant ({lo:g} on every valid pixel), so it carries no "
            "geometry. Remove this pair or set data.on_constant_depth=zeros to keep it."
        )
    scaled = (raw[valid] - lo) / (hi - lo)
    out[valid] = 1.0 - scaled if invert else scaled
    return out


def read_depth(path: str | os.PathLike[str], invert: bool = False) -> tuple[np.ndarray, DepthInfo]:
    """Read and normalise a depth map: float32 (H, W) in [0, 1], near = 1, holes 0."""
    raw = read_depth_raw(path)
    return normalize_depth(raw, invert=invert, path=str(path)), depth_info(raw)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a GT mask as uint8 (H, W) in [0, 255]; 0/1 masks and 16-bit masks are rescaled."""
    path = Path(path)
    img = _open(path, "GT")
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img).astype(np.float64)
        top = arr.max()
        return (arr / top * 255).astype(np.uint8) if top > 0 else arr.astype(np.uint8)
    arr = np.array(img.convert("L"))
    if arr.size and arr.max() == 1:
        arr = arr * 255  # masks stored as {0, 1}
    return arr.astype(np.uint8)
