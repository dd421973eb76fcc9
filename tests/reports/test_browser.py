"""A pretraining run's report in a real browser: headless Chromium (Debian's ``chromium``,
installed by ``.ci/run``) loads it from disk with no console message, renders every plot with a
non-zero size, and writes a screenshot under the test's temp folder."""

import re
import shutil
import subprocess

import pytest

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.reports.run import write_report
from tests.conftest import SHORT_MBCF, tiny_overrides

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]


def _chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_real_runs_report_renders_in_chromium_without_console_messages(tmp_path):
    cfg = compose("pretrain", ["method=mbcf", *tiny_overrides(tmp_path, **SHORT_MBCF)])
    page = write_report(run_pretrain(cfg))
    url = page.resolve().as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no error, warning or log from the page's scripts
    plots = dom.stdout.count('class="plotly-graph-div')
    sizes = re.findall(r'<svg class="main-svg"[^>]*?width="(\d+)" height="(\d+)"', dom.stdout)
    assert plots == 5 and len(sizes) >= plots  # every plot drew its svg
    assert all(int(w) > 0 and int(h) > 0 for w, h in sizes)
    shot = tmp_path / "report.png"
    done = _chromium("--window-size=1280,2400", f"--screenshot={shot}", url)
    assert done.returncode == 0 and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
