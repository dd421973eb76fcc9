import torch
from lightly.models.utils import update_momentum as lightly_update

from solo_rgbd.nn.momentum import EMAUpdate, cosine_tau, momentum_copy, warmup_cosine
from solo_rgbd.nn.queue import KeyQueue


def test_enqueue_writes_at_the_pointer_and_wraps_around():
    q = KeyQueue(size=10, dim=3)
    a = torch.arange(12, dtype=torch.float32).view(4, 3)
    q.enqueue(a)
    assert torch.equal(q.keys[:4], a) and q.ptr.item() == 4
    b = torch.full((4, 3), 7.0)
    q.enqueue(b)
    assert torch.equal(q.keys[4:8], b) and q.ptr.item() == 8
    c = torch.arange(4, dtype=torch.float32).view(4, 1).repeat(1, 3) + 100  # 10 % 4 != 0
    q.enqueue(c)
    assert torch.equal(q.keys[8:10], c[:2]) and torch.equal(q.keys[:2], c[2:])
    assert q.ptr.item() == 2
    assert torch.equal(q.keys[2:4], a[2:])  # not yet overwritten


def test_a_batch_larger_than_the_queue_keeps_the_newest_keys():
    q = KeyQueue(size=4, dim=2)
    keys = torch.arange(12, dtype=torch.float32).view(6, 2)
    q.enqueue(keys)
    assert sorted(q.keys[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0]


def test_negatives_are_a_snapshot():
    q = KeyQueue(size=4, dim=2)
    snap = q.negatives()
    q.enqueue(torch.ones(2, 2))
    assert not torch.equal(snap, q.keys)


def test_state_dict_round_trip_restores_contents_and_pointer(tmp_path):
    q = KeyQueue(size=6, dim=2)
    q.enqueue(torch.randn(4, 2))
    torch.save(q.state_dict(), tmp_path / "q.pt")
    r = KeyQueue(size=6, dim=2)
    r.load_state_dict(torch.load(tmp_path / "q.pt"))
    assert torch.equal(r.keys, q.keys) and r.ptr.item() == 4


def test_momentum_update_follows_the_ema_rule_and_keys_get_no_grads():
    torch.manual_seed(0)
    online = torch.nn.Linear(4, 3)
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    EMAUpdate()([(online, target)], tau=0.9)
    for b, t, o in zip(before, target.parameters(), online.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)
    out = target(torch.randn(2, 4)).sum()
    assert not out.requires_grad


def test_the_fused_update_matches_lightlys_per_pair_update_over_many_steps():
    torch.manual_seed(0)
    pairs = [(torch.nn.Linear(8, 8), None), (torch.nn.Conv2d(3, 4, 3), None)]
    pairs = [(o, momentum_copy(o)) for o, _ in pairs]
    reference = [(o, momentum_copy(t)) for o, t in pairs]
    update = EMAUpdate()
    for step in range(20):
        with torch.no_grad():
            for o, _ in pairs:
                for p in o.parameters():
                    p.add_(torch.randn_like(p) * 0.1)
        tau = 0.99 - 0.01 * step
        update(pairs, tau)
        for o, t in reference:
            lightly_update(o, t, tau)
    for (_, t), (_, r) in zip(pairs, reference, strict=True):
        for a, b in zip(t.parameters(), r.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a new set of pairs (the next stage of a staged method) rebuilds the lists
    extra = torch.nn.Linear(2, 2)
    extra_k = momentum_copy(extra)
    with torch.no_grad():
        extra.weight.fill_(1.0)
        extra_k.weight.fill_(0.0)
    update([*pairs, (extra, extra_k)], 0.5)
    assert torch.allclose(extra_k.weight, torch.full((2, 2), 0.5))


def test_cosine_tau_goes_from_base_to_final():
    assert cosine_tau(0, 100, 0.99, 1.0) == 0.99
    assert abs(cosine_tau(100, 100, 0.99, 1.0) - 1.0) < 1e-12
    assert 0.99 < cosine_tau(50, 100, 0.99, 1.0) < 1.0


def test_warmup_then_cosine_spends_no_step_at_zero():
    assert warmup_cosine(0, 10, 2, 1.0) == 0.5 and warmup_cosine(1, 10, 2, 1.0) == 1.0
    assert warmup_cosine(2, 10, 2, 1.0) == 1.0  # the cosine starts at the peak
    assert 0 < warmup_cosine(9, 10, 2, 1.0) < 0.05  # the last step still learns
    assert warmup_cosine(10, 10, 2, 1.0) == 0.0 and warmup_cosine(3, 10, 0, 1.0, "constant") == 1.0


def test_each_key_is_stored_with_its_sample_index_and_wraps_with_it():
    q = KeyQueue(size=5, dim=2)
    assert q.ids.tolist() == [-1] * 5  # the random initial keys belong to no sample
    q.enqueue(torch.randn(3, 2), torch.tensor([7, 8, 9]))
    q.enqueue(torch.randn(3, 2), torch.tensor([1, 2, 3]))
    assert q.ids.tolist() == [3, 8, 9, 1, 2]
    same = q.same_instance(torch.tensor([3, 4, 9]))  # (B, K)
    assert same.tolist() == [
        [True, False, False, False, False],
        [False] * 5,
        [False, False, True, False, False],
    ]
    q.enqueue(torch.randn(2, 2))  # keys of no known sample
    assert q.ids.tolist() == [3, -1, -1, 1, 2]


def test_a_checkpoint_from_before_the_ids_loads_with_every_slot_unknown():
    q = KeyQueue(size=4, dim=2)
    q.enqueue(torch.randn(2, 2), torch.tensor([5, 6]))
    old = {k: v for k, v in q.state_dict().items() if k != "ids"}
    fresh = KeyQueue(size=4, dim=2)
    fresh.load_state_dict(old)  # strict: the missing buffer is filled, not an error
    assert torch.equal(fresh.keys, q.keys) and fresh.ids.tolist() == [-1] * 4


def _batch_centred(embed: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """A frozen 'encoder' with BatchNorm in train mode: each output depends on its batch."""
    x = embed[idx]
    return torch.nn.functional.normalize(x - 0.6 * x.mean(0, keepdim=True), dim=1)


def test_frozen_encoder_no_augmentation_top1_is_one_with_the_mask_and_falls_without():
    """Once the queue wraps around the dataset it holds older keys of every query's own
    sample. They differ from the fresh positive only through the batch statistics, so without
    the mask they beat it about half the time; with it, top-1 stays 1.0."""
    from solo_rgbd.losses.infonce import infonce, top1_accuracy

    torch.manual_seed(0)
    n, b, dim = 48, 8, 64
    embed = torch.randn(n, dim)  # distinct samples: nearly orthogonal embeddings
    queues = {True: KeyQueue(2 * n, dim), False: KeyQueue(2 * n, dim)}
    accs = {True: [], False: []}
    for _epoch in range(4):
        for idx in torch.randperm(n).view(-1, b):
            q = _batch_centred(embed, idx)  # the query batch
            # shuffle-BN across 4 ranks: the key's BN group is drawn from the global batch
            others = torch.tensor([i for i in torch.randperm(n).tolist() if i not in idx])
            world = torch.cat([idx, others[: 3 * b]])[torch.randperm(4 * b)]
            k_all = torch.cat([_batch_centred(embed, g) for g in world.view(4, b)])
            k = k_all[[world.tolist().index(i) for i in idx.tolist()]]
            for masked, queue in queues.items():
                exclude = queue.same_instance(idx) if masked else None
                _, logits = infonce(q, k, queue.negatives(), 0.1, exclude)
                accs[masked].append(top1_accuracy(logits).item())
                queue.enqueue(k, idx)
    wrapped = slice(2 * n // b, None)  # after two epochs every sample has keys in the queue
    assert min(accs[True]) == 1.0
    with_own = sum(accs[False][wrapped]) / len(accs[False][wrapped])
    assert with_own < 0.8
    assert sum(accs[False][: n // b]) / (n // b) == 1.0  # first epoch: no own keys yet
