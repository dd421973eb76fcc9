import torch
from torch import nn

from solo_rgbd.nn.shuffle_bn import shuffled_forward


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def test_eval_mode_keys_are_unchanged_by_the_shuffle():
    net = _net()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(12, 3, 8, 8)
    plain = net(x)
    for groups in (1, 2, 3):
        shuffled = shuffled_forward(net, x, groups=groups)
        torch.testing.assert_close(shuffled, plain)  # sample i's key is still sample i's


def test_train_mode_statistics_are_per_group_and_order_is_restored():
    net = _net().train()
    x = torch.randn(12, 3, 8, 8)
    torch.manual_seed(7)
    out = shuffled_forward(lambda a, b: {"y": net(a), "id": b}, x, torch.arange(12), groups=2)
    assert torch.equal(out["id"], torch.arange(12))  # every output back in the input order
    torch.manual_seed(7)
    perm = torch.randperm(12)  # the same draw shuffled_forward made
    for group in perm.chunk(2):  # each group normalised with its own batch statistics
        torch.testing.assert_close(out["y"][group], net(x[group]))
    whole = net(x)  # one BN batch: what the query side sees, and what shuffle-BN avoids
    assert not torch.allclose(out["y"], whole, atol=1e-3)


def test_mbcf_keys_go_through_shuffle_bn_when_enabled(tmp_path, monkeypatch):
    from solo_rgbd.config import compose
    from solo_rgbd.methods import METHODS
    from tests.conftest import tiny_overrides

    calls = []
    import solo_rgbd.methods.momentum as momentum

    real = momentum.shuffled_forward

    def spy(fn, *inputs, groups):
        calls.append((inputs[0].shape[0], groups))
        return real(fn, *inputs, groups=groups)

    monkeypatch.setattr(momentum, "shuffled_forward", spy)
    cfg = compose("pretrain", tiny_overrides(tmp_path) + ["method_kwargs.shuffle_bn=true"])
    model = METHODS["mbcf"](cfg)
    model.momentum_forward({"rgb": torch.randn(8, 3, 32, 32), "depth": torch.randn(8, 1, 32, 32)})
    assert calls == [(8, 2)]
