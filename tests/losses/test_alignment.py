import torch
import torch.nn.functional as F

from solo_rgbd.losses.alignment import alignment_loss
from solo_rgbd.losses.infonce import infonce


def test_alignment_loss_equals_a_direct_computation():
    torch.manual_seed(0)
    q = {"rgb": torch.randn(4, 8), "depth": torch.randn(4, 8)}
    k = {"rgb": torch.randn(4, 8), "depth": torch.randn(4, 8)}
    queues = {"rgb": torch.randn(12, 8), "depth": torch.randn(12, 8)}
    loss, logits = alignment_loss(q, k, queues, tau=0.1)

    def direct(q, k, queue):
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
        pos = torch.exp((q * k).sum(1) / 0.1)
        neg = torch.exp(q @ queue.T / 0.1).sum(1)
        return (-torch.log(pos / (pos + neg))).mean()

    rgb_to_depth = direct(q["rgb"], k["depth"], queues["depth"])
    depth_to_rgb = direct(q["depth"], k["rgb"], queues["rgb"])
    assert torch.allclose(loss, rgb_to_depth + depth_to_rgb, atol=1e-5)
    expected = infonce(q["rgb"], k["depth"], queues["depth"], 0.1)[0]
    expected = expected + infonce(q["depth"], k["rgb"], queues["rgb"], 0.1)[0]
    assert torch.equal(loss, expected)
    assert sorted(logits) == ["depth_to_rgb", "rgb_to_depth"]
