"""solo-rgbd's LARS gives lightly's updates bit for bit, and reads nothing to the host."""

import pytest
import torch
from lightly.utils.lars import LARS as LightlyLARS

from solo_rgbd.nn.lars import LARS


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    with torch.no_grad():
        m[2].bias.zero_()  # a parameter whose norm is zero: lightly's other branch
    return m


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0.9, "weight_decay": 1e-4},
        {"momentum": 0.9, "weight_decay": 1e-4, "nesterov": True},
        {"momentum": 0.0, "weight_decay": 1e-6, "trust_coefficient": 0.02},
        {"momentum": 0.9, "weight_decay": 0.0},
    ],
)
def test_the_updates_are_lightlys_bit_for_bit(kwargs):
    ours, theirs = _model(), _model()
    opt_ours = LARS(ours.parameters(), lr=0.5, **kwargs)
    opt_theirs = LightlyLARS(theirs.parameters(), lr=0.5, **kwargs)
    for step in range(10):
        x = torch.randn(16, 8)
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            if step == 3:
                model[0].weight.grad.zero_()  # a zero gradient norm on one step
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    # the same state layout: a checkpoint of one resumes with the other
    opt_theirs.load_state_dict(opt_ours.state_dict())


def test_a_step_reads_nothing_to_the_host(monkeypatch):
    model = _model()
    opt = LARS(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model(torch.randn(4, 8)).sum().backward()
    reads = []
    for name in ("item", "__bool__", "__float__", "tolist", "cpu"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _o=original, **k: (reads.append(1), _o(self, *a, **k))[1],
        )
    opt.step()
    opt.step()
    assert reads == []
