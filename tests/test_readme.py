"""The README's commands, run as written (issue 29).

Every shell command in a fenced ``bash``/``sh`` block of README.md is either run here, in the
README's order, from an empty folder with a fresh ``SOLO_RGBD_CACHE`` and no added override
(the progress bar is on, as it is for a user), or listed in ``SKIPPED`` with the reason. A new
command that is neither fails ``test_every_readme_command_is_run_or_skipped_with_a_reason``.
``<run>`` is the one thing filled in: the run folder the command before printed.

The main job runs twice: with its output to a pipe (CI, SLURM logs) and under a
pseudo-terminal (a person at a terminal), where tqdm draws its bar in place.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MAIN_JOB = "solo-rgbd pretrain method=mbcf"

#: the README's commands this test cannot run on a 2-core CPU box, and why
SKIPPED = {
    "pip install -e .[test]": "the tests run inside the installed package; .ci/run installs it",
    "pytest": "the test suite itself",
    "srun solo-rgbd pretrain experiment=paper resume=auto": "SLURM, and the paper's GPU run",
    "[ $? -eq 138 ]": "SLURM's requeue line",
    "scontrol requeue $SLURM_JOB_ID": "SLURM's requeue line",
    "solo-rgbd pretrain experiment=paper data=paper_pretrain data.base=/datasets": "the paper's "
    "datasets, and a GPU",
    "solo-rgbd pretrain experiment=gpu data=nju2k_nlpr data.base=/datasets": "the paper's "
    "datasets, and a GPU",
}


def readme_commands(text: str) -> list[list[str]]:
    """The argv of every command in the README's shell blocks, in order; ``a && b`` is two."""
    out: list[list[str]] = []
    for block in re.finditer(r"^( *)```(?:bash|sh|shell)\n(.*?)^ *```", text, re.S | re.M):
        indent = len(block.group(1))
        pending = ""
        for line in block.group(2).splitlines():
            pending += line[indent:] + "\n"
            if pending.endswith("\\\n"):  # a continuation line
                continue
            try:
                tokens = shlex.split(pending.replace("\\\n", " "), comments=True)
            except ValueError:  # a quote still open: the command goes on
                continue
            pending = ""
            part: list[str] = []
            for tok in [*tokens, "&&"]:
                if tok == "&&":
                    out += [part] if part else []
                    part = []
                else:
                    part.append(tok)
    return out


def key(argv: list[str]) -> str:
    """A command as ``SKIPPED`` spells it: its argv joined by single spaces (no quotes)."""
    return " ".join(" ".join(argv).split())


def test_the_readme_parser_reads_continuations_quotes_and_chains():
    text = (
        'x\n```bash\npip install -e ".[test]" && solo-rgbd pretrain method=mbcf\n```\n'
        "  ```bash\n  #!/bin/bash\n  srun a \\\n    b=1   # note\n  ```\n"
        "```bash\nsolo-rgbd sod eval t='[{a: 1},\n    {b: 2}]'\n```\n```python\nprint()\n```\n"
    )
    assert readme_commands(text) == [
        ["pip", "install", "-e", ".[test]"],
        ["solo-rgbd", "pretrain", "method=mbcf"],
        ["srun", "a", "b=1"],
        ["solo-rgbd", "sod", "eval", "t=[{a: 1},\n    {b: 2}]"],
    ]


def _plan() -> list[tuple[str, list[str] | None]]:
    """(key, argv to run, or None when skipped) for every README command, in order."""
    return [(key(a), None if key(a) in SKIPPED else a) for a in readme_commands(README.read_text())]


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    plan = _plan()
    run = [k for k, argv in plan if argv is not None]
    assert run and run[0] == MAIN_JOB, "the main job is the README's first command"
    unknown = [k for k in run if not k.startswith(("solo-rgbd ", "python -c "))]
    assert not unknown, f"README commands neither run here nor listed in SKIPPED: {unknown}"
    stale = sorted(set(SKIPPED) - {k for k, _ in plan})
    assert not stale, f"SKIPPED names commands the README no longer has: {stale}"
    for needed in ("sod train", "sod eval", "sod predict", "report", "data check", "data pack",
                   "ckpt info"):  # fmt: skip
        assert any(k.startswith(f"solo-rgbd {needed} ") for k in run), needed


# ----- running them --------------------------------------------------------------------------
def _printed_runs(text: str, prefix: str) -> list[str]:
    """The run names printed as ``<prefix>/<name>`` (relative or absolute), in order."""
    return re.findall(rf"(?<![\w.-]){re.escape(prefix)}/([\w.-]+)", text)


