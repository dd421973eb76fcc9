"""Reading a folder made by ``solo-rgbd data pack`` (``data.format=litdata``): the
:class:`ShardStore`, and the checks that give a task the split and labels it asked for.

Training reads items by index through LitData's ``StreamingDataset``: the order, the rank
shares and the resume position are the library's own sampler's (:mod:`solo_rgbd.data.sampler`),
so a run from the chunks draws exactly the pairs of the same run from the folder, and a killed
run resumes at the same pair. LitData's own shuffle (chunk-wise, for sequential streaming from
object stores) would draw a different order than the folder path, so it is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from solo_rgbd.data.decode import DecodeSpec, LabelPolicy
from solo_rgbd.data.pairstore import ArrayStore, PairMeta, StoreView
from solo_rgbd.data.shards import MANIFEST, SHARD_FORMAT, check_count, label_name
from solo_rgbd.errors import DataError
from solo_rgbd.utils.paths import is_component
from solo_rgbd.utils.safe_load import read_json_file


class ShardStore:
    """The pairs of a packed folder, read by index through LitData (a
    :class:`~solo_rgbd.data.pairstore.PairStore`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = open_manifest(self.path)
        self.dataset = _streaming(self.path)
        self._meta: PairMeta | None = None

    @property
    def meta(self) -> PairMeta:
        """Stems, sources, GT paths and meta rows from the manifest; the original sizes from
        the items (read once, when first asked)."""
        if self._meta is None:
            m = self.manifest
            sizes = m.get("sizes") or [  # packs from before the manifest held them
                (int(it["h"]), int(it["w"]))
                for it in map(self.dataset.__getitem__, range(len(self)))
            ]
            sizes = [(int(h), int(w)) for h, w in sizes]
            self._meta = PairMeta(m["stems"], m["sources"], sizes, m["gt_paths"], m["meta"])
        return self._meta

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def has_gt(self) -> bool:
        return bool(self.manifest["has_gt"])

    @property
    def split(self) -> str:
        return str(self.manifest.get("split", "train"))  # packs from before it: training pairs

    @property
    def labels(self) -> str:
        return str(self.manifest.get("labels", "saliency"))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return int(self.manifest["n"])

    def batch(self, idx: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """{'rgb': uint8, 'depth': int16 code, 'gt'?: uint8, 'index': long}, as every store's."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        items = [self.dataset[int(i)] for i in idx]
        keys = ("rgb", "depth", "gt") if self.has_gt else ("rgb", "depth")
        out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in keys}
        out["index"] = idx
        return out

    def subset(self, idx: Sequence[int]) -> StoreView:
        return StoreView(self, torch.as_tensor(list(idx), dtype=torch.long))

    def materialize(self, device: str | torch.device = "cpu") -> ArrayStore:
        """Every pair read into tensors (a test or validation set, or for the GPU)."""
        pairs = self.batch(range(len(self)))
        store = ArrayStore(pairs["rgb"], pairs["depth"], pairs.get("gt"), self.meta)
        return store.materialize(device)


def open_manifest(path: Path) -> dict:
    """The pack's manifest, or a clear error for an unfinished, foreign or damaged folder."""
    partial_dir = path.with_name(path.name + ".partial")
    if not (path / MANIFEST).exists():
        if partial_dir.exists() and not path.exists():
            hint = "it is an unfinished pack: rerun the same 'solo-rgbd data pack' to complete it"
        elif (path / "index.json").exists():
            hint = "it holds LitData chunks but no solo_rgbd.json: use 'solo-rgbd data pack'"
        else:
            hint = "it is not a packed dataset: make one with 'solo-rgbd data pack SRC OUT'"
        raise DataError(f"data.path='{path}' cannot be read as data.format=litdata: {hint}.")
    manifest = read_json_file(path / MANIFEST, "a pack's manifest", "pack the dataset again")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("n"), int):
        raise DataError(
            f"'{path / MANIFEST}' is damaged (not a pack's manifest); pack the dataset again."
        )
    if manifest.get("format") != SHARD_FORMAT:
        raise DataError(
            f"'{path}' was packed by another version of solo-rgbd (format "
            f"{manifest.get('format')}, this one reads {SHARD_FORMAT}); pack the dataset again "
            "with 'solo-rgbd data pack'."
        )
    check_count(path, int(manifest["n"]), _check_chunks(path))
    return manifest


def _check_chunks(path: Path) -> list[dict]:
    """Every chunk named in LitData's index.json is there with its full length; returns the
    index's chunks."""
    index = read_json_file(path / "index.json", "LitData's index", "pack the dataset again")
    chunks = index.get("chunks") if isinstance(index, dict) else None
    if not isinstance(chunks, list) or not all(
        isinstance(c, dict)
        and is_component(c.get("filename"))
        and isinstance(c.get("chunk_bytes"), int)
        for c in chunks
    ):
        raise DataError(
            f"'{path}/index.json' is damaged (no list of chunks); pack the dataset again."
        )
    for chunk in chunks:
        file = path / chunk["filename"]
        have = file.stat().st_size if file.exists() else -1
        if have != int(chunk["chunk_bytes"]):
            state = "is missing" if have < 0 else f"has {have} of {chunk['chunk_bytes']} bytes"
            raise DataError(
                f"the chunk '{file}' {state} (truncated or damaged); copy it again from where "
                "the pack was made, or pack the dataset again."
            )
    return chunks


def _streaming(path: Path):
    import litdata

    try:
        return litdata.StreamingDataset(str(path))
    except Exception as exc:  # noqa: BLE001 - LitData's own errors vary by version
        raise DataError(
            f"LitData {litdata.__version__} cannot open '{path}' ({exc}); pack the dataset "
            "again with this installation's 'solo-rgbd data pack'."
        ) from None


def is_pack(path: str | Path) -> bool:
    """A folder made by ``solo-rgbd data pack`` (finished)."""
    return (Path(path) / MANIFEST).is_file()


def open_pack(spec: DecodeSpec) -> ShardStore:
    """The pack at ``spec.roots[0]``, checked against what the task reads: the image size, the
    labels it needs, and its split and label policy (:func:`check_pack_fits`)."""
    if len(spec.roots) != 1:
        raise DataError(
            f"a packed dataset is one folder, not {len(spec.roots)} roots; pack them together "
            "with 'solo-rgbd data pack ROOT1 ROOT2 OUT'."
        )
    path = spec.roots[0].path
    pairs = ShardStore(path)
    if pairs.size != spec.size:
        raise DataError(
            f"'{path}' was packed at {pairs.size} px and this run reads {spec.size} px; set "
            f"data.image_size={pairs.size} (a task's image_size) or pack it again with --size "
            f"{spec.size}."
        )
    if spec.require_gt and not pairs.has_gt:
        raise DataError(f"'{path}' was packed without GT maps; this task needs labels.")
    check_pack_fits(pairs, spec.split, spec.labels if spec.require_gt else None)
    return pairs


def check_pack_fits(pairs: ShardStore, split: str | None, labels: LabelPolicy | None) -> None:
    """A task gets the split and the labels it asked for, or a clear error, never another
    (``None``: any split, labels not read)."""
    if split is not None and pairs.split != split:
        raise DataError(
            f"'{pairs.path}' was packed as the {pairs.split} split and this task reads its "
            f"{split} split; pack the {split} folder with 'solo-rgbd data pack SRC OUT --split "
            f"{split}' and point the task at it."
        )
    wanted = label_name(labels) if labels is not None else pairs.labels
    if pairs.has_gt and wanted != pairs.labels:
        how = f"--labels {wanted}" if wanted else "(a label reader packs cannot hold)"
        raise DataError(
            f"'{pairs.path}' holds {pairs.labels} labels and this task reads its labels another "
            f"way; pack it again with {how}, or use data.format=folder."
        )
