import torch
import torch.nn.functional as F

from solo_rgbd.losses.infonce import infonce, top1_accuracy


def test_infonce_equals_a_direct_computation_of_eq3():
    torch.manual_seed(0)
    q, k, queue = torch.randn(5, 8), torch.randn(5, 8), torch.randn(20, 8)
    tau = 0.1
    loss, logits = infonce(q, k, queue, tau)
    qn, kn, nn_ = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    direct = []
    for i in range(5):
        pos = torch.exp(qn[i] @ kn[i] / tau)
        neg = torch.exp(nn_ @ qn[i] / tau).sum()
        direct.append(-torch.log(pos / (pos + neg)))
    assert torch.allclose(loss, torch.stack(direct).mean(), atol=1e-5)
    assert logits.shape == (5, 21)
    assert torch.allclose(logits[:, 0], (qn * kn).sum(1) / tau, atol=1e-6)  # positive in col 0


def test_keys_and_queue_get_no_gradient_and_accuracy_reads_column_zero():
    q = torch.randn(4, 6, requires_grad=True)
    k = torch.randn(4, 6, requires_grad=True)
    loss, _ = infonce(q, k, torch.randn(10, 6), 0.2)
    loss.backward()
    assert q.grad is not None and k.grad is None
    logits = torch.tensor([[5.0, 1.0], [0.0, 2.0]])
    assert top1_accuracy(logits).item() == 0.5
