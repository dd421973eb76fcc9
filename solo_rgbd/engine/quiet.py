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


class _NotCreating(logging.Filter):
    """MLflow's first run in a store: "Experiment with name ... not found. Creating it."."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not found. Creating it" not in record.getMessage()


def set_verbosity(verbose: bool, load: bool = True) -> None:
    """Quiet (the default) or Lightning's own INFO lines (``verbose=true``), for this process
    from here on: every run the engine starts sets it from its config. ``load=False`` leaves
    Lightning unimported (the CLI, before the config is checked); the engine's call then
    sets the levels again once Lightning is loaded (it sets its loggers' levels on import)."""
    if load:
        import lightning.pytorch  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        return
    mlflow_logger = logging.getLogger("lightning.pytorch.loggers.mlflow")
    if not any(isinstance(f, _NotCreating) for f in mlflow_logger.filters):
        mlflow_logger.addFilter(_NotCreating())
    for pattern in _HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)
