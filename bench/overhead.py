"""What the training loop costs beyond the model: the real ``solo-rgbd pretrain`` against a bare
PyTorch loop, in one process.

    python bench/overhead.py                              # both presets below, 3 rounds each
    python bench/overhead.py method=mbcf experiment=cpu   # any pretrain overrides, one preset
    python bench/overhead.py --rounds 5 --json out.json

The presets, each with the default checkpoint policy (a checkpoint and an export at an epoch's
end every 10 minutes, and at the end): the main job (``method=mbcf``, 8 steps per epoch) and
``experiment=cpu`` (16 steps per epoch of batch 64; its 10 + 10 epochs cut to 2 + 2, which
changes nothing per step or per epoch). Add ``checkpoint.every_n_epochs=1`` (and
``checkpoint.async_save=true|false``) to measure a checkpoint every epoch.

- **Lightning loop**: ``run_pretrain`` as users run it (data from the RAM cache, the two views,
  forward, backward, the non-finite guard, SGD, momentum update, enqueue, metrics, the
  export and checkpoint of the policy). Its time is the wall time from ``on_train_start`` to
  the end of the last epoch, divided by its optimizer steps: checkpoints and exports amortised.
- **Bare loop**: the same method class with the same config, seed, threads and batch, doing
  only ``training_step`` (forward and loss), backward and the step of the optimizer the method
  configures (its groups, lr, momentum and weight decay) on views made once beforehand, for
  the same number of steps in each MBCF stage.

``ratio`` is the first over the second; ``per_step_overhead`` is the same without the export
and checkpoint (what every step pays). Each round's ratio is printed; the overall ratio is the
median of the rounds' ratios (each round's two loops run back to back, so a change of the
machine's speed between rounds cancels), with the spread of the rounds (min and max). The
shares say where the difference goes; the real code's hooks are wrapped with timers (a few
microseconds each). Take timings on a quiet machine. The Lightning loop runs with the progress
bar off (the figure is about the loop, not the terminal).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import lightning.pytorch as pl
import torch

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.engine.checkpoint import RunCheckpoint
from solo_rgbd.engine.export import EncoderExport
from solo_rgbd.engine.guard import NonFiniteGuard
from solo_rgbd.engine.metrics import MetricsWriter
from solo_rgbd.methods.base import BaseMethod
from solo_rgbd.methods.momentum import MomentumMethod
from solo_rgbd.methods.registry import METHODS

TIMED = {  # share name -> (class, method) whose time is attributed to it
    "views": [(BaseMethod, "on_after_batch_transfer")],
    "momentum update": [(MomentumMethod, "after_optimizer_step")],
    "guard": [
        (NonFiniteGuard, "on_before_optimizer_step"),
        (NonFiniteGuard, "on_train_batch_start"),
        (NonFiniteGuard, "on_train_batch_end"),
        (NonFiniteGuard, "on_before_backward"),
    ],
    "metrics": [(MetricsWriter, "on_train_batch_end"), (MetricsWriter, "on_train_epoch_end")],
    "checkpoint": [
        (RunCheckpoint, "on_train_batch_end"),
        (RunCheckpoint, "on_train_epoch_end"),
        (RunCheckpoint, "on_train_end"),
    ],
    "export": [(EncoderExport, "on_train_epoch_end"), (EncoderExport, "on_train_end")],
}
SPENT: dict[str, float] = defaultdict(float)


def _wrap(share: str, cls: type, name: str) -> None:
    original = cls.__dict__[name]

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[share] += time.perf_counter() - start

    setattr(cls, name, timed)


class LoopClock(pl.Callback):
    """Fit-loop wall time (first step to the end of the last epoch), steps, data fetch time."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.steps = 0
        self.fetch = 0.0
        self._batch_end = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps += 1

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = time.perf_counter()


def lightning_loop(overrides: list[str], out: str) -> dict:
    SPENT.clear()
    cfg = compose(
        "pretrain", [*overrides, f"output_dir={out}", "trainer.enable_progress_bar=false"]
    )
    clock = LoopClock()
    run_pretrain(cfg, extra_callbacks=[clock])
    wall = clock.end - clock.start
    return {"wall_s": wall, "steps": clock.steps, "spent": dict(SPENT)}


