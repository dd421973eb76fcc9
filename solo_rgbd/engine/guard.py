"""Stop (or skip) at the first non-finite loss or gradient norm, before the optimizer applies it.

The check runs in ``on_before_optimizer_step`` (after backward, before the update). With
``policy=stop`` the run ends with :class:`~solo_rgbd.errors.NonFiniteError` naming the step,
every loss term and the lr; the last checkpoint and export on disk are from before the bad step
(checkpoints and exports refuse non-finite weights). With ``policy=skip`` the bad step's
gradients are dropped (the optimizer leaves every parameter untouched) up to ``max_skips`` times
in a row before stopping as above. A skipped step leaves no trace: the state its forward pass
and momentum update changed (BatchNorm running statistics, the queues and their pointers, the
momentum encoders: every buffer and every parameter without a gradient) is put back as it was
before the step. That costs one copy of that state per checked step, under ``policy=skip`` only.

Host syncs: ``every_n_steps=1`` reads one boolean per optimizer step. With ``every_n_steps=N >
1`` and ``policy=stop`` every step is still checked, on the device (the first bad step is kept
in a device tensor, no sync), and the flag is read once every N steps: a step that does not
check costs no host sync, and the error still names the first bad step. ``policy=skip`` must
decide before the update, so it checks (and syncs) only every N-th step.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from solo_rgbd.engine.contract import NamesLossTerms
from solo_rgbd.engine.metrics import to_floats
from solo_rgbd.errors import NonFiniteError

POLICIES = ("stop", "skip")


def total_grad_norm(parameters) -> torch.Tensor:
    """The global L2 norm of the gradients (torch's fused multi-tensor kernels, no host sync)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)


class NonFiniteGuard(pl.Callback):
    def __init__(self, policy: str = "stop", max_skips: int = 10, every_n_steps: int = 1) -> None:
        if policy not in POLICIES:
            raise ValueError(f"nan_guard.policy must be one of {POLICIES}, not {policy!r}")
        self.policy, self.max_skips, self.every = policy, int(max_skips), max(1, int(every_n_steps))
        self.loss: torch.Tensor | None = None
        self.skipped_in_a_row = 0
        #: stop policy, every_n_steps > 1: the first bad step so far (-1: none), on the device
        self.first_bad: torch.Tensor | None = None
        #: skip policy: the state a step changes besides the optimizer's (restored if skipped)
        self._before: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._skipped_now = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before, self._skipped_now = None, False
        if self.policy == "skip" and trainer.global_step % self.every == 0:
            self._before = [(t, t.detach().clone()) for t in _side_state(pl_module)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._skipped_now and self._before is not None:
            with torch.no_grad():
                for tensor, saved in self._before:
                    tensor.copy_(saved)
        self._before, self._skipped_now = None, False

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        self.loss = loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        read_now = trainer.global_step % self.every == 0
        deferred = self.policy == "stop" and self.every > 1
        if not (read_now or deferred):
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]
        norm = total_grad_norm(params)
        loss = self.loss if self.loss is not None else torch.zeros((), device=norm.device)
        finite = torch.isfinite(loss) & torch.isfinite(norm.to(loss.device))
        if deferred:
            if self.first_bad is None:
                self.first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            step = torch.full_like(self.first_bad, trainer.global_step)
            self.first_bad = torch.where(~finite & (self.first_bad < 0), step, self.first_bad)
            if not read_now:
                return  # no host sync on this step
            first = int(self.first_bad)  # the one sync every N steps
            if first < 0:
                return
            raise NonFiniteError(
                non_finite_message(
                    trainer,
                    pl_module,
                    f"non-finite loss or gradient norm, first at step {first} (checked every "
                    f"{self.every} steps; nan_guard.every_n_steps=1 checks each step)",
                )
            )
        if bool(finite):
            self.skipped_in_a_row = 0
            return
        if self.policy == "skip" and self.skipped_in_a_row < self.max_skips:
            self.skipped_in_a_row += 1
            optimizer.zero_grad(set_to_none=True)  # the optimizer now skips every parameter
            self._skipped_now = True  # and the step's side effects are undone at its end
            rank_zero_warn(
                f"non-finite loss or gradient at step {trainer.global_step}; step skipped "
                f"({self.skipped_in_a_row}/{self.max_skips} in a row)."
            )
            return
        raise NonFiniteError(
            non_finite_message(
                trainer,
                pl_module,
                f"non-finite loss or gradient norm (grad norm {float(norm):.4g})",
            )
        )


def _side_state(module: torch.nn.Module) -> list[torch.Tensor]:
    """What a step changes outside the optimizer: buffers (BatchNorm statistics, queues and
    their pointers) and parameters trained by no gradient (momentum encoders)."""
    frozen = [p for p in module.parameters() if not p.requires_grad]
    return [*module.buffers(), *frozen]


def non_finite_message(trainer, pl_module, what: str) -> str:
    """One paragraph: the step, every loss term and the lr, and what to try."""
    terms = to_floats(dict(pl_module.loss_terms) if isinstance(pl_module, NamesLossTerms) else {})
    lrs = sorted({float(g["lr"]) for opt in trainer.optimizers for g in opt.param_groups})
    detail = ", ".join(
        [f"{k} {v:.4g}" for k, v in terms.items()] + ["lr " + ", ".join(f"{v:.4g}" for v in lrs)]
    )
    return (
        f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): {what}; "
        f"{detail}. Nothing from this step was saved; the last checkpoint and encoders/ are "
        "from before it. Try a lower lr (for mbcf method_kwargs.stage1_lr / stage2_lr / "
        "one_stage_lr), optimizer.warmup_epochs, trainer.precision=32-true, or "
        "nan_guard.policy=skip to skip isolated bad steps."
    )
