"""Issue 31: the mask's mechanism and the reliance measures, in seconds each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from solo_rgbd.nn.fusion import MASK_MODES, FusionEncoder
from solo_rgbd.nn.reliance import batchnorm_stats_kept, mask_diagnostics, modality_reliance


def _accuracy(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T
    return (logits.argmax(1) == torch.arange(q.shape[0])).float().mean()


def test_a_fusion_that_ignores_depth_has_zero_depth_reliance():
    torch.manual_seed(0)
    rgb, depth = torch.randn(32, 16), torch.randn(32, 16)
    keys = rgb.clone()  # the keys are the RGB inputs: RGB alone identifies each sample
    out = modality_reliance(lambda r, d: r + 0 * d, rgb, depth, keys, _accuracy, step=3)
    assert out["reliance_depth_zero"] == 0 and out["reliance_depth_shuffle"] == 0
    assert out["reliance_rgb_shuffle"] > 0.8 and out["depth_reliance_share"] == 0


def test_a_fusion_that_uses_only_depth_has_all_its_reliance_on_depth():
    torch.manual_seed(0)
    rgb, depth = torch.randn(32, 16), torch.randn(32, 16)
    out = modality_reliance(lambda r, d: d + 0 * r, rgb, depth, depth.clone(), _accuracy, step=3)
    assert out["reliance_rgb_zero"] == 0 and out["reliance_rgb_shuffle"] == 0
    assert out["reliance_depth_shuffle"] > 0.8 and out["depth_reliance_share"] == 1
    both = modality_reliance(lambda r, d: r + d, rgb, depth, rgb + depth, _accuracy, step=3)
    assert 0.3 < float(both["depth_reliance_share"]) < 0.7  # both matter


def test_no_reliance_at_all_is_nan_not_a_made_up_share():
    x = torch.randn(8, 4)
    out = modality_reliance(lambda r, d: torch.ones(8, 4), x, x, x, _accuracy, step=0)
    assert math.isnan(float(out["depth_reliance_share"]))


def test_a_masked_channels_attention_gets_exactly_zero_gradient():
    torch.manual_seed(0)
    fus = FusionEncoder(16, 8, dim=8, proj_hidden_dim=8, proj_output_dim=4, attention_reduction=4)
    z, att = fus(torch.rand(6, 16, 2, 2), torch.rand(6, 8, 2, 2))
    att["a_rgb"].retain_grad()
    z.pow(2).sum().backward()
    masked = att["keep"] == 0
    assert masked.sum() == 6 * 8  # half of each sample's channels
    assert torch.all(att["a_rgb"].grad[masked] == 0)
    assert torch.count_nonzero(att["a_rgb"].grad[~masked]) > 0


def test_at_initialisation_the_mask_is_nearly_the_same_channels_for_every_sample():
    """The output bias decides most entries: a near-fixed channel drop, not a per-sample one."""
    torch.manual_seed(0)
    fus = FusionEncoder(512, 512, dim=64, proj_hidden_dim=64, proj_output_dim=16,
                        attention_reduction=8)  # fmt: skip
    # like a network's maps: channel levels differ far more than samples do
    feats = torch.relu(torch.randn(1, 512, 1, 1) + 0.3 * torch.randn(64, 512, 3, 3))
    _, att = fus(feats, feats)
    diag = mask_diagnostics(att["a_rgb"], att["logits_rgb"], att["keep"])
    assert diag["mask_jaccard_samples"] > 0.9
    random_halves = FusionEncoder(512, 512, dim=64, proj_hidden_dim=64, proj_output_dim=16,
                                  mask_mode="random")  # fmt: skip
    _, att = random_halves(feats, feats)
    diag = mask_diagnostics(att["a_rgb"], att["logits_rgb"], att["keep"])
    assert 0.28 < diag["mask_jaccard_samples"] < 0.39  # two random halves: about 1/3


@pytest.mark.parametrize("mode", MASK_MODES)
def test_every_mode_masks_its_share(mode):
    torch.manual_seed(0)
    fus = FusionEncoder(8, 4, dim=8, proj_hidden_dim=8, proj_output_dim=4, mask_mode=mode)
    _, att = fus(torch.rand(5, 8, 2, 2), torch.rand(5, 4, 2, 2))
    expected = 0 if mode == "none" else 4
    assert torch.all((att["keep"] == 0).sum(1) == expected)
    if mode == "static_random":  # one half for every sample, held in the state dict
        assert torch.all(att["keep"] == att["keep"][0]) and "static_keep" in fus.state_dict()
    if mode == "bottomk":  # the least attended half
        masked = att["a_rgb"].masked_fill(att["keep"] == 1, float("-inf")).amax(1)
        kept = att["a_rgb"].masked_fill(att["keep"] == 0, float("inf")).amin(1)
        assert torch.all(masked <= kept)


def _toy(mode: str, steps: int = 150, c: int = 32, b: int = 64) -> tuple[float, float]:
    """RGB with a quarter of its channels carrying the sample's identity, depth weak; InfoNCE
    between two noisy views through the fusion. Returns (attention share on the informative
    channels, final loss)."""
    torch.manual_seed(0)
    fus = FusionEncoder(c, c, dim=32, proj_hidden_dim=32, proj_output_dim=16,
                        attention_reduction=4, pool="before", mask_mode=mode)  # fmt: skip
    opt = torch.optim.Adam(fus.parameters(), lr=0.05)
    inf = c // 4

    def view(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.cat([ids + 0.3 * torch.randn(b, inf), torch.randn(b, c - inf)], 1)
        d = torch.cat([0.3 * ids[:, :4] + torch.randn(b, 4), torch.randn(b, c - 4)], 1)
        return r[:, :, None, None], d[:, :, None, None]

    for _ in range(steps):
        ids = torch.randn(b, inf)  # the samples' identities
        (r1, d1), (r2, d2) = view(ids), view(ids)
        z1, att = fus(r1, d1)
        z2, _ = fus(r2, d2)
        logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / 0.1
        loss = F.cross_entropy(logits, torch.arange(b))
        opt.zero_grad()
        loss.backward()
        opt.step()
    a = att["a_rgb"].detach()
    return float((a[:, :inf].sum(1) / a.sum(1)).mean()), float(loss.detach())


def test_bottomk_sharpens_the_attention_onto_the_signal_and_topk_ratchets():
    """A channel the loss favours climbs, is masked by top-k and stops getting gradient just
    above the threshold; masking the least attended half lets the attention sharpen."""
    share_bottom, loss_bottom = _toy("bottomk")
    share_top, loss_top = _toy("topk")
    assert share_bottom > 0.9  # a quarter of the channels hold > 90 % of the attention
    assert share_top < 0.6 and loss_top > 3.5  # near chance (log 64 = 4.16): the signal masked
    assert loss_bottom < 2.0


def test_diagnostic_forwards_leave_batchnorm_statistics_as_they_were():
    fus = FusionEncoder(8, 4, dim=8, proj_hidden_dim=8, proj_output_dim=4)
    before = {k: v.clone() for k, v in fus.state_dict().items()}
    z, _ = fus(torch.rand(5, 8, 2, 2), torch.rand(5, 4, 2, 2))  # the step's own forward
    after_step = {k: v.clone() for k, v in fus.state_dict().items()}
    assert any(not torch.equal(before[k], after_step[k]) for k in before)
    with batchnorm_stats_kept(fus):
        fus(torch.rand(5, 8, 2, 2), torch.zeros(5, 4, 2, 2))
    assert all(torch.equal(after_step[k], v) for k, v in fus.state_dict().items())
    z.sum().backward()  # the step's graph is intact
