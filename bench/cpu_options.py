"""CPU speed options, measured against today's default on the same box (issue 18, item 4).

    python bench/cpu_options.py                    # the main job's preset (experiment=quick)
    python bench/cpu_options.py experiment=cpu     # the evidence preset

MBCF's full step (stage 2: both encoders, the key encoders, the fusion branch, loss, backward,
SGD, momentum update) on pre-made views of the preset's crop size, for each variant:

- ``default``: float32, contiguous memory, torch's default threads;
- ``channels_last``: model and views in channels-last memory;
- ``compile``: ``torch.compile`` of the encoders (inductor, CPU); its compile time is printed
  and counted against the steps of one run of the preset;
- ``threads=N``: ``torch.set_num_threads(N)`` for N in 1 .. cores;
- ``batch=B``: the default at other batch sizes (time per pair is what compares).

Rounds alternate the variants so that drift in machine speed hits all alike; the figure is the
median over rounds of the mean step time. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from lightly.models.utils import update_momentum

from solo_rgbd.config import compose
from solo_rgbd.methods.registry import METHODS


def build(overrides: list[str], channels_last: bool, compiled: bool):
    cfg = compose("pretrain", [*overrides, "method_kwargs.stage1_epochs=0"])  # stage 2
    torch.manual_seed(0)
    model = METHODS[str(cfg.method)](cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:  # the backbones, online and momentum (the rest is small)
        for group in (model.encoders, model.encoders_k):
            for name in list(group):
                group[name] = torch.compile(group[name])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    return cfg, model, opt


def views(cfg, batch: int, channels_last: bool):
    crop = int(cfg.augmentations.crop_size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def one(c):
        return torch.rand(batch, c, crop, crop).contiguous(memory_format=fmt)

    return [(one(3), one(1)), (one(3), one(1))]


def step(model, opt, data) -> None:
    loss = model.training_step(data, 0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    for online, target in model.momentum_pairs:
        update_momentum(online, target, 0.99)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    overrides = ["method=mbcf", *args.overrides]
    cfg0 = compose("pretrain", overrides)
    batch = int(cfg0.data.batch_size)
    cores = os.cpu_count() or 1
    default_threads = torch.get_num_threads()
    variants: dict[str, dict] = {"default": {}}
    variants["channels_last"] = {"channels_last": True}
    if not args.no_compile:
        variants["compile"] = {"compiled": True}
    for n in range(1, cores + 1):
        if n != default_threads:
            variants[f"threads={n}"] = {"threads": n}
    for b in (batch // 2, batch * 2):
        variants[f"batch={b}"] = {"batch": b}
    built, first_step = {}, {}
    for name, v in variants.items():
        cfg, model, opt = build(overrides, v.get("channels_last", False), v.get("compiled", False))
        b = v.get("batch", batch)
        data = {"views": views(cfg, b, v.get("channels_last", False)), "index": torch.arange(b)}
        torch.set_num_threads(v.get("threads", default_threads))
        start = time.perf_counter()
        step(model, opt, data)  # compilation, allocations
        first_step[name] = time.perf_counter() - start
        built[name] = (model, opt, data, b)
    torch.set_num_threads(default_threads)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (model, opt, data, _) in built.items():
            torch.set_num_threads(variants[name].get("threads", default_threads))
            step(model, opt, data)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, opt, data)
            times[name].append((time.perf_counter() - start) / args.steps)
        torch.set_num_threads(default_threads)
    base = statistics.median(times["default"])
    rows = {}
    for name, secs in times.items():
        sec = statistics.median(secs)
        b = built[name][3]
        rows[name] = {
            "ms_per_step": round(sec * 1e3, 1),
            "ms_per_pair": round(sec * 1e3 / b, 2),
            "speed_vs_default_per_pair": round((base / batch) / (sec / b), 3),
            "first_step_s": round(first_step[name], 1),
            "spread": round((max(secs) - min(secs)) / sec, 3),
        }
    print(
        json.dumps(
            {
                "overrides": overrides,
                "batch": batch,
                "crop": int(cfg0.augmentations.crop_size),
                "backbone": str(cfg0.backbone.name),
                "default_threads": default_threads,
                "cores": cores,
                "rounds": args.rounds,
                "steps_per_round": args.steps,
                "variants": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
