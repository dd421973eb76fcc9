import torch

from solo_rgbd.data.decode import RootSpec
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.tasks.sod.linear_probe import probe_modalities
from tests.data.stores import store_of as build_cache


def test_per_modality_probes_learn_and_leave_the_encoders_untouched(synth_root):
    cache = build_cache([RootSpec(str(synth_root))], size=40)
    train, test = cache.subset(range(24)), cache.subset(range(24, 32))
    torch.manual_seed(0)
    encoders = {"rgb": Encoder("test_resnet", 3), "depth": Encoder("test_resnet", 1)}
    before = {k: {n: t.clone() for n, t in e.state_dict().items()} for k, e in encoders.items()}
    losses: dict[str, list[float]] = {}
    scores = probe_modalities(encoders, train, test, size=32, steps=60, lr=5e-2, losses=losses)
    assert set(scores) == set(losses) == {"rgb", "depth"}
    for m in ("rgb", "depth"):
        assert 0 <= scores[m]["MAE"] <= 1 and 0 <= scores[m]["maxF"] <= 1
        assert len(losses[m]) == 60
        assert sum(losses[m][-10:]) < sum(losses[m][:10])  # only the 1x1 conv learns, and does
    for k, e in encoders.items():  # frozen: weights and BatchNorm statistics
        assert all(torch.equal(t, before[k][n]) for n, t in e.state_dict().items())
