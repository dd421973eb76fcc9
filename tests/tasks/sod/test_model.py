import torch

from solo_rgbd.data.decode import RootSpec
from solo_rgbd.data.sources import index_loader
from solo_rgbd.losses.sod import sod_loss
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.tasks.sod.model import SODNet
from solo_rgbd.tasks.sod.module import fit_decoder, score_loader
from tests.data.stores import store_of as build_cache


def _net(freeze=True):
    torch.manual_seed(0)
    return SODNet(Encoder("test_resnet", 3), Encoder("test_resnet", 1), dim=16, freeze=freeze)


def test_outputs_at_input_resolution_finest_first():
    net = _net()
    outs = net(torch.randn(2, 3, 48, 40), torch.randn(2, 1, 48, 40))
    assert len(outs) == 4 and all(o.shape == (2, 1, 48, 40) for o in outs)


def test_frozen_encoders_stay_frozen():
    net = _net(freeze=True)
    before = {k: v.clone() for k, v in net.rgb_encoder.state_dict().items()}
    before_d = {k: v.clone() for k, v in net.depth_encoder.state_dict().items()}
    opt = torch.optim.Adam(net.trainable_parameters(), lr=1e-2)
    net.train()
    assert not net.rgb_encoder.training  # BatchNorm statistics frozen too
    loss = sod_loss(
        net(torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)), torch.rand(2, 1, 32, 32).round()
    )
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in net.rgb_encoder.parameters())
    assert all(p.grad is None for p in net.depth_encoder.parameters())
    assert all(torch.equal(v, net.rgb_encoder.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, net.depth_encoder.state_dict()[k]) for k, v in before_d.items())
    assert any(p.grad is not None for p in net.decoder.parameters())


def test_fine_tuning_trains_the_encoders():
    net = _net(freeze=False)
    loss = sod_loss(
        net(torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)), torch.rand(2, 1, 32, 32).round()
    )
    loss.backward()
    assert any(p.grad is not None for p in net.rgb_encoder.parameters())


def test_short_training_lowers_the_loss_and_beats_an_untrained_decoder(synth_root):
    cache = build_cache([RootSpec(str(synth_root))], size=48)
    train, val = cache.subset(range(24)), cache.subset(range(24, 32))
    net = _net()
    loader = index_loader(train, 8, True, True, seed=0)
    val_loader = index_loader(val, 8, False, False)
    untrained = score_loader(net, val_loader, "cpu", 48)
    losses = fit_decoder(net, loader, steps=45, lr=3e-3, device="cpu", size=48)
    trained = score_loader(net, val_loader, "cpu", 48)
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5
    assert trained["MAE"] < untrained["MAE"] and trained["maxF"] > untrained["maxF"] + 0.05
