import torch
import torch.nn.functional as F

from solo_rgbd.losses.alignment import alignment_loss
from solo_rgbd.losses.infonce import infonce


def test_alignment_loss_equals_a_direct_computation():
    torch.manual_seed(0)
    q_r, k_d, Q_d = torch.randn(4, 8), torch.randn(4, 8), torch.randn(12, 8)
    q_d, k_r, Q_r = torch.randn(4, 8), torch.randn(4, 8), torch.randn(12, 8)
    loss, _ = alignment_loss(q_r, k_d, Q_d, q_d, k_r, Q_r, tau=0.1)

    def direct(q, k, queue):
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
        pos = torch.exp((q * k).sum(1) / 0.1)
        neg = torch.exp(q @ queue.T / 0.1).sum(1)
        return (-torch.log(pos / (pos + neg))).mean()

    assert torch.allclose(loss, direct(q_r, k_d, Q_d) + direct(q_d, k_r, Q_r), atol=1e-5)
    assert torch.allclose(loss, infonce(q_r, k_d, Q_d, 0.1)[0] + infonce(q_d, k_r, Q_r, 0.1)[0])
