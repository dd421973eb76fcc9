import math

import pytest
import torch

from solo_rgbd.nn.fusion import FusionEncoder, attention_entropy, topk_channel_mask


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.3])
def test_topk_mask_zeroes_exactly_floor_ratio_c_highest_channels(ratio):
    torch.manual_seed(0)
    scores = torch.rand(5, 10)
    mask = topk_channel_mask(scores, ratio)
    k = math.floor(ratio * 10)
    assert mask.shape == scores.shape
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert ((1 - mask).sum(1) == k).all()
    for row in range(5):
        masked = scores[row][mask[row] == 0]
        kept = scores[row][mask[row] == 1]
        if k:
            assert masked.min() > kept.max()  # the highest scores are the masked ones


def test_ratio_zero_masks_nothing_and_ties_break_by_index():
    scores = torch.tensor([[0.5, 0.9, 0.9, 0.9, 0.1, 0.2]])
    assert topk_channel_mask(scores, 0.0).eq(1).all()
    mask = topk_channel_mask(scores, 0.34)  # floor(2.04) = 2 of three tied 0.9s
    assert mask.tolist() == [[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    with pytest.raises(ValueError):
        topk_channel_mask(scores, 1.5)


def test_masked_rgb_channels_contribute_nothing_to_the_fused_embedding():
    """Move content inside one RGB channel without changing its mean (so its attention score
    and the mask stay the same): the real forward ignores a masked channel and not a kept one."""
    torch.manual_seed(0)
    enc = FusionEncoder(
        8, 6, dim=16, proj_hidden_dim=16, proj_output_dim=4, mask_ratio=0.5, attention_reduction=2
    )
    f_rgb, f_depth = torch.randn(3, 8, 4, 4), torch.randn(3, 6, 4, 4)
    z, att = enc(f_rgb, f_depth)
    assert z.shape == (3, 4) and ((1 - att["keep"]).sum(1) == 4).all()

    def moved(channel_of: list[int]) -> torch.Tensor:
        g = f_rgb.clone()
        for b, c in enumerate(channel_of):
            g[b, c, 0, 0] += 5.0  # the channel's mean (GAP) is unchanged
            g[b, c, 3, 3] -= 5.0
        return g

    masked = [int((att["keep"][b] == 0).nonzero()[0]) for b in range(3)]
    kept = [int((att["keep"][b] == 1).nonzero()[0]) for b in range(3)]
    z_masked, att_masked = enc(moved(masked), f_depth)
    assert torch.equal(att_masked["keep"], att["keep"])
    torch.testing.assert_close(z_masked, z)  # masked: no effect at all
    z_kept, _ = enc(moved(kept), f_depth)
    assert (z_kept - z).abs().amax(1).min() > 1e-4  # kept: every sample's embedding moves
    # and the gradient reaching a masked channel's pixels comes only through its GAP score
    x = f_rgb.clone().requires_grad_(True)
    enc(x, f_depth)[0].pow(2).sum().backward()
    for b, c in enumerate(masked):
        grad = x.grad[b, c]
        torch.testing.assert_close(grad, grad.mean().expand_as(grad))  # spatially constant


def test_mask_can_be_switched_off_for_keys():
    enc = FusionEncoder(
        8, 6, dim=16, proj_hidden_dim=16, proj_output_dim=4, mask_ratio=0.5, attention_reduction=2
    )
    _, att = enc(torch.randn(2, 8, 3, 3), torch.randn(2, 6, 3, 3), apply_mask=False)
    assert att["keep"].eq(1).all()


def test_attention_entropy_is_one_for_uniform_scores():
    assert attention_entropy(torch.full((2, 16), 0.3)).item() == pytest.approx(1.0)
    peaked = torch.full((1, 16), 1e-6)
    peaked[0, 0] = 1.0
    assert attention_entropy(peaked).item() < 0.05
