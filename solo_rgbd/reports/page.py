"""One self-contained HTML page: sections with anchors, sortable tables, inlined plots.

Plots are plotly figures; the page inlines plotly's JavaScript once (no CDN, no network), so it
opens from disk in any browser and shows exact values on hover. Tables sort on a header click
(a few lines of script below; plots are never hand-written).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222}
nav a{margin-right:1em} h2{border-bottom:1px solid #ccc;padding-top:.5em}
table{border-collapse:collapse;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;cursor:pointer} td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{background:#fff4e0;border-left:4px solid #e69500;padding:.5em 1em}
pre{background:#f8f8f8;padding:1em;overflow:auto;max-height:30em}
"""
_SORT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


@dataclass
class Page:
    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, title, html)
    missing: list[str] = field(default_factory=list)  # what the run folder lacks
    _plotly_inlined: bool = False

    def section(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def figure(self, fig) -> str:
        """A plotly figure as a div; plotly's script is inlined with the first one."""
        first = not self._plotly_inlined
        self._plotly_inlined = True
        return fig.to_html(full_html=False, include_plotlyjs=first, config={"responsive": True})

    def render(self) -> str:
        nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in self.sections)
        warn = ""
        if self.missing:
            items = "".join(f"<li>{html.escape(m)}</li>" for m in self.missing)
            warn = (
                f'<div class="missing" id="missing"><b>Missing or damaged:</b><ul>{items}</ul>'
                "</div>"
            )
        body = "".join(
            f'<section id="{a}"><h2>{html.escape(t)}</h2>{b}</section>' for a, t, b in self.sections
        )
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f"<nav>{nav}</nav>{warn}{body}<script>{_SORT}</script></body></html>"
        )


def table(header: Sequence[str], rows: Sequence[Sequence[object]], marks=None) -> str:
    """A sortable table; numbers right-aligned, ``marks`` (row, col) cells in bold."""
    marks = marks or set()
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            text = _fmt(value)
            if (i, j) in marks:
                text = f"<b>{text}</b>"
            kind = ' class="num"' if isinstance(value, (int, float)) else ""
            cells.append(f"<td{kind}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    rows_html = "".join(body)
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