def _fill(argv: list[str], printed: str) -> list[str] | None:
    """``<run>`` replaced by the newest run folder under the same prefix that a command before
    printed; None while no command has printed one."""
    out = []
    for tok in argv:
        if "<run>" in tok:
            prefix = tok.split("=", 1)[-1].split("<run>")[0].rstrip("/")
            names = _printed_runs(printed, prefix)
            if not names:
                return None
            tok = tok.replace("<run>", names[-1])
        out.append(tok)
    return out


def _exe(argv: list[str]) -> list[str]:
    """``solo-rgbd`` of this interpreter's environment (the one pytest runs in)."""
    if "/" in argv[0]:
        return list(argv)
    script = Path(sys.executable).with_name(argv[0])
    return [str(script) if script.exists() else argv[0], *argv[1:]]


def _run_piped(argv: list[str], cwd: Path, env: dict) -> tuple[int, str]:
    proc = subprocess.run(
        _exe(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, timeout=900,
    )  # fmt: skip
    return proc.returncode, proc.stdout.decode(errors="replace")


def _run_in_pty(argv: list[str], cwd: Path, env: dict) -> tuple[int, str]:
    """As a person at a terminal runs it: stdin, stdout and stderr are a pseudo-terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a real window
    proc = subprocess.Popen(
        _exe(argv), cwd=cwd, env={**env, "TERM": "xterm", "COLUMNS": "120"},
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> dict:
    """Every README command that runs on a CPU, run as written in the README's order from an
    empty folder with a fresh cache; the main job once more under a pseudo-terminal."""
    cwd = tmp_path_factory.mktemp("readme_user")
    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path_factory.mktemp("fresh_cache"))}
    env.pop("SOLO_RGBD_DEBUG", None)
    results: dict[str, list[tuple[list[str], int, str]]] = {}
    printed = ""
    waiting = [argv for _, argv in _plan() if argv is not None]
    while waiting:
        ready = [(a, _fill(a, printed)) for a in waiting]
        todo = next(((a, f) for a, f in ready if f is not None), None)
        assert todo is not None, f"no command printed the run folder of {key(waiting[0])}"
        argv, filled = todo
        waiting.remove(argv)
        rc, out = _run_piped(filled, cwd, env)
        results.setdefault(key(argv), []).append((filled, rc, out))
        printed += out
        if key(argv) == MAIN_JOB and "pty" not in results:
            results["pty"] = [(filled, *_run_in_pty(filled, cwd, env))]
    return {"cwd": cwd, "results": results}


def _folder(cwd: Path, out: str, prefix: str) -> Path:
    names = _printed_runs(out, prefix)
    assert names, f"no {prefix}/<run> in:\n{out[-2000:]}"
    return cwd / prefix / names[-1]


@pytest.mark.slow
def test_every_runnable_readme_command_exits_0_without_a_traceback(readme_run):
    bad = [
        f"{' '.join(argv)}: exit {rc}\n{out[-3000:]}"
        for runs in readme_run["results"].values()
        for argv, rc, out in runs
        if rc != 0 or "Traceback" in out
    ]
    assert not bad, "\n\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_the_main_job_as_written_switches_stage_and_leaves_its_export_and_report(readme_run, how):
    cwd = readme_run["cwd"]
    _, rc, out = readme_run["results"][MAIN_JOB if how == "pipe" else "pty"][0]
    assert rc == 0, out[-3000:]
    assert "stage 2 (IntraCLM + InterCLM) starts at epoch 3" in out
    assert re.search(r"Epoch 5: 100%\|", out), "the progress bar was on and reached the end"
    run = _folder(cwd, out, "outputs/mbcf")
    for name in ("rgb.safetensors", "depth.safetensors", "encoders.json"):
        assert (run / "encoders" / name).stat().st_size > 0, name
    assert (run / "report.html").stat().st_size > 100_000
    sessions = json.loads((run / "run.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["finished"]


@pytest.mark.slow
def test_the_chained_commands_leave_what_they_say(readme_run):
    cwd, res = readme_run["cwd"], readme_run["results"]
    assert "mbcf" in res["solo-rgbd pretrain --help"][0][2]
    assert "queue_size" in res["solo-rgbd pretrain --cfg method=mbcf"][0][2]
    assert (cwd / "synth" / "RGB").is_dir() and len(list((cwd / "synth" / "RGB").iterdir())) == 64
    assert "total: 64 pairs in 1 root(s); all usable" in res["solo-rgbd data check synth"][0][2]
    assert (cwd / "packed" / "index.json").is_file() and not (cwd / "packed.partial").exists()
    info = res["solo-rgbd ckpt info outputs/mbcf/<run>/checkpoints/last.ckpt"][0][2]
    assert "momentum copies" in info and "tensors in all" in info
    assert "MBCF (two-stage 50% mask)" in res["solo-rgbd compare experiment=paper --plan"][0][2]
    train = res["solo-rgbd sod train encoders=outputs/mbcf/<run>"][0]
    sod_run = _folder(cwd, train[2], "outputs/sod/train")
    assert (sod_run / "checkpoints" / "best.ckpt").is_file()
    assert (sod_run / "eval" / "results.json").is_file()  # sod eval wrote into the run
    assert len(list((cwd / "maps").glob("*.png"))) == 64
    assert "maxF" in res["solo-rgbd sod score pred=maps data.path=synth"][0][2]
    report_runs = res["solo-rgbd report outputs/sod/train/<run>"]
    # the tracker snippet: the run's own MLflow store, opened by the installed MLflow
    opened = next(runs for k, runs in res.items() if k.startswith("python -c "))[0][2]
    assert re.search(r"^tracked FINISHED loss \d+\.\d+$", opened, re.M), opened
    reported = cwd / report_runs[0][0][2]  # the newest SOD run printed before it
    assert reported.parent == cwd / "outputs/sod/train" and (reported / "report.html").is_file()


def readme_package_files(text: str) -> dict[str, str]:
    """The README's plug-in example: fenced blocks with a ``# my_pkg...`` line among their
    first two, by the path that line names (``# my_pkg's setup.cfg`` for the entry points)."""
    files = {}
    for body in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        named = [ln for ln in body.splitlines()[:2] if ln.startswith("# my_pkg")]
        if named:
            files[named[0][2:].split(" (")[0].strip()] = body
    return files


@pytest.mark.slow
def test_the_readme_plugin_method_installs_and_pretrains_as_written(tmp_path):
    """The method, its YAML and its entry point, verbatim, as pip would install a package."""
    from tests.plugins import plugin_env

    files = readme_package_files(README.read_text())
    assert set(files) == {
        "my_pkg/my_method.py",
        "my_pkg/configs/method/my_method.yaml",
        "my_pkg's setup.cfg",
    }
    site = tmp_path / "site"
    for name, body in files.items():
        if name.startswith("my_pkg/"):
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_text(body)
    (site / "my_pkg" / "__init__.py").write_text("")
    entry = [ln.strip() for ln in files["my_pkg's setup.cfg"].splitlines() if "=" in ln]
    group, point = entry[0].rstrip(" =").strip(), entry[1]
    meta = site / "my_pkg-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: my_pkg\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text(f"[{group}]\n{point}\n")
    env = plugin_env(site, tmp_path / "cache")
    args = [
        "pretrain", "method=my_method", "backbone=tiny", "data.synthetic.n=16",
        "data.synthetic.size=32", "data.image_size=32", "data.batch_size=8",
        "augmentations.crop_size=32", "trainer.max_epochs=1", "method_kwargs.queue_size=16",
        "trainer.enable_progress_bar=false", "log_every_n_steps=1", f"output_dir={tmp_path}",
        "run_name=r",
    ]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "solo_rgbd.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "my_method" / "r"
    rows = (folder / "logs" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].split(",").count("loss") == 1  # 2 steps, both logged
    assert (folder / "encoders" / "encoders.json").is_file()
    saved = (folder / "config.yaml").read_text()
    assert "temperature: 0.2" in saved and "queue_size: 16" in saved


@pytest.mark.slow
def test_the_own_folder_recipe_names_the_data_and_scores_the_held_out_folder(readme_run):
    """README "Your own folder, end to end": check, pretrain, SOD head, scores on a held-out
    folder; the data is named after its folder, never ``synthetic``."""
    cwd, res = readme_run["cwd"], readme_run["results"]
    check = res["solo-rgbd data check my_rgbd"][0][2]
    assert "total: 200 pairs in 1 root(s); all usable" in check
    assert "polarity: near = bright with invert_depth=false" in check
    pretrain = res["solo-rgbd pretrain data.path=my_rgbd run_name=mine"][0][2]
    assert "preparing data 'my_rgbd'" in pretrain
    assert "cached at 56x56, more than 2x smaller; set data.image_size=N" in pretrain
    assert "name: my_rgbd" in (cwd / "outputs/mbcf/mine/config.yaml").read_text()
    assert "synthetic" not in (cwd / "outputs/mbcf/mine/run.json").read_text()
    scores = json.loads((cwd / "outputs/sod/train/mine/eval/results.json").read_text())
    held_out = scores["mine"]["mine"]["all"]  # {model: {test set: {subset: scores}}}
    assert held_out["n"] == 64 and held_out["maxF"] > 0.6 and held_out["MAE"] < 0.15, held_out
