"""Quiet by default: a run shows its progress bar, the stage switch, one line on its checkpoints
(size and stall per save) and where it was written.

Lightning's start-up banner (accelerator lines, tips), known-harmless library warnings and
Lightning's INFO lines are hidden unless ``verbose=true``.
"""

from __future__ import annotations

import logging
import warnings

_HARMLESS = (
    r".*isinstance\(treespec, LeafSpec\).*",  # lightning's _pytree on torch >= 2.10
    r".*overridden `on_after_batch_transfer` in `LightningModule`.*",  # augmentation lives there
    r".*is smaller than the logging interval.*",  # we log on our own schedule
    r".*does not have many workers which may be a bottleneck.*",  # batches come from RAM/GPU
    r".*`weights_only` was not set.*",
)


def set_verbosity(verbose: bool) -> None:
    if verbose:
        return
    import lightning.pytorch  # noqa: F401  (it sets its loggers' levels on import)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)
