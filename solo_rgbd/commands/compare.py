"""``solo-rgbd compare experiment=NAME [--plan]``: the grid of (row, seed) cells, each
pretrain -> the task (``task=``, any registered one) on the frozen encoders -> evaluation."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from solo_rgbd.compare.cells import CellResult
from solo_rgbd.config import compose
from solo_rgbd.errors import ConfigError
from solo_rgbd.tasks.base import TaskSpec


def task_of(cfg: DictConfig) -> TaskSpec:
    """The grid's task (``task=``), from the task registry."""
    from solo_rgbd.tasks.registry import task_spec

    return task_spec(str(cfg.task))


def task_overrides(cfg: DictConfig, spec: TaskSpec) -> list[str]:
    """The task's settings for every cell: the experiment's list under the task's name."""
    if spec.name not in cfg:
        raise ConfigError(
            f"experiment '{cfg.get('name')}' lists no settings for task '{spec.name}'; add "
            f"+{spec.name}=[...] (the task's overrides for every cell, e.g. data and recipe)."
        )
    return [str(o) for o in cfg[spec.name]]


def run_cell(cfg: DictConfig, row: dict, seed: int, cell: Path) -> CellResult:
    """pretrain (if any) -> task train -> task eval (and the grid's other protocols)."""
    from solo_rgbd.commands.pretrain import run_pretrain
    from solo_rgbd.compare.runner import pretrain_config
    from solo_rgbd.compare.tracking import tracker_overrides

    spec = task_of(cfg)
    common = [*task_overrides(cfg, spec), f"seed={seed}"]
    common += tracker_overrides(cfg, row["name"], seed, spec.name)
    if row["init"] == "pretrain":
        encoders = str(run_pretrain(pretrain_config(cfg, row, seed, cell)))
    elif row["init"] == "imagenet":
        encoders = "imagenet"
        common.append(f"backbone.weights={cfg.imagenet_weights}")
    elif row["init"] == "supervised":
        extra = [str(o) for o in cfg.get("supervised_overrides") or []]
        encoders = str(_supervised_encoders(spec, common, cell, extra))
    else:
        encoders = "random"
    frozen = _train_eval(spec, common, encoders, cell / spec.name, cell / "eval")
    protocols = list(cfg.get("protocols") or ["frozen"])
    probes = finetune = None
    if "probe" in protocols:
        probes = spec.linear_probe(compose(spec.config_name, [*common, f"encoders={encoders}"]))
    if "finetune" in protocols:
        finetune = {
            f"{float(f):g}": _finetune(cfg, spec, common, encoders, float(f), cell)
            for f in cfg.finetune_fractions
        }
    return CellResult(frozen, probes, finetune).check(spec.report, spec.name)


def _supervised_encoders(
    spec: TaskSpec, common: list[str], cell: Path, supervised_overrides: list[str]
) -> Path:
    """The upper bound: train encoders and decoder with labels on the task's training pairs
    (``freeze=false``), then export the encoders; the cell then trains a fresh decoder on them,
    frozen, like every other row."""
    run = spec.train(
        compose(
            spec.config_name,
            [
                *common,
                "encoders=random",
                "freeze=false",
                f"output_dir={cell / 'supervised'}",
                "run_name=run",
                *supervised_overrides,
            ],
        )
    )
    return spec.export_encoders(run, cell / "supervised" / "encoders")


def _finetune(cfg, spec: TaskSpec, common, encoders, fraction, cell: Path) -> dict:
    """The task trained end to end from these encoders with ``fraction`` of the labels."""
    out = cell / f"finetune-{fraction:g}"
    extra = [*common, "freeze=false", f"label_fraction={fraction}", *cfg.finetune_overrides]
    return _train_eval(spec, extra, encoders, out, out / "eval")


def _train_eval(spec: TaskSpec, overrides, encoders: str, out: Path, eval_out: Path):
    """The task's train (run folder ``out/<kind>/run``) then eval into ``eval_out``; returns the
    first test set's {subset: scores} entry."""
    run_dir = spec.train(
        compose(
            spec.config_name,
            [*overrides, f"encoders={encoders}", f"output_dir={out}", "run_name=run"],
        )
    )
    eval_dir = spec.evaluate(
        compose(spec.config_name, [*overrides, f"ckpt={run_dir}", f"out={eval_out}"])
    )
    return next(iter(json.loads((eval_dir / "results.json").read_text()).values()))


PROTOCOLS = ("frozen", "finetune", "probe")


