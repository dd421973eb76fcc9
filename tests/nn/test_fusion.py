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


def test_masked_rgb_channels_receive_no_gradient_through_the_fused_path():
    torch.manual_seed(0)
    enc = FusionEncoder(
        8, 6, dim=16, proj_hidden_dim=16, proj_output_dim=4, mask_ratio=0.5, attention_reduction=2
    )
    f_rgb = torch.randn(3, 8, 4, 4, requires_grad=True)
    f_depth = torch.randn(3, 6, 4, 4, requires_grad=True)
    z, att = enc(f_rgb, f_depth)
    assert z.shape == (3, 4) and att["keep"].shape == (3, 8)
    assert ((1 - att["keep"]).sum(1) == 4).all()
    z.pow(2).sum().backward()
    per_channel = f_rgb.grad.abs().sum(dim=(2, 3))  # (B, C)
    masked = att["keep"] == 0
    # masked channels: no gradient from the conv path (only via the attention MLP input)
    enc2 = FusionEncoder(
        8, 6, dim=16, proj_hidden_dim=16, proj_output_dim=4, mask_ratio=0.5, attention_reduction=2
    )
    enc2.load_state_dict(enc.state_dict())
    f_rgb2 = f_rgb.detach().clone().requires_grad_(True)
    with torch.no_grad():
        a_rgb = enc2.att_rgb(f_rgb2)
    keep = topk_channel_mask(a_rgb, 0.5)
    fused = enc2.conv(
        torch.cat(
            [
                f_rgb2 * (a_rgb * keep)[:, :, None, None],
                f_depth.detach() * enc2.att_depth(f_depth.detach())[:, :, None, None],
            ],
            1,
        )
    )
    enc2.projector(fused.mean((2, 3))).pow(2).sum().backward()
    conv_grad = f_rgb2.grad.abs().sum(dim=(2, 3))
    assert torch.all(conv_grad[masked] == 0) and torch.all(conv_grad[~masked] > 0)
    assert torch.all(per_channel[~masked] > 0)


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
