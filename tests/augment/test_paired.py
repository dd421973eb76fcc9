import torch

from solo_rgbd.augment.paired import (
    DEPTH_MEAN,
    DEPTH_STD,
    RGB_MEAN,
    RGB_STD,
    AugmentConfig,
    DepthAugmentConfig,
    PairedAugment,
    RGBAugmentConfig,
)
from solo_rgbd.data.decode import encode_depth

NO_COLOUR = RGBAugmentConfig(color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)


def _unnormalise(rgb, depth):
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(RGB_STD).view(1, 3, 1, 1)
    return rgb * std + mean, depth * DEPTH_STD + DEPTH_MEAN


def _pattern(b=6, size=48):
    torch.manual_seed(0)
    d = torch.rand(b, 1, size // 8, size // 8)
    d = torch.nn.functional.interpolate(d, size=(size, size), mode="nearest")  # blocky edges
    rgb = (d.repeat(1, 3, 1, 1) * 255).round().to(torch.uint8)
    return rgb, encode_depth(rgb[:, :1].float() / 255)


def test_geometry_is_shared_pixel_for_pixel():
    torch.manual_seed(1)
    rgb, depth = _pattern()
    aug = PairedAugment(AugmentConfig(crop_size=32, min_scale=0.2, rgb=NO_COLOUR))
    for rgb_v, depth_v in aug(rgb, depth):
        r, d = _unnormalise(rgb_v, depth_v)
        assert torch.allclose(r[:, :1], d, atol=1e-4)  # same crop box, same flip, same pixels


def test_depth_edges_stay_on_rgb_edges_under_full_mocov2_augmentation():
    torch.manual_seed(2)
    size = 64
    rgb = torch.zeros(8, 3, size, size, dtype=torch.uint8)
    depth = torch.zeros(8, 1, size, size)
    cols = torch.randint(20, 44, (8,))
    for i, c in enumerate(cols):
        rgb[i, :, :, c:] = 230  # a vertical step edge, at the same column in both modalities
        depth[i, :, :, c:] = 0.9
    depth[:, :, :, :] += 0.05
    aug = PairedAugment(
        AugmentConfig(
            crop_size=48, min_scale=0.6, rgb=RGBAugmentConfig(blur_prob=0.0, color_jitter_prob=1.0)
        )
    )
    rgb_v, depth_v = aug(rgb, encode_depth(depth))[0]
    r, d = _unnormalise(rgb_v, depth_v)
    gray_edge = (r.mean(1).diff(dim=-1)).abs().mean(1).argmax(-1)  # (B,) column of the edge
    depth_edge = (d[:, 0].diff(dim=-1)).abs().mean(1).argmax(-1)
    strong = (d[:, 0].diff(dim=-1)).abs().mean(1).amax(-1) > 0.1  # edge kept inside the crop
    assert strong.sum() >= 4
    assert torch.equal(gray_edge[strong], depth_edge[strong])


def test_colour_ops_touch_rgb_only():
    rgb, depth = _pattern()
    cfg = AugmentConfig(
        crop_size=48,
        min_scale=1.0,
        max_scale=1.0,
        hflip_prob=0.0,
        rgb=RGBAugmentConfig(color_jitter_prob=1.0, grayscale_prob=0.0, blur_prob=1.0),
        depth=DepthAugmentConfig(),
    )
    aug = PairedAugment(cfg)
    aug.geometric[0].ratio = torch.tensor([1.0, 1.0])  # identity crop
    rgb_v, depth_v = aug(rgb, depth)[0]
    r, d = _unnormalise(rgb_v, depth_v)
    assert torch.allclose(d, rgb[:, :1].float() / 255, atol=1e-4)  # depth untouched
    assert (r - rgb.float() / 255).abs().mean() > 0.02  # RGB jittered and blurred


def test_two_views_differ_and_keep_the_device_and_shape():
    rgb, depth = _pattern()
    views = PairedAugment(AugmentConfig(crop_size=32))(rgb, depth)
    assert len(views) == 2
    (r1, d1), (r2, d2) = views
    assert r1.shape == (6, 3, 32, 32) and d1.shape == (6, 1, 32, 32)
    assert r1.device == rgb.device and r1.dtype == torch.float32
    assert not torch.allclose(r1, r2)


def test_depth_transforms_are_optional_and_depth_only():
    rgb, depth = _pattern()
    cfg = AugmentConfig(
        crop_size=48,
        min_scale=1.0,
        max_scale=1.0,
        hflip_prob=0.0,
        rgb=NO_COLOUR,
        depth=DepthAugmentConfig(erase_prob=1.0),
    )
    aug = PairedAugment(cfg)
    aug.geometric[0].ratio = torch.tensor([1.0, 1.0])
    r, d = _unnormalise(*aug(rgb, depth)[0])
    assert torch.allclose(r, rgb.float() / 255, atol=1e-4)
    assert ((d == 0).flatten(1).sum(1) > 0).all()  # every sample got a hole
