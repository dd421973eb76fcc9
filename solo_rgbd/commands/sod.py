"""``solo-rgbd sod {train,eval,predict,score}``: the downstream RGB-D SOD workflow.

The workflows live in :mod:`solo_rgbd.commands.sod_train` and
:mod:`solo_rgbd.commands.sod_eval`; :data:`TASK` is the SOD task with them, as registered
in the ``solo_rgbd.tasks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from solo_rgbd.config import compose
from solo_rgbd.errors import SoloRGBDError
from solo_rgbd.tasks.sod.spec import SOD

ACTIONS = ("train", "eval", "predict", "score")


def _train(cfg: DictConfig, argv: Sequence[str] | None = None) -> Path:
    from solo_rgbd.commands.sod_train import sod_train

    return sod_train(cfg, argv)


def _evaluate(cfg: DictConfig) -> Path:
    from solo_rgbd.commands.sod_eval import sod_eval

    return sod_eval(cfg)


def _export(run: Path, out: Path) -> Path:
    from solo_rgbd.commands.sod_train import supervised_encoders

    return supervised_encoders(run, out)


def _probe(cfg: DictConfig) -> dict:
    from solo_rgbd.commands.sod_eval import sod_probe

    return sod_probe(cfg)


def _online_probes(cfg: DictConfig) -> list:
    from solo_rgbd.tasks.sod.probes import probes_from_config

    return probes_from_config(cfg)


#: the SOD task with its workflows (entry point ``sod`` of ``solo_rgbd.tasks``)
TASK = SOD.with_workflows(
    train=_train,
    evaluate=_evaluate,
    export_encoders=_export,
    linear_probe=_probe,
    online_probes=_online_probes,
)


HELP = """usage: solo-rgbd sod {train,eval,predict,score} [--cfg] [key=value ...]

The downstream RGB-D SOD workflow on frozen (or fine-tuned) encoders:
  train    train the decoder: solo-rgbd sod train encoders=outputs/mbcf/<run>
  eval     score a trained run on its test sets: solo-rgbd sod eval ckpt=outputs/sod/train/<run>
  predict  saliency maps of a folder: solo-rgbd sod predict ckpt=<run> input=DIR out=DIR
  score    score maps against GT: solo-rgbd sod score pred=DIR data.path=DIR"""


def run_sod_command(args: Sequence[str]) -> int:
    from solo_rgbd.commands.helptext import cfg_flag, keys_help

    args = list(args)
    if not args or args[0] in ("-h", "--help") or args[0] not in ACTIONS:
        print(HELP)
        if args and args[0] not in ("-h", "--help"):
            raise SoloRGBDError(f"unknown sod action '{args[0]}'; use one of {', '.join(ACTIONS)}.")
        return 0
    if "-h" in args or "--help" in args:
        rest = [a for a in args[1:] if a not in ("-h", "--help")]
        print(f"{HELP}\n\n{keys_help(compose('sod', rest), f'sod {args[0]}')}")
        return 0
    show, rest = cfg_flag(args[1:])
    args = [args[0], *rest]
    cfg = compose("sod", rest)
    if show:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    from solo_rgbd.commands.report import report_at_end

    if args[0] == "train":
        report_at_end(cfg, _train(cfg, args[1:]))
        return 0
    from solo_rgbd.commands import sod_eval

    if args[0] == "eval":
        out = sod_eval.sod_eval(cfg)
        run = out.parent  # the task run's page, when the eval sits in it (the default)
        report_at_end(cfg, run if out.name == "eval" and (run / "config.yaml").is_file() else out)
        return 0
    {"predict": sod_eval.sod_predict, "score": sod_eval.sod_score}[args[0]](cfg)
    return 0
