"""Which modalities a model sees, as named streams, and how a view becomes their inputs.

A stream is named by its input: ``rgb`` (3 channels), ``depth`` (1) or ``rgbd`` (the two
concatenated, 4 channels: early fusion). A :class:`Streams` value is a tuple of such names; the
modes users pick with ``method_kwargs.rgbd_mode`` are

- ``two_stream``: an RGB and a depth encoder (the paper's setting);
- ``early_fusion``: one encoder on 4-channel RGB-D;
- ``rgb_only`` / ``depth_only``: one modality.

Every per-stream method builds one encoder per stream and feeds it ``streams.inputs(rgb,
depth)[name]``; exports are named by stream, so loading them needs no mode either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch

#: stream name -> input channels
CHANNELS = {"rgb": 3, "depth": 1, "rgbd": 4}
MODES = {
    "two_stream": ("rgb", "depth"),
    "early_fusion": ("rgbd",),
    "rgb_only": ("rgb",),
    "depth_only": ("depth",),
}


@dataclass(frozen=True)
class Streams:
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.names not in MODES.values():
            raise ValueError(
                f"streams {list(self.names)} are not one of the modes "
                f"{ {m: list(n) for m, n in MODES.items()} }"
            )

    @classmethod
    def of_mode(cls, mode: str) -> Streams:
        if mode not in MODES:
            raise ValueError(f"rgbd_mode '{mode}' is unknown; use one of {', '.join(MODES)}")
        return cls(MODES[mode])

    @classmethod
    def of_names(cls, names: Iterable[str]) -> Streams:
        """The streams of a set of names in canonical order (e.g. an export's encoders)."""
        wanted = set(names)
        for ordered in MODES.values():
            if set(ordered) == wanted:
                return cls(ordered)
        raise ValueError(f"encoders {sorted(wanted)} do not form streams; modes: {MODES}")

    @property
    def mode(self) -> str:
        return next(m for m, n in MODES.items() if n == self.names)

    @property
    def channels(self) -> dict[str, int]:
        return {s: CHANNELS[s] for s in self.names}

    def inputs(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each stream's input from a view: rgb (B, 3, H, W), depth (B, 1, H, W) ->
        {name: (B, C, H, W)}."""
        sources = {"rgb": lambda: rgb, "depth": lambda: depth}
        sources["rgbd"] = lambda: torch.cat([rgb, depth], dim=1)
        return {s: sources[s]() for s in self.names}

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)


T = TypeVar("T")


def network_pair(encoders: Mapping[str, T]) -> tuple[T, T | None]:
    """A two-input network's (first, second) encoders from stream-keyed ones: (rgb, depth) for
    two streams, (rgbd, None) for early fusion."""
    if "rgbd" in encoders:
        return encoders["rgbd"], None
    return encoders["rgb"], encoders.get("depth")
