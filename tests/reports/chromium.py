"""Render a report in headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) and
read back what the browser drew.

A copy of the page gets a probe script at its end. It waits until every plot has drawn its SVG,
then writes the rendered size of every plot and image into the DOM. ``--dump-dom`` returns that
DOM, and the browser's console (``--enable-logging=stderr``) shows any message a script
printed. The report itself carries no test code.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
PROBE = """<script>
(function(){
  var t0 = Date.now();
  function drawn(){ return Array.from(document.querySelectorAll('div.plot')).every(
    function(d){ return d.querySelector('svg.main-svg'); }); }
  function size(e){ var r = e.getBoundingClientRect(); return [r.width, r.height]; }
  function report(){
    var out = {plots: [], svgs: [], images: [], waited_ms: Date.now() - t0};
    document.querySelectorAll('div.plot').forEach(function(d){
      out.plots.push(size(d));
      var svg = d.querySelector('svg.main-svg'); out.svgs.push(svg ? size(svg) : [0, 0]); });
    document.querySelectorAll('img').forEach(function(i){
      out.images.push(size(i).concat([i.naturalWidth, i.naturalHeight])); });
    var pre = document.createElement('pre'); pre.id = 'probe';
    pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
  }
  (function wait(){
    if (drawn() || Date.now() - t0 > 30000) report(); else setTimeout(wait, 50); })();
})();
</script>"""


@dataclass
class Rendered:
    dom: str
    console: list[str]  # the page's console messages (none expected)
    plots: list[list[float]]  # [width, height] of every plot's div
    svgs: list[list[float]]  # [width, height] of the SVG each plot drew
    images: list[list[float]]  # [width, height, natural width, natural height] of every <img>
    screenshot: Path


def _chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, "--virtual-time-budget=60000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def render(page: Path, tmp: Path, height: int = 2400) -> Rendered:
    """Load ``page`` from disk in headless Chromium; a screenshot goes to ``tmp``."""
    probed = tmp / f"probed-{page.name}"
    html = page.read_text(encoding="utf-8")
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium("--dump-dom", probed.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, "the probe never ran: the page's scripts did not finish"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    shot = tmp / f"{page.stem}.png"
    done = _chromium(
        f"--window-size=1280,{height}", f"--screenshot={shot}", page.resolve().as_uri()
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(dom.stdout, console, probe["plots"], probe["svgs"], probe["images"], shot)


class _Tables(HTMLParser):
    """The text of every table cell, table by table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(dom: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(dom)
    return parser.tables


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown file, rows of cell texts (bold marks removed)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            current.append(line)
            continue
        if current:
            rows = [current[0], *current[2:]]
            tables.append(
                [
                    [c.strip().replace("**", "") for c in r.strip().strip("|").split("|")]
                    for r in rows
                ]
            )
            current = []
    return tables
