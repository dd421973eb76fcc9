"""What a report weighs and costs: size by part, time to write, time to render.

    python bench/report_size.py FOLDER [FOLDER ...] [--render]
    python bench/report_size.py --long-run 200000      # a fake run with a 200,000-row log

For each folder (a pretraining run, a task run or eval folder, a compare folder) it writes
``report.html`` three times and prints JSON: the page's bytes split into plotly's gzipped
library, the figures' JSON, the inlined images and the rest (tables, text); the median seconds
to write it (the cost ``pretrain``, ``sod`` and ``compare`` pay at the end, plotly's import
included in the first); with ``--render``, the seconds headless Chromium takes to load it and
draw every plot (the ``tests/reports/chromium.py`` probe).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parts(text: str) -> dict[str, int]:
    size = len(text.encode())
    gz = re.search(r'id="plotly-gz">([^<]*)<', text)
    figs = re.search(r'id="figures">(.*?)</script>', text, re.S)
    images = sum(len(m) for m in re.findall(r'src="data:image/[^"]+"', text))
    lib = len(gz.group(1)) if gz else 0
    fig = len(figs.group(1).encode()) if figs else 0
    return {
        "bytes": size,
        "plotly_gzip_b64": lib,
        "figures_json": fig,
        "images": images,
        "rest": size - lib - fig - images,
        "plots": text.count('<div class="plot"'),
        "img_tags": text.count("<img "),
    }


def main() -> None:
    from solo_rgbd.reports.build import write_report

    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--render", action="store_true")
    parser.add_argument(
        "--long-run", type=int, default=0, help="also a pretraining run with this many log rows"
    )
    args = parser.parse_args()
    out = {}
    folders = list(args.folders)
    if args.long_run:
        import tempfile

        from tests.reports.test_run_report import _run

        folders.append(_run(Path(tempfile.mkdtemp()), rows=args.long_run))
    for folder in folders:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            page = write_report(folder)
            times.append(time.perf_counter() - t0)
        row = {**parts(page.read_text()), "write_s_first": round(times[0], 3)}
        row["write_s_median"] = round(statistics.median(times), 3)
        if args.render:
            import tempfile

            from tests.reports.chromium import render

            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                shown = render(page, Path(tmp))
                row["render_s"] = round(time.perf_counter() - t0, 2)  # dump + screenshot
                row["console_messages"] = len(shown.console)
                row["drawn_plots"] = sum(w > 0 and h > 0 for w, h in shown.svgs)
        out[str(folder)] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
