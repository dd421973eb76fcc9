"""One self-contained HTML page: sections with anchors, sortable tables, plots and images.

Plots are plotly figures (exact values on hover). Plotly's JavaScript (4.8 MB) is inlined once,
gzipped and base64-encoded (2.0 MB), and unpacked by the browser's own ``DecompressionStream``
(Chrome 80, Firefox 113, Safari 16.4 and later): no CDN and no network, and a grid's page stays
small enough to attach to an email. Images are inlined as data URIs. Tables sort on a header
click. Only the loader and the sorter below are script; no chart is hand-written.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import html
import io
import json
import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: the largest file a page reads (larger: named, not read)
MAX_READ = 512 << 20
#: the largest image a page decodes, in pixels (its header is read first)
MAX_PIXELS = 64_000_000
#: what a damaged file of the wrong shape raises deep inside a part of a page
PART_DAMAGE = (KeyError, TypeError, AttributeError, ValueError, IndexError, OSError, RecursionError)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222}
nav a{margin-right:1em} h2{border-bottom:1px solid #ccc;padding-top:.5em}
table{border-collapse:collapse;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;cursor:pointer} td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{background:#fff4e0;border-left:4px solid #e69500;padding:.5em 1em}
.note{background:#eef5ff;border-left:4px solid #3a7bd5;padding:.5em 1em}
pre{background:#f8f8f8;padding:1em;overflow:auto;max-height:30em}
table.images td{border:none;padding:1px;text-align:center;font-size:80%}
table.images img{display:block;image-rendering:pixelated}
div.plot{min-height:360px}
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
_LOADER = """
(async function(){
  var divs = document.querySelectorAll('div.plot');
  try {
    var bin = atob(document.getElementById('plotly-gz').textContent);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var unpacked = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    var code = await new Response(unpacked).text(), s = document.createElement('script');
    s.textContent = code; document.head.appendChild(s);
  } catch (e) {
    divs.forEach(function(d){ d.textContent = 'This browser cannot unpack the inlined plotting ' +
      'library (it needs DecompressionStream: Chrome 80, Firefox 113, Safari 16.4 or later); ' +
      'the tables hold every number.'; });
    return;
  }
  var figs = JSON.parse(document.getElementById('figures').textContent);
  divs.forEach(function(d){ var f = figs.figures[+d.dataset.fig];
    if (f.layout.template === undefined) f.layout.template = figs.template;
    Plotly.newPlot(d, f.data, f.layout, {responsive: true, displaylogo: false}); });
})();
"""


@functools.lru_cache(maxsize=1)
def plotly_gzip_b64() -> str:
    """plotly.min.js of the installed plotly, gzipped (deterministic) and base64-encoded."""
    import plotly

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return base64.b64encode(gzip.compress(js.read_bytes(), compresslevel=9, mtime=0)).decode()


@functools.lru_cache(maxsize=1)
def default_template() -> dict:
    """plotly's default figure template, as JSON."""
    import plotly.graph_objects as go

    return json.loads(go.Figure().to_json())["layout"]["template"]


