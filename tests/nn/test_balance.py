"""Encoder-level balancing (nn/balance.py): OGM's coefficient, the gradient scaling, the
contributions and modality dropout, on tensors small enough to check by hand."""

from __future__ import annotations

import math

import pytest
import torch

from solo_rgbd.nn.balance import (
    Balancer,
    dropout_masks,
    in_batch_score,
    modality_contributions,
    ogm_coefficients,
    scale_grad,
)
from solo_rgbd.nn.queue import EMPTY, NO_INSTANCE, KeyQueue


def test_ogm_scales_only_the_dominant_modality_by_one_minus_tanh():
    contrib = {"rgb": torch.tensor(0.3), "depth": torch.tensor(0.1)}
    coef = ogm_coefficients(contrib, alpha=0.5)
    assert coef["rgb"].item() == pytest.approx(1 - math.tanh(0.5 * (3.0 - 1.0)))  # 0.238
    assert coef["depth"].item() == 1.0
    swapped = ogm_coefficients({"rgb": contrib["depth"], "depth": contrib["rgb"]}, 0.5)
    assert swapped["depth"].item() == pytest.approx(coef["rgb"].item())
    assert swapped["rgb"].item() == 1.0
    # a modality that hurts (negative contribution) is floored, never divides by zero
    floored = ogm_coefficients({"rgb": torch.tensor(0.2), "depth": torch.tensor(-0.5)}, 1e-3)
    assert 0 <= floored["rgb"].item() < 1 and floored["depth"].item() == 1.0
    assert all(c.item() == 1.0 for c in ogm_coefficients(contrib, alpha=0.0).values())


def test_scale_grad_multiplies_the_gradient_and_is_bit_identical_at_one():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (scale_grad(x, torch.tensor(0.25)) * w).sum().backward()
    assert torch.equal(x.grad, w * 0.25)
    x.grad = None
    out = scale_grad(x, torch.tensor(1.0))
    assert torch.equal(out, x)
    (out * w).sum().backward()
    assert torch.equal(x.grad, w)  # bit for bit


def test_scale_grad_noise_has_the_gradient_spread_and_comes_from_the_global_generator():
    x = torch.zeros(20_000, requires_grad=True)
    w = torch.randn(20_000)
    torch.manual_seed(3)
    (scale_grad(x, torch.tensor(1.0), torch.tensor(0.5)) * w).sum().backward()
    noise = x.grad - w
    assert noise.std().item() == pytest.approx(0.5 * w.std().item(), rel=0.05)
    first = x.grad.clone()
    x.grad = None
    torch.manual_seed(3)
    (scale_grad(x, torch.tensor(1.0), torch.tensor(0.5)) * w).sum().backward()
    assert torch.equal(x.grad, first)  # the seed decides it: a resume restores the generator


def test_contributions_measure_the_score_lost_when_one_modality_is_moved():
    """An embedding that reads only depth: moving RGB costs nothing, moving depth costs the
    whole in-batch score."""
    torch.manual_seed(0)
    depth = torch.randn(8, 4, 2, 2)
    rgb = torch.randn(8, 4, 2, 2)

    def embed(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return d.flatten(1)

    keys = depth.flatten(1)
    contrib = modality_contributions(embed, rgb, depth, keys, tau=0.05)
    base = in_batch_score(keys, keys, 0.05)
    assert contrib["rgb"].item() == 0.0
    assert contrib["depth"].item() == pytest.approx(
        base.item() - in_batch_score(depth.roll(1, 0).flatten(1), keys, 0.05).item()
    )
    assert contrib["depth"].item() > 0.5
    coef = ogm_coefficients(contrib, alpha=0.5)
    assert coef["depth"].item() < 1e-3 and coef["rgb"].item() == 1.0  # depth dominates


@pytest.mark.parametrize("p, batch", [(0.5, 8), (0.25, 10), (1.0, 6), (0.0, 5)])
def test_modality_dropout_zeroes_exactly_its_share(p, batch):
    keep = dropout_masks(batch, p, "both")
    n = math.floor(p * batch + 0.5)
    dropped_rgb, dropped_depth = (int((keep[s] == 0).sum()) for s in ("rgb", "depth"))
    assert dropped_rgb + dropped_depth == n
    assert dropped_rgb == n // 2
    assert not bool(((keep["rgb"] == 0) & (keep["depth"] == 0)).any())  # never both
    assert int((dropout_masks(batch, p, "depth")["depth"] == 0).sum()) == n
    assert int((dropout_masks(batch, p, "depth")["rgb"] == 0).sum()) == 0


def test_the_balancer_zeroes_whole_maps_and_logs_the_share():
    torch.manual_seed(1)
    rgb, depth = torch.randn(8, 3, 2, 2) + 5, torch.randn(8, 3, 2, 2) + 5
    r, d, stats = Balancer("modality_dropout", p=0.5, drop="rgb")(None, rgb, depth, None)
    gone = (r.flatten(1) == 0).all(1)
    assert int(gone.sum()) == 4 and torch.equal(r[~gone], rgb[~gone]) and torch.equal(d, depth)
    assert stats["dropped_rgb"].item() == 0.5 and stats["dropped_depth"].item() == 0.0
    r, d, stats = Balancer("none")(None, rgb, depth, None)
    assert r is rgb and d is depth and stats == {}


def test_a_queue_that_starts_empty_leaves_its_unwritten_slots_out():
    queue = KeyQueue(6, 2, start_empty=True)
    assert (queue.ids == EMPTY).all()
    assert queue.left_out(torch.tensor([0, 1]), instance_aware=True).all()
    queue.enqueue(torch.randn(2, 2), torch.tensor([0, 5]))
    drop = queue.left_out(torch.tensor([0, 1]), instance_aware=True)
    assert drop[:, 2:].all()  # never written
    assert drop[0].tolist()[:2] == [True, False] and drop[1].tolist()[:2] == [False, False]
    assert queue.left_out(torch.tensor([0, 1]), instance_aware=False)[:, :2].sum() == 0
    # a MoCo queue keeps MoCo's random initial negatives
    moco = KeyQueue(6, 2)
    assert (moco.ids == NO_INSTANCE).all() and moco.left_out(torch.tensor([0]), False) is None
