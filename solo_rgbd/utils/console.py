"""One way to print a line while a run may be showing a progress bar.

Lightning's ``LightningModule.print`` hands its keyword arguments to the active bar's writer
(``tqdm.write`` takes no ``flush``), so a harmless ``flush=True`` crashed the README's main
job at MBCF's stage switch. ``say`` takes no such arguments: it prints one line above any tqdm
bar (``tqdm.write`` clears and redraws every bar on stdout and stderr), plainly when no bar
is shown (a pipe, a SLURM log, ``enable_progress_bar=false``, Rich's bar), then flushes.
Lightning-free on purpose (a layer-0 block): signal handlers and plain ``nn.Module`` code
may call it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["end_bars", "progress_while", "say"]


def _rank() -> int:
    """This process's global rank: torch.distributed's once it is up, else the launcher's
    environment (torchrun, SLURM, Lightning's DDP launcher), else 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def say(message: str, *, err: bool = False, all_ranks: bool = False) -> None:
    """Print ``message`` as one line (on rank 0 unless ``all_ranks``) to stdout, or stderr with
    ``err``, above any progress bar, and flush it."""
    if not all_ranks and _rank() != 0:
        return
    stream = sys.stderr if err else sys.stdout
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with lightning
        print(message, file=stream, flush=True)
        return
    # tqdm.write: every open bar is cleared, the line written, the bars redrawn
    tqdm.write(message, file=stream)
    stream.flush()


def end_bars() -> None:
    """Close every open tqdm bar (each ends its own line), so that what is printed next starts
    on a line of its own: a run stopped by a signal or an error leaves its bar mid-line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def progress_while(jobs: list, total: int, count, what: str) -> None:
    """A bar of ``count()`` out of ``total`` (shown once it has run 2 s) until the futures
    ``jobs`` are done: progress of work done in other processes."""
    from concurrent.futures import wait

    from tqdm import tqdm

    with tqdm(total=total, desc=what, unit="pair", delay=2, leave=False) as bar:
        while wait(jobs, timeout=0.5)[1]:
            bar.update(count() - bar.n)
