"""Nothing the library prints can break under a progress bar (issue 29): the README's main
job crashed at MBCF's stage switch because ``self.print(..., flush=True)`` reached
``tqdm.write``, which takes no ``flush``."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from solo_rgbd.utils.console import say

PKG = Path(__file__).resolve().parent.parent / "solo_rgbd"
#: parts whose code runs inside Trainer.fit, where a bar may be on screen
IN_LOOP = {"methods", "engine", "nn", "tasks", "losses", "augment", "evaluation"}


def test_say_prints_one_line_above_an_active_tqdm_bar(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with tqdm(total=4, file=out, ascii=True) as bar:
        bar.update(1)
        say("stage 2 starts at epoch 3")
        bar.update(1)
    text = out.getvalue()
    assert text.count("stage 2 starts at epoch 3\n") == 1
    assert "2/4" in text  # the bar was redrawn after the line


def test_say_under_lightnings_own_bar_and_on_other_ranks(monkeypatch, capsys):
    from lightning.pytorch.callbacks import TQDMProgressBar

    bar = TQDMProgressBar()
    bar._train_progress_bar = bar.init_train_tqdm()  # an active bar, as during fit
    try:
        say("to stdout")
        say("to stderr", err=True)
        monkeypatch.setenv("RANK", "1")
        say("rank 1 stays quiet")
        say("unless asked", all_ranks=True, err=True)
    finally:
        bar._train_progress_bar.close()
    captured = capsys.readouterr()
    assert "to stdout" in captured.out and "rank 1" not in captured.out + captured.err
    assert "to stderr" in captured.err and "unless asked" in captured.err


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            yield node


def test_no_lightning_print_and_no_bare_print_inside_the_loop():
    """Lightning's ``self.print`` forwards its keywords to the bar; a bare ``print`` inside
    the loop garbles it. Both go through ``utils.console.say``."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        for call in _calls(path):
            f = call.func
            if isinstance(f, ast.Attribute) and f.attr == "print":
                bad.append(f"{rel}:{call.lineno}: .print(...)")
            in_loop = rel.parts[0] in IN_LOOP
            if isinstance(f, ast.Name) and f.id == "print" and in_loop:
                bad.append(f"{rel}:{call.lineno}: print(...)")
    assert not bad, "use solo_rgbd.utils.console.say:\n" + "\n".join(bad)


@pytest.mark.parametrize("err", [False, True])
def test_say_without_any_bar_is_a_plain_flushed_line(capsys, err):
    say("plain", err=err)
    captured = capsys.readouterr()
    assert (captured.err if err else captured.out) == "plain\n"
