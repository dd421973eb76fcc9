import torch

from solo_rgbd.losses.infonce import infonce
from solo_rgbd.losses.mbcf import inter_loss, intra_loss, total_loss


def test_intra_is_the_sum_of_both_modalities_each_with_its_queue():
    torch.manual_seed(0)
    q = {"rgb": torch.randn(4, 8), "depth": torch.randn(4, 8)}
    k = {"rgb": torch.randn(4, 8), "depth": torch.randn(4, 8)}
    queues = {"rgb": torch.randn(16, 8), "depth": torch.randn(16, 8)}
    loss, losses, logits = intra_loss(q, k, queues, tau=0.1)
    expected = {s: infonce(q[s], k[s], queues[s], 0.1)[0] for s in q}
    assert torch.equal(loss, expected["rgb"] + expected["depth"])  # the same sum, bit for bit
    assert all(torch.equal(losses[s], expected[s]) for s in q)
    assert {s: tuple(v.shape) for s, v in logits.items()} == {"rgb": (4, 17), "depth": (4, 17)}


def test_intra_works_for_any_set_of_streams_and_drops_excluded_keys():
    torch.manual_seed(2)
    q, k, queues = (
        {"rgbd": torch.randn(4, 8)},
        {"rgbd": torch.randn(4, 8)},
        {"rgbd": torch.randn(6, 8)},
    )
    exclude = {"rgbd": torch.zeros(4, 6, dtype=torch.bool)}
    exclude["rgbd"][:, 0] = True  # every query's own sample sits in slot 0
    loss, _, logits = intra_loss(q, k, queues, 0.1, exclude)
    assert torch.isinf(logits["rgbd"][:, 1]).all()  # slot 0 is column 1 (the positive is 0)
    assert torch.equal(loss, infonce(q["rgbd"], k["rgbd"], queues["rgbd"], 0.1, exclude["rgbd"])[0])


def test_inter_uses_tau_inter_and_total_weights_both():
    torch.manual_seed(1)
    q, k, Q = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    l_inter, _ = inter_loss(q, k, Q, tau=0.04)
    assert torch.allclose(l_inter, infonce(q, k, Q, 0.04)[0])
    l_intra = torch.tensor(3.0)
    assert total_loss(l_intra, torch.tensor(5.0), 0.5, 0.5).item() == 4.0
    assert abs(total_loss(l_intra, torch.tensor(5.0), 0.2, 0.8).item() - 4.6) < 1e-6
    assert total_loss(l_intra, None).item() == 3.0  # stage 1: IntraCLM alone