def check_protocols(cfg: DictConfig, spec: TaskSpec) -> None:
    protocols = list(cfg.get("protocols") or ["frozen"])
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise ConfigError(
            f"protocols {unknown} are not available; use frozen plus any of finetune and "
            "probe, e.g. protocols=[frozen,finetune,probe]."
        )
    if "frozen" not in protocols:
        raise ConfigError(
            "protocols must include frozen: the frozen-decoder tables are the main result that "
            "finetune and probe are reported beside; e.g. protocols=[frozen,finetune]."
        )
    fractions = list(cfg.get("finetune_fractions") or [])
    if "finetune" in protocols and not (fractions and all(0 < float(f) <= 1 for f in fractions)):
        raise ConfigError(
            f"finetune_fractions={fractions} must list label fractions in (0, 1], e.g. "
            "finetune_fractions=[0.01,0.1,1.0]."
        )
    for protocol, workflow in (("probe", spec.linear_probe), ("supervised", spec.export_encoders)):
        wanted = protocol in protocols or any(
            r.get("init") == protocol for r in cfg.get("rows") or []
        )
        if wanted and workflow is None:
            raise ConfigError(
                f"task '{spec.name}' has no {protocol} workflow; drop the {protocol} "
                "protocol or row from the experiment."
            )


HELP = """usage: solo-rgbd compare [experiment=NAME | GRID.yaml] [--plan] [--cfg] [key=value ...]

Pretrain every row of a grid, train the task (task=, SOD by default) on its frozen encoders,
evaluate, and write tables shaped like the paper's Tables 1-4 plus bar charts and a report
page into out=. Finished cells are reused; seeds=[0,1,2] reports mean and std.

experiments: {options}

The grid's keys (configs/compare/quick.yaml is a complete example to copy):
  out=DIR              the grid's folder: new, empty, or an earlier run of this grid
  seeds=[0,1,2]        every row is run once per seed
  pretrain=[...]       overrides of every row's pretraining, e.g. [experiment=cpu]
  sod=[...]            overrides of every cell's task (its key is the task's name)
  rows=[...]           {{name, method | init: random|imagenet|supervised, overrides: [...]}}
  tables=[...]         {{title, rows: [row names], metrics: [maxF, maxE, MAE, ...]}}
  budget_epochs=N      epochs of rows whose method has no stages of its own
  controlled=true      align lr, momentum, shuffle-BN, epochs, batch and crop to the first
                       pretrained row (--plan marks what differs when it is false)
  data.path=DIR        your own data for every cell (pretraining and task); data.name=,
                       data.invert_depth=, test_sets=[{{name, path}}] the same way

A grid of your own needs no nested quoting: write it as a YAML file (copy quick.yaml) and run
  solo-rgbd compare my_grid.yaml data.path=/data/my_rgbd
'solo-rgbd compare my_grid.yaml --plan' lists its cells and settings without running them."""


def run_compare_command(args: Sequence[str]) -> int:
    from solo_rgbd.commands.helptext import cfg_flag

    if "-h" in args or "--help" in args:
        from solo_rgbd.compare.runner import experiment_options

        print(HELP.format(options=", ".join(experiment_options())))
        return 0
    show, args = cfg_flag(args)
    from solo_rgbd.compare.runner import check_grid, compose_experiment, run_compare

    if "--plan" in args:
        from omegaconf import OmegaConf

        from solo_rgbd.compare.plan import format_plan, plan_rows

        cfg = compose_experiment([a for a in args if a != "--plan"])
        if "data_base" in cfg.keys() and OmegaConf.is_missing(cfg, "data_base"):  # noqa: SIM118
            cfg.data_base = "DATA_BASE"  # a placeholder is fine for a plan
        spec = task_of(cfg)
        print(
            format_plan(cfg, plan_rows(cfg, compose(spec.config_name, task_overrides(cfg, spec))))
        )
        return 0
    from solo_rgbd.config import check_missing

    cfg = compose_experiment(args)
    if show:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    check_missing(cfg)
    spec = task_of(cfg)
    task_overrides(cfg, spec)  # before any cell runs
    check_protocols(cfg, spec)
    from solo_rgbd.compare.tracking import open_grid
    from solo_rgbd.data.store import keep_open

    check_grid(cfg)  # out is new, empty or this command's grid: nothing written before
    open_grid(cfg)  # the grid's parent run in MLflow, when the grid logs there
    with keep_open():  # each dataset decoded once for every cell and seed
        out, failed = run_compare(cfg, run_cell, spec.report)
    print((out / "tables.md").read_text())
    print(f"tables, CSVs and charts: {out}")
    from solo_rgbd.commands.report import report_at_end

    report_at_end(cfg, out)
    if failed:
        print(
            "failed cells (rerun the command to retry them):\n  " + "\n  ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0
