"""Reports in a real browser: headless Chromium (Debian's ``chromium``, installed by
``.ci/run``) loads a page from disk with no console message and renders every plot and image
with a non-zero size; a screenshot is written under the test's temp folder. The quick grid's
page is checked the same way in ``tests/compare/test_compare.py`` (it reuses that grid)."""

import json
import re

import pytest

from solo_rgbd.cli import main
from tests.conftest import SHORT_MBCF, tiny_overrides
from tests.reports.chromium import needs_chromium, render

pytestmark = pytest.mark.slow


@needs_chromium
def test_a_real_runs_report_renders_in_chromium_without_console_messages(tmp_path):
    args = ["pretrain", "method=mbcf", "run_name=r", *tiny_overrides(tmp_path, **SHORT_MBCF)]
    assert main(args) == 0  # the report is written when the run finishes
    run = tmp_path / "outputs" / "mbcf" / "r"
    info = json.loads((run / "run.json").read_text())
    (session,) = info["sessions"]
    assert session["status"] == "finished" and session["wall_s"] > 0
    assert session["device"]["accelerator"] == "cpu" and session["versions"]["torch"]
    shown = render(run / "report.html", tmp_path)
    assert shown.console == []  # no error, warning or log from the page's scripts
    # every panel drew its svg: the five of before, and (issue 31) the
    # modality reliance and the mask diagnostics of stage 2
    assert len(shown.plots) == 7 and len(shown.svgs) == 7
    assert 'id="reliance"' in shown.dom and 'id="mask"' in shown.dom
    assert all(w > 0 and h > 0 for w, h in shown.plots + shown.svgs)
    assert "How the run was started" in shown.dom and session["command"] in shown.dom
    assert shown.screenshot.stat().st_size > 10_000
    assert shown.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_an_adversarial_name_leaves_every_plot_drawn_and_no_live_link(tmp_path):
    """Issue 30, finding 4: a ``<!--<script>`` in a metric's name made the browser swallow the
    script that draws the plots (0 of 4 drawn); an ``<a href>`` became a live legend link."""
    from solo_rgbd.reports.build import write_report
    from tests.reports.test_run_report import _run

    run = _run(tmp_path)
    csv = run / "logs" / "metrics.csv"
    header, *rows = csv.read_text().splitlines()
    evil = ["loss_<!--<script>", "loss_<a href=https://example.com/x>click</a>"]
    csv.write_text("\n".join([header + "," + ",".join(evil), *[r + ",1,2" for r in rows]]) + "\n")
    page = write_report(run)
    shown = render(page, tmp_path)
    assert shown.console == []
    assert len(shown.plots) == 5 and len(shown.svgs) == 5  # every plot drew
    assert all(w > 0 and h > 0 for w, h in shown.plots + shown.svgs)
    assert "example.com/x" in shown.dom  # the name is shown, as text
    assert not re.search(r'href="[^"]*example\.com', shown.dom)  # not as a live link
