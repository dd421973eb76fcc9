import pytest
import torch
import torch.nn.functional as F

from solo_rgbd.losses.infonce import batch_top1_accuracy, infonce, top1_accuracy


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


def test_excluded_negatives_leave_the_loss_and_the_top1():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.8, 0.6], [0.6, 0.8]])  # positives: cos 0.8 for both rows
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # row 0 of q sits in slot 0
    exclude = torch.tensor([[True, False, False], [False, True, False]])  # own keys
    loss_all, logits_all = infonce(q, k, queue, 0.5)
    loss_ex, logits_ex = infonce(q, k, queue, 0.5, exclude)
    assert top1_accuracy(logits_all).item() == 0.0  # the own stale key (cos 1) beats 0.8
    assert top1_accuracy(logits_ex).item() == 1.0
    assert torch.isinf(logits_ex[0, 1]) and torch.isinf(logits_ex[1, 2])
    # by hand: row 0 keeps the negatives of cos 0 and -1, row 1 those of cos 0 and 0
    pos = 0.8 / 0.5
    row0 = -pos + torch.logsumexp(torch.tensor([pos, 0.0, -2.0]), 0)
    row1 = -pos + torch.logsumexp(torch.tensor([pos, 0.0, 0.0]), 0)
    assert torch.allclose(loss_ex, (row0 + row1) / 2, atol=1e-6)
    assert loss_ex < loss_all


def test_batch_top1_reads_each_query_against_every_key_of_the_batch():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys = torch.tensor([[1.0, 0.1], [1.0, 0.0], [1.0, 1.2]])
    # query 0: nearest is key 1 (cos 1) not its own key 0; query 1: own key 1 is (1, 0), its
    # nearest is key 2; query 2: own key 2 (cos 0.996) beats key 0 (cos 0.77)
    assert batch_top1_accuracy(q, keys).item() == pytest.approx(1 / 3)
    # this process's queries are rows 1..2 of a gathered batch of 4 keys
    gathered = torch.cat([torch.tensor([[0.0, -1.0]]), torch.eye(2) * 3], 0)
    assert batch_top1_accuracy(torch.eye(2), gathered, offset=1).item() == 1.0
    assert batch_top1_accuracy(torch.eye(2), gathered, offset=0).item() == 0.0


def _ddp_batch_top1(rank, world, port, q, k, out):
    import torch.distributed as dist

    from solo_rgbd.nn.distributed import batch_offset, gather_keys, mean_over_ranks

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    b = q.shape[0] // world
    mine = slice(rank * b, (rank + 1) * b)
    acc = batch_top1_accuracy(q[mine], gather_keys(k[mine]), batch_offset(b))
    out[rank] = mean_over_ranks(acc).item()
    dist.destroy_process_group()


def test_batch_top1_under_two_process_ddp_equals_one_process():
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    q, k = torch.randn(16, 8), torch.randn(16, 8)
    k[:10] = q[:10] + 0.1 * torch.randn(10, 8)  # 10 of 16 recognisable, spread over both ranks
    single = batch_top1_accuracy(q, k).item()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.get_context("spawn").Manager().dict()
    mp.spawn(_ddp_batch_top1, args=(2, port, q, k, out), nprocs=2, join=True)
    assert out[0] == out[1] == pytest.approx(single)
    assert 10 / 16 <= single < 1.0