def _script_json(value: object) -> str:
    """JSON that is safe inside a <script> element: no ``<``, ``>`` or ``&`` is left for the
    HTML parser (a ``<!--<script>`` in a name would otherwise swallow the page's scripts)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


#: every page carries it: a report.html without it is not replaced (the user's own file)
GENERATOR = '<meta name="generator" content="solo-rgbd report">'

#: the most points a curve keeps on the page (evenly spaced, the last one kept)
MAX_POINTS = 2000


def _as_text(value: object) -> object:
    """Every string of a plotly figure as text, never markup: plotly draws ``<a href>``, ``<b>``
    and the like in names, titles and tick labels, so ``<``, ``>`` and ``&`` become entities
    (which plotly shows as the characters)."""
    if isinstance(value, str):
        return html.escape(value, quote=False) if any(c in value for c in "<>&") else value
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    return value


def even_indices(n: int) -> list[int]:
    """MAX_POINTS evenly spaced indices of ``n`` items, the first and last included."""
    return [round(i * (n - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)]


def _thin(trace: dict) -> bool:
    """At most MAX_POINTS points per curve; True when the trace was thinned."""
    n = max((len(trace[k]) for k in ("x", "y") if isinstance(trace.get(k), list)), default=0)
    if n <= MAX_POINTS:
        return False
    keep = even_indices(n)
    for k in ("x", "y", "text", "error_y"):
        if isinstance(trace.get(k), list) and len(trace[k]) == n:
            trace[k] = [trace[k][i] for i in keep]
    return True


def rounded(values: Sequence[float], digits: int = 5) -> list[float | None]:
    """Values to ``digits`` significant digits (smaller pages); non-finite ones as gaps."""
    out: list[float | None] = []
    for v in values:
        v = float(v)
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


@dataclass
class Page:
    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, title, html)
    missing: list[str] = field(default_factory=list)  # what the folder lacks or what failed
    figures: list[dict] = field(default_factory=list)  # plotly figure dicts, by index
    notes: list[str] = field(default_factory=list)  # how the page shows the data
    root: Path | None = None  # the folder the page describes: nothing outside it is read

    def inside(self, file: Path) -> bool:
        """Whether ``file`` (symlinks followed) lies in the page's folder; if not it is named on
        the page as outside and not read (a link or a ``..`` name must not embed other files)."""
        if self.root is None:
            return True
        try:
            file.resolve().relative_to(self.root.resolve())
            return True
        except (ValueError, OSError, RuntimeError):
            self.missing.append(f"{file}: outside {self.root}, not read")
            return False

    def readable(self, file: Path, limit: int | None = None) -> bool:
        """:meth:`inside`, and a regular file (a FIFO or a device would block the read) of at
        most ``limit`` bytes (default :data:`MAX_READ`); otherwise named and not read."""
        if not self.inside(file):
            return False
        try:
            st = os.stat(file)
        except OSError:
            return True  # missing: the reader names it
        if not stat.S_ISREG(st.st_mode):
            self.missing.append(f"{file}: not a regular file (a FIFO, device or folder), not read")
            return False
        if st.st_size > (MAX_READ if limit is None else limit):
            self.missing.append(f"{file}: too large to read here ({st.st_size / 2**30:.1f} GiB)")
            return False
        return True

    @contextlib.contextmanager
    def part(self, title: str) -> Iterator[None]:
        """Build one part of the page; a damaged file it reads names that part on the page and
        the rest of the page is kept."""
        try:
            yield
        except PART_DAMAGE as exc:
            self.missing.append(f"{title}: not shown, a file it reads is damaged ({exc!r:.300})")

    def image(self, file: Path, mode: str) -> Image.Image | None:
        """``file`` as a PIL image in ``mode`` (regular, inside, at most :data:`MAX_PIXELS`
        pixels: the header is checked before decoding), or None, named on the page."""
        if not self.readable(file):
            return None
        try:
            with Image.open(file) as img:
                if img.width * img.height > MAX_PIXELS:
                    self.missing.append(f"{file}: {img.width} x {img.height} pixels, not decoded")
                    return None
                return img.convert(mode)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            self.missing.append(f"{file}: missing or unreadable ({type(exc).__name__})")
            return None

    def section(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def figure(self, fig) -> str:
        """A plotly figure as a placeholder div; the page's loader draws it. The default
        template (7 kB of JSON) is stored once for every figure that uses it."""
        spec = json.loads(fig.to_json())
        template = spec["layout"].pop("template", None)
        spec = _as_text(spec)
        if template is not None and template != default_template():
            spec["layout"]["template"] = template
        if any([_thin(t) for t in spec.get("data", [])]):
            self._say_thinned()
        self.figures.append(spec)
        return f'<div class="plot" data-fig="{len(self.figures) - 1}"></div>'

    def thin(self, points: list) -> list:
        """At most MAX_POINTS of ``points`` (evenly spaced, the last kept), said on the page;
        thinning before plotly builds a figure keeps a 200,000-row log fast."""
        if len(points) <= MAX_POINTS:
            return points
        self._say_thinned()
        return [points[i] for i in even_indices(len(points))]

    def _say_thinned(self) -> None:
        note = (
            f"curves with more than {MAX_POINTS:,} points are drawn at {MAX_POINTS:,} evenly "
            "spaced points (the CSV files hold every value)"
        )
        if note not in self.notes:
            self.notes.append(note)

    def render(self) -> str:
        nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in self.sections)
        warn = ""
        if self.missing:
            items = "".join(f"<li>{html.escape(m)}</li>" for m in self.missing)
            warn = (
                f'<div class="missing" id="missing"><b>Missing or damaged:</b><ul>{items}</ul>'
                "</div>"
            )
        warn += "".join(f'<p class="note">{html.escape(n)}</p>' for n in self.notes)
        body = "".join(
            f'<section id="{a}"><h2>{html.escape(t)}</h2>{b}</section>' for a, t, b in self.sections
        )
        scripts = f"<script>{_SORT}</script>"
        if self.figures:
            scripts += (
                f'<script type="application/octet-stream" id="plotly-gz">{plotly_gzip_b64()}'
                f'</script><script type="application/json" id="figures">'
                f"{_script_json({'template': default_template(), 'figures': self.figures})}"
                f"</script><script>{_LOADER}</script>"
            )
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'>{GENERATOR}"
            f"<title>{html.escape(self.title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f"<nav>{nav}</nav>{warn}{body}{scripts}</body></html>"
        )

    def write(self, out: Path) -> Path:
        """``out`` written atomically (temporary name, then rename); names that are not valid
        UTF-8 are shown escaped."""
        from solo_rgbd.utils.atomic import atomic_write_bytes

        atomic_write_bytes(self.render().encode("utf-8", "backslashreplace"), out)
        return out


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


def image(array: np.ndarray, alt: str, width: int = 96) -> str:
    """An ``<img>`` with the picture inlined: HxW (gray) or HxWx3 uint8, shown ``width`` px
    wide; stored at most that wide (WebP, lossless for gray maps so that a mask stays a mask)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(array))
    height = max(1, round(img.height * width / img.width))
    if img.width > width:  # never stored larger than shown
        img = img.resize((width, height), Image.BILINEAR)
    buf = io.BytesIO()
    if img.mode == "L":
        img.save(buf, format="WEBP", lossless=True)
    else:
        img.save(buf, format="WEBP", quality=80)
    data = base64.b64encode(buf.getvalue()).decode()
    return (
        f'<img src="data:image/webp;base64,{data}" alt="{html.escape(alt)}" '
        f'title="{html.escape(alt)}" width="{width}" height="{height}">'
    )


def image_grid(header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A table of images: a header of captions, then (label, image cells) rows."""
    head = "<th></th>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        for label, cells in rows
    )
    return f'<table class="images"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
