import torch

from solo_rgbd.losses.infonce import infonce
from solo_rgbd.losses.mbcf import inter_loss, intra_loss, total_loss


def test_intra_is_the_sum_of_both_modalities_each_with_its_queue():
    torch.manual_seed(0)
    qr, kr, Qr = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    qd, kd, Qd = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    loss, parts = intra_loss(qr, kr, Qr, qd, kd, Qd, tau=0.1)
    expected = infonce(qr, kr, Qr, 0.1)[0] + infonce(qd, kd, Qd, 0.1)[0]
    assert torch.allclose(loss, expected)
    assert torch.allclose(parts["loss_rgb"] + parts["loss_depth"], loss)


def test_inter_uses_tau_inter_and_total_weights_both():
    torch.manual_seed(1)
    q, k, Q = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    l_inter, _ = inter_loss(q, k, Q, tau=0.04)
    assert torch.allclose(l_inter, infonce(q, k, Q, 0.04)[0])
    l_intra = torch.tensor(3.0)
    assert total_loss(l_intra, torch.tensor(5.0), 0.5, 0.5).item() == 4.0
    assert abs(total_loss(l_intra, torch.tensor(5.0), 0.2, 0.8).item() - 4.6) < 1e-6
    assert total_loss(l_intra, None).item() == 3.0  # stage 1: IntraCLM alone
