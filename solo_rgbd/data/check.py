"""``solo-rgbd data check PATH...``: is this RGB-D dataset usable, and what is odd in it?

Reports per root: the folders found, the pair count, files without a partner, unreadable
files, RGB/depth/GT size mismatches, depth dtypes and value range, constant depth maps, and a
polarity hint. A root is *usable* when it has pairs, every RGB has a depth partner, and every
paired file decodes with a non-constant depth map.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from solo_rgbd.data.layout import discover_pairs
from solo_rgbd.data.readers import (
    ConstantDepthError,
    depth_info,
    normalize_depth,
    read_depth_raw,
    read_mask,
    read_rgb,
)
from solo_rgbd.errors import DataError


@dataclass
class RootReport:
    root: str
    usable: bool = False
    error: str | None = None
    folders: dict[str, str] = field(default_factory=dict)
    pairs: int = 0
    rgb_without_depth: list[str] = field(default_factory=list)
    depth_without_rgb: list[str] = field(default_factory=list)
    missing_gt: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    unreadable_reasons: dict[str, str] = field(default_factory=dict)  # file -> why
    constant_depth: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    depth_dtypes: dict[str, int] = field(default_factory=dict)
    depth_range: tuple[float, float] | None = None
    mean_hole_fraction: float = 0.0
    polarity_hint: str = ""

    def problems(self) -> list[str]:
        out = []
        if self.error:
            out.append(self.error)
        if self.rgb_without_depth:
            out.append(
                f"{len(self.rgb_without_depth)} RGB file(s) without depth: "
                f"{_few(self.rgb_without_depth)}"
            )
        if self.unreadable:
            first = next(iter(self.unreadable_reasons.values()), "")
            out.append(
                f"{len(self.unreadable)} unreadable file(s): {_few(self.unreadable)}"
                + (f" (the first: {first})" if first else "")
            )
        if self.constant_depth:
            out.append(
                f"{len(self.constant_depth)} constant depth map(s): {_few(self.constant_depth)}"
            )
        return out

    def warnings(self) -> list[str]:
        out = []
        if self.depth_without_rgb:
            out.append(
                f"{len(self.depth_without_rgb)} depth file(s) without RGB (ignored): "
                f"{_few(self.depth_without_rgb)}"
            )
        if self.missing_gt:
            out.append(
                f"{len(self.missing_gt)} pair(s) without GT (fine for pretraining, "
                f"not for SOD): {_few(self.missing_gt)}"
            )
        if self.size_mismatch:
            out.append(
                f"{len(self.size_mismatch)} pair(s) with RGB/depth/GT of different sizes "
                f"(depth and GT are resized to the RGB frame): {_few(self.size_mismatch)}"
            )
        return out


def _few(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _read_pair(report: RootReport, pairs, stem: str) -> tuple:
    """(rgb, raw depth, gt) of one pair, None for each unreadable file (noted in ``report``)."""
    rgb = raw = gt = None
    try:
        rgb = read_rgb(pairs.rgb[stem])
    except DataError as exc:
        _unreadable(report, pairs.rgb[stem], exc)
    try:
        raw = read_depth_raw(pairs.depth[stem])
    except DataError as exc:
        _unreadable(report, pairs.depth[stem], exc)
    if stem in pairs.gt:
        try:
            gt = read_mask(pairs.gt[stem])
        except DataError as exc:
            _unreadable(report, pairs.gt[stem], exc)
    return rgb, raw, gt


def check_root(root: str | Path, invert_depth: bool = False) -> RootReport:
    report = RootReport(root=str(root))
    try:
        pairs = discover_pairs(root, strict=False)
    except DataError as exc:
        report.error = str(exc)
        return report
    report.folders = {k: str(v) for k, v in pairs.folders.items()}
    report.pairs = len(pairs)
    report.rgb_without_depth = pairs.rgb_without_depth
    report.depth_without_rgb = pairs.depth_without_rgb
    report.missing_gt = pairs.missing_gt
    dtypes: Counter[str] = Counter()
    lo, hi, holes = np.inf, -np.inf, []
    inside_minus_outside, bottom_minus_top = [], []
    for stem in pairs.stems:
        rgb, raw, gt = _read_pair(report, pairs, stem)
        if raw is None:
            continue
        info = depth_info(raw)
        dtypes[info.dtype] += 1
        holes.append(info.hole_fraction)
        try:
            depth = normalize_depth(raw, invert=invert_depth, path=str(pairs.depth[stem]))
        except ConstantDepthError:
            report.constant_depth.append(str(pairs.depth[stem]))
            continue
        lo, hi = min(lo, info.min), max(hi, info.max)
        shapes = {raw.shape} | ({rgb.shape[:2]} if rgb is not None else set())
        if gt is not None:
            shapes.add(gt.shape)
        if len(shapes) > 1:
            report.size_mismatch.append(stem)
        valid = depth > 0
        if gt is not None and gt.shape == depth.shape:
            fg, bg = valid & (gt > 127), valid & (gt <= 127)
            if fg.any() and bg.any():
                inside_minus_outside.append(depth[fg].mean() - depth[bg].mean())
        rows = max(1, depth.shape[0] // 5)
        top, bottom = depth[:rows][valid[:rows]], depth[-rows:][valid[-rows:]]
        if top.size and bottom.size:
            bottom_minus_top.append(bottom.mean() - top.mean())
    report.depth_dtypes = dict(dtypes)
    report.depth_range = (float(lo), float(hi)) if np.isfinite(lo) else None
    report.mean_hole_fraction = float(np.mean(holes)) if holes else 0.0
    report.polarity_hint = _polarity_hint(inside_minus_outside, bottom_minus_top, invert_depth)
    report.usable = report.pairs > 0 and not report.problems()
    return report


def _polarity_hint(inside: list[float], bottom: list[float], inverted: bool) -> str:
    flag = "invert_depth=true" if inverted else "invert_depth=false"
    if inside:
        share = float(np.mean(np.array(inside) > 0))
        basis = f"salient objects brighter than their surroundings in {share:.0%} of GT pairs"
    elif bottom:
        share = float(np.mean(np.array(bottom) > 0))
        basis = f"image bottoms brighter than tops in {share:.0%} of pairs (no GT)"
    else:
        return "no hint (no valid depth)"
    if share >= 0.6:
        return f"near = bright with {flag}, as the library expects ({basis})"
    if share <= 0.4:
        other = "invert_depth=false" if inverted else "invert_depth=true"
        return f"near looks DARK with {flag}: set {other} for this dataset ({basis})"
    return f"unclear ({basis})"


def format_report(report: RootReport) -> str:
    lines = [f"{report.root}: {'usable' if report.usable else 'NOT usable'}"]
    if report.folders:
        lines.append(
            "  folders: " + ", ".join(f"{k}={Path(v).name}" for k, v in report.folders.items())
        )
        lines.append(f"  pairs: {report.pairs}")
    if report.depth_dtypes:
        lines.append(
            "  depth dtypes: " + ", ".join(f"{k} x{v}" for k, v in report.depth_dtypes.items())
        )
    if report.depth_range:
        lines.append(
            f"  depth values (valid pixels): {report.depth_range[0]:g} .. "
            f"{report.depth_range[1]:g}; holes {report.mean_hole_fraction:.1%} on average"
        )
    if report.polarity_hint:
        lines.append(f"  polarity: {report.polarity_hint}")
    lines += [f"  problem: {p}" for p in report.problems()]
    lines += [f"  warning: {w}" for w in report.warnings()]
    return "\n".join(lines)


def report_dict(report: RootReport) -> dict:
    d = asdict(report)
    d["problems"], d["warnings"] = report.problems(), report.warnings()
    return d


def _unreadable(report: RootReport, path, exc: DataError) -> None:
    report.unreadable.append(str(path))
    report.unreadable_reasons[str(path)] = str(exc)


def polarity_shares(store, limit: int = 64) -> dict[str, tuple[float, int]]:
    """Per root (``store.meta.sources``) of a store with GT: the share of up to ``limit``
    evenly spread pairs whose salient pixels are nearer (brighter, after ``invert_depth``) than
    their surroundings, and how many pairs had both; the rule of :func:`check_root`'s hint."""
    from solo_rgbd.data.decode import decode_depth

    sources = store.meta.sources or [""] * len(store)
    shares: dict[str, tuple[float, int]] = {}
    for root in sorted(set(sources)):
        rows = [i for i, s in enumerate(sources) if s == root]
        picked = [rows[round(j * (len(rows) - 1) / max(1, limit - 1))] for j in range(limit)]
        batch = store.batch(sorted(set(picked)) if len(rows) > limit else rows)
        depth, gt = decode_depth(batch["depth"]), batch["gt"].float()
        valid = depth > 0
        fg, bg = valid & (gt > 127), valid & (gt <= 127)
        both = fg.flatten(1).any(1) & bg.flatten(1).any(1)
        if not bool(both.any()):
            continue
        inside = (depth * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp_min(1)
        outside = (depth * bg).flatten(1).sum(1) / bg.flatten(1).sum(1).clamp_min(1)
        brighter = (inside > outside)[both]
        shares[root] = (float(brighter.float().mean()), int(both.sum()))
    return shares


def check_polarity(store, what: str, invert_depth: bool, enabled: bool = True) -> None:
    """Depth polarity of a set with GT, by :func:`polarity_shares`: near = dark in at most 40 %
    of the pairs (clear) stops with a :class:`DataError` naming the set and ``invert_depth``;
    between 40 and 60 % (unclear) is one warning line. A set without GT is not checked (said
    once per set); ``enabled=False`` (``data.check_polarity=false``) skips the check."""
    from solo_rgbd.utils.console import say

    if not enabled:
        return
    if not store.has_gt:
        if what not in _unchecked:
            _unchecked.add(what)
            say(f"note: {what} has no GT, so its depth polarity is not checked.", err=True)
        return
    flag = f"invert_depth={'true' if invert_depth else 'false'}"
    other = f"invert_depth={'false' if invert_depth else 'true'}"
    for root, (share, n) in polarity_shares(store).items():
        where = f"{what} ('{root}')" if root and root not in what else what
        basis = f"salient objects are nearer than their surroundings in {share:.0%} of {n} pairs"
        if share <= 0.4:
            raise DataError(
                f"the depth of {where} looks inverted with {flag}: {basis}, where near = bright "
                f"is what the library expects (solo-rgbd data check says the same). Set "
                f"{other} for this set (data.{other}, or on its entry in data.roots / "
                "test_sets), or, for a set where the objects really are farther than their "
                "surroundings, data.check_polarity=false."
            )
        if share < 0.6:
            say(
                f"warning: the depth polarity of {where} is unclear with {flag} ({basis}).",
                err=True,
            )


_unchecked: set[str] = set()
