"""Find RGB / depth / GT files of an RGB-D dataset on disk and pair them by file stem.

Accepted layouts (folder names are matched case-insensitively)::

    <root>/RGB/*.jpg       <root>/depth/*.png       <root>/GT/*.png        (most benchmarks)
    <root>/Image/*         <root>/Depth/*           <root>/Mask/*
    <root>/images/*        <root>/depths/*          <root>/masks/*
    <root>/train_images/*  <root>/train_depth/*     <root>/train_masks/*   (DCF training set)
    <root>/test_images/*   <root>/test_depth/*      <root>/test_masks/*    (DCF test sets)

Any of ``.jpg .jpeg .png .bmp .tif .tiff`` per modality (depth also ``.npy``). GT is optional:
pretraining is label-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from solo_rgbd.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEPTH_EXTS = IMAGE_EXTS + (".npy",)

FOLDER_ALIASES: dict[str, tuple[str, ...]] = {
    "rgb": ("rgb", "image", "images", "img", "imgs", "train_images", "test_images", "rgb_left"),
    "depth": ("depth", "depths", "train_depth", "test_depth", "depth_maps", "disparity"),
    "gt": ("gt", "mask", "masks", "train_masks", "test_masks", "label", "labels"),
}


@dataclass
class PairList:
    """The pairs found under one root, plus what could not be paired."""

    root: Path
    folders: dict[str, Path]
    stems: list[str]
    rgb: dict[str, Path]
    depth: dict[str, Path]
    gt: dict[str, Path] = field(default_factory=dict)
    rgb_without_depth: list[str] = field(default_factory=list)
    depth_without_rgb: list[str] = field(default_factory=list)
    missing_gt: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def has_gt(self) -> bool:
        return "gt" in self.folders

    def __len__(self) -> int:
        return len(self.stems)


def _files_by_stem(folder: Path, exts: tuple[str, ...]) -> tuple[dict[str, Path], list[str]]:
    files: dict[str, Path] = {}
    duplicates: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(
            f"cannot list the dataset folder '{folder}' ({exc.strerror}); check that it exists "
            "and is readable."
        ) from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_file = entry.is_file()  # follows links
        except OSError as exc:
            raise DataError(
                f"cannot read '{entry.path}' ({exc.strerror}): a broken or looping symbolic "
                "link? Fix or remove it."
            ) from None
        if not is_file:
            if entry.is_symlink() and not os.path.exists(entry.path):
                raise DataError(
                    f"'{entry.path}' is a symbolic link that leads nowhere (broken, or a loop); "
                    "fix or remove it."
                )
            continue
        path = Path(entry.path)
        if path.suffix.lower() not in exts:
            continue
        if path.stem in files:
            duplicates.append(f"{folder.name}/{path.stem} ({files[path.stem].name}, {path.name})")
            continue
        files[path.stem] = path
    return files, duplicates


def find_folders(root: Path) -> dict[str, Path]:
    """Map 'rgb' / 'depth' / 'gt' to the sub-folders of ``root`` that hold them."""
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    found: dict[str, Path] = {}
    for modality, aliases in FOLDER_ALIASES.items():
        for alias in aliases:
            if alias in subdirs:
                found[modality] = subdirs[alias]
                break
    return found


def _names(stems: list[str], limit: int = 10) -> str:
    shown = ", ".join(stems[:limit])
    more = f" and {len(stems) - limit} more" if len(stems) > limit else ""
    return shown + more


def _modality_folders(root: Path) -> dict[str, Path]:
    """The RGB / depth (/ GT) folders of a dataset root, or a DataError saying what is wrong."""
    if not root.exists():
        raise DataError(
            f"dataset root '{root}' does not exist. Check the path (data.path / data.roots) or "
            "create a synthetic dataset with 'solo-rgbd data synth DIR'."
        )
    if not root.is_dir():
        raise DataError(f"dataset root '{root}' is a file, not a folder of RGB/depth sub-folders.")
    folders = find_folders(root)
    if "rgb" not in folders or "depth" not in folders:
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) or ["(none)"]
        missing = [m for m in ("rgb", "depth") if m not in folders]
        accepted = "; ".join(f"{m}: {'/'.join(FOLDER_ALIASES[m][:4])}" for m in missing)
        raise DataError(
            f"no recognisable RGB/depth pair under '{root}': no {' or '.join(missing)} folder "
            f"(sub-folders found: {', '.join(present)}). Accepted names ({accepted}, "
            "case-insensitive). Point the path at the folder that holds the modality folders."
        )
    return folders


def discover_pairs(root: str | os.PathLike[str], strict: bool = True) -> PairList:
    """Pair RGB, depth (and GT when present) files under ``root`` by shared stem.

    With ``strict`` (the default), RGB files without a depth partner are an error that lists
    them; otherwise they are left out and reported in :attr:`PairList.rgb_without_depth`.
    """
    root = Path(root).expanduser()
    folders = _modality_folders(root)
    rgb, dup_r = _files_by_stem(folders["rgb"], IMAGE_EXTS)
    depth, dup_d = _files_by_stem(folders["depth"], DEPTH_EXTS)
    gt: dict[str, Path] = {}
    dup_g: list[str] = []
    if "gt" in folders:
        gt, dup_g = _files_by_stem(folders["gt"], IMAGE_EXTS)
    stems = sorted(set(rgb) & set(depth))
    pairs = PairList(
        root=root,
        folders=folders,
        stems=stems,
        rgb=rgb,
        depth=depth,
        gt=gt,
        rgb_without_depth=sorted(set(rgb) - set(depth)),
        depth_without_rgb=sorted(set(depth) - set(rgb)),
        missing_gt=sorted(set(stems) - set(gt)) if gt or "gt" in folders else [],
        duplicates=dup_r + dup_d + dup_g,
    )
    if not stems:
        raise DataError(
            f"no RGB/depth pair under '{root}': {len(rgb)} RGB file(s) in "
            f"'{folders['rgb'].name}' and {len(depth)} depth file(s) in '{folders['depth'].name}' "
            "share no file stem. RGB 'x.jpg' pairs with depth 'x.png'; rename the files so "
            "their stems match."
        )
    if pairs.duplicates:
        raise DataError(
            f"{len(pairs.duplicates)} file stem(s) under '{root}' appear twice in one folder, so "
            f"the pairing is ambiguous: {_names(pairs.duplicates, 6)}. Keep one file per stem "
            "(delete or move the other format)."
        )
    if strict and pairs.rgb_without_depth:
        n = len(pairs.rgb_without_depth)
        raise DataError(
            f"{n} RGB file(s) under '{folders['rgb']}' have no depth partner in "
            f"'{folders['depth']}': {_names(pairs.rgb_without_depth)}. Add the depth maps, "
            "remove those RGB files, or set data.strict_pairs=false to skip them."
        )
    return pairs
