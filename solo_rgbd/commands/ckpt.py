"""``solo-rgbd ckpt info PATH``: what a checkpoint holds, part by part."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from solo_rgbd.errors import CheckpointError, ConfigError

USAGE = "usage: solo-rgbd ckpt info PATH [PATH ...]"


def run_ckpt_command(args: Sequence[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(
            USAGE + "\n\nPrint what a checkpoint holds (weights, momentum copies, queues, "
            "optimizer, callbacks, other), each tensor counted once."
        )
        return 0 if args else 2
    if args[0] != "info" or len(args) < 2:
        raise ConfigError(f"unknown ckpt command {' '.join(args)!r}; {USAGE}.")
    from solo_rgbd.engine.ckpt_info import describe

    for path in args[1:]:
        if not Path(path).is_file():
            raise CheckpointError(
                f"checkpoint '{path}' does not exist or is not a file; pass a run's "
                "checkpoints/last.ckpt."
            )
        try:
            text = describe(path)
        except CheckpointError:
            raise
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"'{path}' loads, but it is not a checkpoint solo-rgbd wrote: a part has the "
                f"wrong type ({type(exc).__name__}: {exc}). Pass a run's checkpoints/last.ckpt."
            ) from None
        print(text)
    return 0
