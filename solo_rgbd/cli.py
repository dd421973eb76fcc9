"""``solo-rgbd``: one function per subcommand, no logic of its own.

solo-rgbd pretrain [method=NAME] [group=option] [key=value ...]
solo-rgbd data synth OUT --n N [--seed S] [--size PX]
solo-rgbd data check PATH [PATH ...] [--invert-depth] [--json]
solo-rgbd sod {train,eval,predict} [key=value ...]
solo-rgbd ckpt info PATH
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

from solo_rgbd.errors import SoloRGBDError

MAIN_HELP = """usage: solo-rgbd {pretrain,sod,data,compare,ckpt,report} ...

Self-supervised pretraining for paired RGB-D images.

subcommands:
  pretrain   pretrain encoders (Hydra overrides, e.g. method=mbcf backbone=resnet18)
  sod        train / evaluate / predict with the SOD decoder on frozen encoders
  data       synthesise or check RGB-D datasets ('solo-rgbd data --help')
  compare    pretrain -> SOD -> evaluation for a grid of methods; the paper's tables
  ckpt       'solo-rgbd ckpt info PATH': what a checkpoint holds, part by part
  report     'solo-rgbd report PATH': report.html of a pretraining run, a task run or a grid

'solo-rgbd pretrain --help' lists the config groups and the registered methods.
"""


def _pretrain_help() -> str:
    from solo_rgbd.config import CONFIG_GROUPS, group_options
    from solo_rgbd.methods.registry import registered_methods

    lines = [
        "usage: solo-rgbd pretrain [--cfg] [group=option ...] [key=value ...]",
        "",
        "Pretrain RGB and depth encoders; each run writes config.yaml, logs/metrics.csv,",
        "checkpoints/ and encoders/ to ${output_dir}/${method}/<timestamp>.",
        "",
        f"registered methods: {', '.join(registered_methods())}",
        "",
        "config groups (group=option):",
    ]
    for group in CONFIG_GROUPS:
        lines.append(f"  {group:<14} {', '.join(group_options(group))}")
    lines += [
        "",
        "examples:",
        "  solo-rgbd pretrain method=mbcf                      # quick preset, synthetic data",
        "  solo-rgbd pretrain backbone=resnet18 trainer.max_epochs=1",
        "  solo-rgbd pretrain experiment=paper data=paper_pretrain data.base=/datasets",
        "  solo-rgbd pretrain --cfg method=mbcf                # print the composed config",
        "",
        "Configs are strict: an unknown key is an error that names the closest valid key.",
    ]
    return "\n".join(lines)


def cmd_pretrain(args: Sequence[str]) -> int:
    from solo_rgbd.commands.helptext import cfg_flag, keys_help
    from solo_rgbd.config import compose

    if "-h" in args or "--help" in args:
        rest = [a for a in args if a not in ("-h", "--help")]
        print(_pretrain_help() + "\n\n" + keys_help(compose("pretrain", rest), "pretrain"))
        return 0
    from omegaconf import OmegaConf

    from solo_rgbd.config import quick_check
    from solo_rgbd.utils.console import say

    show, args = cfg_flag(args)
    quick_check("pretrain", args)  # a typo answers here, in about a second
    if not show:
        say("solo-rgbd pretrain: config read; loading PyTorch, Lightning and the method")
    cfg = compose("pretrain", args)
    if show:
        print(OmegaConf.to_yaml(cfg))
        return 0
    from solo_rgbd.commands.pretrain import run_pretrain
    from solo_rgbd.commands.report import report_at_end

    run_dir = run_pretrain(cfg, argv=args)
    print(f"run folder: {run_dir}")
    print(f"encoders:   {run_dir / 'encoders'}")
    report_at_end(cfg, run_dir)
    return 0


def cmd_data(args: Sequence[str]) -> int:
    from solo_rgbd.commands.data import run_data_command

    return run_data_command(args)


def cmd_compare(args: Sequence[str]) -> int:
    from solo_rgbd.commands.compare import run_compare_command

    return run_compare_command(args)


def cmd_ckpt(args: Sequence[str]) -> int:
    from solo_rgbd.commands.ckpt import run_ckpt_command

    return run_ckpt_command(args)


def cmd_report(args: Sequence[str]) -> int:
    from solo_rgbd.commands.report import run_report_command

    return run_report_command(args)


def cmd_sod(args: Sequence[str]) -> int:
    from solo_rgbd.commands.sod import run_sod_command

    return run_sod_command(args)


COMMANDS = {
    "pretrain": cmd_pretrain,
    "data": cmd_data,
    "sod": cmd_sod,
    "compare": cmd_compare,
    "ckpt": cmd_ckpt,
    "report": cmd_report,
}


def _os_error(exc: OSError) -> str:
    where = f" '{exc.filename}'" if exc.filename else ""
    what = exc.strerror or str(exc)
    hint = {
        "ELOOP": "a symbolic link points back to itself; fix or remove the link",
        "EACCES": "the file or folder is not readable/writable by you; fix its permissions",
        "EPERM": "the file or folder is not readable/writable by you; fix its permissions",
        "EROFS": "the file system is read-only; point output_dir / SOLO_RGBD_CACHE elsewhere",
        "ENOSPC": "the disk is full; free space or write elsewhere",
        "EFBIG": "the file would pass the size limit of this process (ulimit -f) or of the "
        "file system; raise the limit or write elsewhere",
        "EIO": "the disk or file system failed the write; check the device and write elsewhere",
        "ENOTDIR": "a part of the path is a file, not a folder; choose another path",
        "EEXIST": "a file stands where a folder is needed; choose another path",
        "ENOENT": "it does not exist; check the path",
    }.get(errno.errorcode.get(exc.errno or 0, ""), "check the path and its permissions")
    return f"cannot access{where}: {what}. Likely cause: {hint}."


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(MAIN_HELP)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f"error: unknown subcommand '{command}'; use one of: {', '.join(COMMANDS)}.",
            file=sys.stderr,
        )
        return 2
    try:
        if command in ("pretrain", "sod", "compare") and not {"-h", "--help", "--cfg"} & set(rest):
            from solo_rgbd.engine.quiet import set_verbosity

            set_verbosity("verbose=true" in rest, load=False)
        rc = COMMANDS[command](rest)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return rc
    except SoloRGBDError as exc:
        from solo_rgbd.utils.console import end_bars

        end_bars()  # the message starts on a line of its own, not after a bar
        print(f"{'stopped' if exc.exit_code > 128 else 'error'}: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `solo-rgbd ... | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # unreadable / read-only / looping paths in data or outputs
        if os.environ.get("SOLO_RGBD_DEBUG"):
            raise
        print(f"error: {_os_error(exc)} (SOLO_RGBD_DEBUG=1 shows the traceback.)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
