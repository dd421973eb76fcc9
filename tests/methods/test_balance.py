"""``method_kwargs.balance`` in MBCF runs (issue 45): OGM-GE scales the dominant modality's
encoder gradient from the inter loss, alpha = 0 changes nothing, modality dropout zeroes its
share, and every mode resumes bit for bit."""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import pytest
import torch

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from tests.conftest import tiny_overrides


class SecondGrads(pl.Callback):
    """The encoders' gradients of the second optimizer step (at the first, the fused queue
    is still empty: no negatives, no inter loss)."""

    def __init__(self) -> None:
        self.grads: dict[str, list[torch.Tensor]] = {}

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if trainer.global_step == 1:
            for s in ("rgb", "depth"):
                params = module.encoders[s].parameters()
                self.grads[s] = [p.grad.detach().clone() for p in params if p.grad is not None]


def _run(tmp_path, name: str, *extra: str, callbacks=None, **over: str):
    base = {
        "method_kwargs.schedule": "one_stage",
        "method_kwargs.one_stage_epochs": "2",
        "method_kwargs.queue_size": "16",
        "trainer.limit_train_batches": "2",
        "trainer.deterministic": "true",
        "run_name": name,
        **over,
    }
    cfg = compose("pretrain", [*tiny_overrides(tmp_path, **base), *extra])
    return run_pretrain(cfg, extra_callbacks=callbacks)


def _rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("loss_inter")]


def test_ogm_scales_the_dominant_encoders_inter_gradient_by_its_coefficient(tmp_path):
    """With lambda_intra = 0 every encoder gradient comes through the fusion: the dominant
    modality's is OGM's coefficient times the one ``none`` gets, the other's is unchanged."""
    grads = {}
    for mode in ("none", "ogm"):
        rec = SecondGrads()
        run = _run(
            tmp_path, mode, "trainer.max_epochs=1", callbacks=[rec],
            **{"method_kwargs.lambda_intra": "0", "method_kwargs.balance.mode": mode,
               "method_kwargs.balance.alpha": "4"},
        )  # fmt: skip
        grads[mode] = rec.grads
    first = _rows(run)[1]  # the second step's row
    coef = {s: float(first[f"balance_coef_{s}"]) for s in ("rgb", "depth")}
    dominant = min(coef, key=coef.get)
    assert coef[dominant] < 0.9 and coef[{"rgb": "depth", "depth": "rgb"}[dominant]] == 1.0
    assert float(first[f"contribution_{dominant}"]) > 0
    for s in ("rgb", "depth"):
        for g_ogm, g_none in zip(grads["ogm"][s], grads["none"][s], strict=True):
            # the same gradient times the coefficient, up to float rounding in the backward
            scale = float(g_none.abs().max())
            torch.testing.assert_close(g_ogm, coef[s] * g_none, rtol=1e-3, atol=1e-4 * scale)
    norm = {m: torch.cat([g.flatten() for g in grads[m][dominant]]).norm() for m in grads}
    assert norm["ogm"] < 0.9 * norm["none"]


def test_ogm_with_alpha_0_is_bit_identical_to_no_balancing(tmp_path):
    none = _run(tmp_path, "none")
    ogm = _run(tmp_path, "ogm0", **{"method_kwargs.balance.mode": "ogm",
                                    "method_kwargs.balance.alpha": "0"})  # fmt: skip
    a = torch.load(none / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(ogm / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert {float(r["balance_coef_rgb"]) for r in _rows(ogm)} == {1.0}


def test_modality_dropout_zeroes_exactly_its_share_each_step(tmp_path):
    run = _run(tmp_path, "drop", **{"method_kwargs.balance.mode": "modality_dropout",
                                    "method_kwargs.balance.p": "0.5"})  # fmt: skip
    rows = _rows(run)
    assert len(rows) == 4  # 2 epochs x 2 steps, batch 8: 4 samples lose one modality
    assert {(float(r["dropped_rgb"]), float(r["dropped_depth"])) for r in rows} == {(0.25, 0.25)}


@pytest.mark.parametrize(
    "balance", [["mode=ogm", "noise=0.5", "alpha=2"], ["mode=modality_dropout", "p=0.25"]]
)
def test_every_balance_mode_resumes_bit_exactly(tmp_path, balance):
    """OGM-GE's noise and the dropout draws come from the checkpointed generator."""
    extra = [f"method_kwargs.balance.{b}" for b in balance]
    whole = _run(tmp_path, "whole", *extra)
    _run(tmp_path, "cut", *extra, "trainer.max_epochs=1")
    cut = _run(tmp_path, "cut", *extra, "resume=last")
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("rgb", "depth"):
        assert (whole / "encoders" / f"{name}.safetensors").read_bytes() == (
            cut / "encoders" / f"{name}.safetensors"
        ).read_bytes()
