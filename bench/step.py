"""MBCF's training step against two single-modality MoCo steps, same backbone and batch.

    python bench/step.py                                  # CPU: resnet18 at 64 px, batch 32
    python bench/step.py --backbone resnet50 --size 224 --batch 64 --bf16 --channels-last

The baseline is IntraCLM alone (MBCF's stage 1): a MoCo v2 step for RGB plus one for depth,
each with its own encoder, momentum encoder, projector and queue. The MBCF step adds the fusion
encoder, the momentum fusion encoder and the fused queue (stage 2). Both run the same code path
(forward, loss, backward, SGD step, momentum update, enqueue) on pre-made views, so the ratio
isolates what the fusion branch costs. Goal: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from lightly.models.utils import update_momentum as momentum_update

from solo_rgbd.config import compose
from solo_rgbd.methods import METHODS


def build(args, stage1_epochs: int):
    over = [
        f"backbone.name={args.backbone}",
        f"method_kwargs.stage1_epochs={stage1_epochs}",
        f"method_kwargs.queue_size={args.queue}",
    ]
    if args.paper_dims:
        over += ["experiment=paper", f"backbone.name={args.backbone}"]
    model = METHODS["mbcf"](compose("pretrain", over)).to(args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9, weight_decay=2e-4
    )
    return model, opt


def time_steps(model, opt, views, args) -> float:
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=dtype, enabled=args.bf16)

    def step():
        with autocast:
            loss = model.training_step({"views": views, "index": torch.arange(args.batch)}, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for online, target in model.momentum_pairs:
            momentum_update(online, target, 0.99)

    for _ in range(args.warmup):
        step()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--queue", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (median)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--paper-dims",
        action="store_true",
        help="paper projector/fusion dims (2048) instead of the quick preset's",
    )
    args = p.parse_args()
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    def view():
        return (
            torch.randn(args.batch, 3, args.size, args.size, device=args.device).contiguous(
                memory_format=fmt
            ),
            torch.randn(args.batch, 1, args.size, args.size, device=args.device).contiguous(
                memory_format=fmt
            ),
        )

    views = [view(), view()]
    models = {name: build(args, stage1) for name, stage1 in (("two_moco", 10**6), ("mbcf", 0))}
    assert models["two_moco"][0].stage == 1 and models["mbcf"][0].stage == 2
    times: dict[str, list[float]] = {name: [] for name in models}
    peak: dict[str, float] = {}
    for _ in range(args.rounds):  # alternate, so drift in machine speed hits both alike
        for name, (model, opt) in models.items():
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            times[name].append(time_steps(model, opt, views, args))
            if args.device.startswith("cuda"):
                peak[name] = torch.cuda.max_memory_allocated() / 2**30
    results = {}
    for name, secs in times.items():
        sec = statistics.median(secs)
        results[name] = {
            "ms_per_step": round(sec * 1000, 2),
            "pairs_per_s": round(args.batch / sec, 1),
        }
        if name in peak:
            results[name]["peak_mem_gib"] = round(peak[name], 2)
    ratio = results["mbcf"]["ms_per_step"] / results["two_moco"]["ms_per_step"]
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                "backbone": args.backbone,
                "size": args.size,
                "batch": args.batch,
                "bf16": args.bf16,
                "channels_last": args.channels_last,
                "queue": args.queue,
                "steps_per_round": args.steps,
                "rounds": args.rounds,
                **results,
                "ratio_mbcf_over_two_moco": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