def bare_loop(overrides: list[str], steps_per_stage: list[int]) -> dict:
    """forward + loss, backward, SGD step on pre-made views; MBCF's stages in order."""
    cfg = compose("pretrain", overrides)
    torch.manual_seed(int(cfg.seed))
    batch = int(cfg.data.batch_size)
    size, crop = int(cfg.data.image_size), int(cfg.augmentations.crop_size)
    method = METHODS[str(cfg.method)]
    wall, steps = 0.0, 0
    for stage, n in enumerate(steps_per_stage, start=1):
        if n == 0:
            continue
        over = list(overrides)
        if str(cfg.method) == "mbcf":  # stage 1: IntraCLM alone; stage 2: both
            over.append(f"method_kwargs.stage1_epochs={10**6 if stage == 1 else 0}")
        model = method(compose("pretrain", over))
        opt = model.configure_optimizers()  # the run's own optimizer, at its base lr
        rgb = torch.rand(batch, 3, size, size)
        depth = torch.rand(batch, 1, size, size)
        views = model.augment(rgb, depth)
        assert views[0][0].shape[-1] == crop
        data = {"views": views, "index": torch.arange(batch)}
        for i in range(n + 1):  # the first step (allocations) is not timed
            start = time.perf_counter()
            loss = model.training_step(data, i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                wall += time.perf_counter() - start
                steps += 1
    return {"wall_s": wall, "steps": steps}


def _ratio(light: dict, bare: dict) -> float:
    return (light["wall_s"] / light["steps"]) / (bare["wall_s"] / bare["steps"])


def _per_step_ratio(light: dict, bare: dict) -> float:
    """The loop's time per step without export and checkpoint, over the bare loop's."""
    per_epoch = sum(light["spent"].get(k, 0.0) for k in ("export", "checkpoint"))
    return ((light["wall_s"] - per_epoch) / light["steps"]) / (bare["wall_s"] / bare["steps"])


def stage_steps(overrides: list[str], steps: int) -> list[int]:
    cfg = compose("pretrain", overrides)
    if str(cfg.method) != "mbcf":
        return [steps]
    kw = cfg.method_kwargs
    first, second = int(kw.stage1_epochs), int(kw.stage2_epochs)
    if kw.get("schedule", "two_stage") != "two_stage":
        return [0, steps] if kw.get("schedule") == "one_stage" else [steps]
    s1 = round(steps * first / (first + second))
    return [s1, steps - s1]


PRESETS = {
    "main_job": ["method=mbcf"],
    "cpu": [
        "method=mbcf",
        "experiment=cpu",
        "method_kwargs.stage1_epochs=2",
        "method_kwargs.stage2_epochs=2",
    ],
}


def measure(overrides: list[str], rounds_n: int) -> dict:
    rounds = []
    for r in range(rounds_n):
        with tempfile.TemporaryDirectory() as out:
            light = lightning_loop([*overrides, f"run_name=overhead{r}"], out)
        bare = bare_loop(overrides, stage_steps(overrides, light["steps"]))
        rounds.append((light, bare))
        print(
            f"round {r}: lightning {light['wall_s']:.1f} s / {light['steps']} steps, bare "
            f"{bare['wall_s']:.1f} s / {bare['steps']} steps, ratio {_ratio(light, bare):.3f}",
            file=sys.stderr,
        )
    per_light = statistics.median(li["wall_s"] / li["steps"] for li, _ in rounds)
    per_bare = statistics.median(b["wall_s"] / b["steps"] for _, b in rounds)
    # per step, without the per-epoch parts (export, checkpoint): what a long epoch pays
    per_step = statistics.median(_per_step_ratio(li, b) for li, b in rounds)
    light, _ = rounds[-1]
    shares = {k: round(v / light["wall_s"], 4) for k, v in light["spent"].items()}
    shares["model (forward, backward, optimizer)"] = round(per_bare / per_light, 4)
    shares["rest (data, Lightning's loop, hooks)"] = round(1 - sum(shares.values()), 4)
    result = {
        "overrides": overrides,
        "threads": torch.get_num_threads(),
        "steps": light["steps"],
        "lightning_ms_per_step": round(per_light * 1e3, 1),
        "bare_ms_per_step": round(per_bare * 1e3, 1),
        # each round's two loops run back to back, so their ratio is free of the machine's drift
        # between rounds (the bare loop alone moved by up to 17 % from round to round)
        "ratio": round(statistics.median(_ratio(li, b) for li, b in rounds), 3),
        "ratio_of_medians": round(per_light / per_bare, 3),
        "per_step_overhead": round(per_step - 1, 4),
        "round_ratios": [round(_ratio(li, b), 3) for li, b in rounds],
        "spread": [
            round(min(_ratio(li, b) for li, b in rounds), 3),
            round(max(_ratio(li, b) for li, b in rounds), 3),
        ],
        "share_of_lightning_loop": shares,
        "rounds": rounds_n,
    }
    lo, hi = result["spread"]
    print(
        f"overhead ({' '.join(overrides)}): {result['ratio']:.3f}x a bare loop over {rounds_n} "
        f"rounds (rounds {lo:.3f}-{hi:.3f}); {result['lightning_ms_per_step']} ms/step against "
        f"{result['bare_ms_per_step']} ms/step; per step without export and checkpoint "
        f"{result['per_step_overhead']:+.1%}",
        file=sys.stderr,
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="pretrain overrides (default: both presets)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()
    presets = {"custom": args.overrides} if args.overrides else PRESETS
    for share, targets in TIMED.items():
        for cls, name in targets:
            _wrap(share, cls, name)
    result = {name: measure(over, args.rounds) for name, over in presets.items()}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
