"""The fast views against the kornia pipeline: the same crop, flip and jitter distributions,
the same pixels for the same box, and RGB-D kept aligned."""

import kornia.augmentation as K
import numpy as np
import pytest
import torch
from kornia.geometry.transform import crop_and_resize

from solo_rgbd.augment import fast

N = 3000
QUANTILES = torch.linspace(0.05, 0.95, 19)


def _kornia_boxes(h, w, scale):
    crop = K.RandomResizedCrop((32, 32), scale=scale, cropping_mode="resample")
    crop(torch.zeros(N, 1, h, w))
    src = crop._params["src"]  # (N, 4, 2) box corners
    x0, y0 = src[:, 0, 0], src[:, 0, 1]
    bw, bh = src[:, 1, 0] - x0 + 1, src[:, 2, 1] - y0 + 1
    return torch.stack([x0, y0, bw, bh], 1)


@pytest.mark.parametrize("h, w, scale", [(72, 72, (0.2, 1.0)), (60, 90, (0.08, 1.0))])
def test_crop_boxes_follow_korniaS_distribution(h, w, scale):
    torch.manual_seed(0)
    ours, ref = fast.crop_boxes(N, h, w, scale, torch.device("cpu")), _kornia_boxes(h, w, scale)
    for stat in (
        lambda b: b[:, 2] * b[:, 3] / (h * w),  # area fraction
        lambda b: (b[:, 2] / b[:, 3]).log(),  # log aspect ratio
        lambda b: (b[:, 0] + b[:, 2] / 2) / w,  # box centre
    ):
        q_ours, q_ref = stat(ours).quantile(QUANTILES), stat(ref).quantile(QUANTILES)
        assert (q_ours - q_ref).abs().max() < 0.04
    assert (ours[:, 0] + ours[:, 2] <= w).all() and (ours[:, 1] + ours[:, 3] <= h).all()


def test_the_same_box_gives_korniaS_pixels_and_flip_mirrors_them():
    torch.manual_seed(1)
    x = torch.rand(5, 4, 40, 50)
    boxes = fast.crop_boxes(5, 40, 50, (0.2, 1.0), torch.device("cpu"))
    x0, y0, bw, bh = boxes.unbind(1)
    corners = torch.stack(
        [
            torch.stack([x0, y0], 1),
            torch.stack([x0 + bw - 1, y0], 1),
            torch.stack([x0 + bw - 1, y0 + bh - 1], 1),
            torch.stack([x0, y0 + bh - 1], 1),
        ],
        1,
    )
    ref = crop_and_resize(x, corners, (24, 24), mode="bilinear", align_corners=True)
    none = torch.zeros(5, dtype=torch.bool)
    ours = fast.crop_flip(x, 24, boxes, none)
    assert (ours - ref).abs().max() < 1e-4
    flipped = fast.crop_flip(x, 24, boxes, ~none)
    assert (flipped - ours.flip(-1)).abs().max() < 1e-4
    # RGB and depth are one tensor through one grid: a depth copy of channel 0 stays equal
    assert torch.equal(ours[:, 0], fast.crop_flip(x[:, :1], 24, boxes, none)[:, 0])


def test_flip_rate_and_jitter_probability_and_ranges():
    torch.manual_seed(2)
    flips = torch.rand(N) < 0.5
    assert abs(flips.float().mean().item() - 0.5) < 3 * np.sqrt(0.25 / N)
    grey = torch.full((N, 3, 4, 4), 0.5)
    ours = fast.color_jitter(grey, 0.4, 0.0, 0.0, 0.0, p=0.8)[:, 0, 0, 0] / 0.5
    ref = K.ColorJitter(0.4, 0.0, 0.0, 0.0, p=0.8)(grey)[:, 0, 0, 0] / 0.5
    for a, b in ((ours, ref),):
        changed_a, changed_b = (a - 1).abs() > 1e-6, (b - 1).abs() > 1e-6
        assert abs(changed_a.float().mean() - changed_b.float().mean()) < 0.04  # p = 0.8
        qa = a[changed_a].quantile(QUANTILES)
        qb = b[changed_b].quantile(QUANTILES)
        assert (qa - qb).abs().max() < 0.04  # brightness factors uniform in [0.6, 1.4]
    hue = fast.color_jitter(torch.rand(64, 3, 8, 8), 0.0, 0.0, 0.0, 0.1, p=1.0)
    assert hue.min() >= 0 and hue.max() <= 1
    blurred = fast.random_blur(torch.rand(8, 3, 16, 16), 5, (0.1, 2.0), p=1.0)
    assert blurred.std() < torch.rand(8, 3, 16, 16).std()  # smoothed
