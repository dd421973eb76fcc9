"""``solo-rgbd report RUN``: one self-contained page with the run's curves, its stage switch,
the export's sha256 and its config; a damaged run still gives a page naming what is missing;
a folder that is not a run is exit 2 with one paragraph."""

import base64
import gzip
import hashlib
import re

from solo_rgbd.cli import main
from solo_rgbd.reports.build import write_report

HEADER = "epoch,step,acc_batch_rgb,acc_batch_depth,loss,loss_intra,loss_inter,lr,momentum_tau,"
HEADER += "grad_norm_rgb_encoder,rgb_masked_attention_mass,stage\n"


def _run(tmp_path, rows: int = 8, truncate: bool = False):
    run = tmp_path / "mbcf" / "r"
    (run / "logs").mkdir(parents=True)
    (run / "encoders").mkdir()
    (run / "config.yaml").write_text("method: mbcf\nseed: 0\n")
    (run / ".run.lock").touch()  # the engine's mark of a run folder
    lines = [HEADER]
    for s in range(rows):
        stage = 2 if s >= rows // 2 else 1
        inter = f"{1.0 / (s + 1):.4f}" if stage == 2 else ""
        mass = "0.55" if stage == 2 else ""
        lines.append(f"0,{s},{s / rows},{s / rows / 2},{2 - s / rows},1.0,{inter},0.03,0.99,")
        lines[-1] += f"{0.5 + s},{mass},{stage}\n"
    text = "".join(lines)
    if truncate:
        text = text[: len(text) - 20]  # the last row cut mid-write
    (run / "logs" / "metrics.csv").write_text(text)
    (run / "encoders" / "rgb.safetensors").write_bytes(b"rgb weights")
    return run


def test_a_run_report_holds_the_curves_the_stage_switch_the_export_and_the_config(tmp_path):
    run = _run(tmp_path)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    for anchor in ("summary", "losses", "top1", "schedule", "grad", "attention", "export"):
        assert f'id="{anchor}"' in page, anchor
    assert "<script src=" not in page and "<link" not in page  # nothing fetched: inlined
    assert page.count('id="plotly-gz"') == 1  # plotly's script, once for every plot
    js = gzip.decompress(base64.b64decode(re.search(r'id="plotly-gz">([^<]+)<', page)[1]))
    assert js.startswith(b"/**") and b"plotly.js v" in js[:200]  # the library, whole
    assert "stage 2" in page  # the switch at step 4 is marked
    assert hashlib.sha256(b"rgb weights").hexdigest() in page
    assert "method: mbcf" in page
    assert len(re.findall(r'<div class="plot" data-fig="\d+">', page)) == 5
    assert (run / "report.html").stat().st_size < 2.2e6  # the library gzipped: 2.0 MB
    missing = page[page.index('id="missing"') :]
    assert "run.json: missing or damaged" in missing  # the only thing this fake run lacks
    assert "metrics.csv" not in missing[: missing.index("</div>")]


def test_a_damaged_run_still_gives_a_page_that_names_what_is_missing(tmp_path):
    run = _run(tmp_path, truncate=True)
    (run / "encoders" / "rgb.safetensors").unlink()
    page = write_report(run).read_text()
    assert 'id="missing"' in page and "damaged row(s) skipped" in page
    assert "no exported encoders" in page
    (run / "logs" / "metrics.csv").write_text("")
    page = write_report(run).read_text()
    assert "missing or empty, so there are no curves" in page


def test_a_folder_that_is_not_a_run_is_exit_2_with_one_paragraph(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a run folder" in err and len(err.splitlines()) == 1
    assert "compare folder" in err  # names every kind of folder it takes
    assert not (tmp_path / "report.html").exists()


def test_commands_write_the_report_at_the_end_unless_report_false(tmp_path, capsys):
    from omegaconf import OmegaConf

    from solo_rgbd.commands.report import report_at_end

    run = _run(tmp_path)
    assert report_at_end(OmegaConf.create({"report": False}), run) is None
    assert not (run / "report.html").exists()
    assert report_at_end(OmegaConf.create({"report": True}), run) == run / "report.html"
    assert capsys.readouterr().out.strip().endswith("report.html")
    # the run itself succeeded: a report that cannot be written is a warning, not a failure
    assert report_at_end(OmegaConf.create({"report": True}), tmp_path / "elsewhere") is None
    err = capsys.readouterr().err
    assert err.startswith("warning: the report of") and "Retry with: solo-rgbd report" in err


def test_report_writes_only_into_folders_solo_rgbd_made(tmp_path, capsys):
    """Issue 30, finding 3: a folder of the user's with a config.yaml lost its report.html."""
    mine = tmp_path / "p"
    mine.mkdir()
    (mine / "config.yaml").write_text("lr: 1\n")
    (mine / "report.html").write_text("MINE")
    assert main(["report", str(mine)]) == 2
    assert "--out PAGE.html" in capsys.readouterr().err
    assert (mine / "report.html").read_text() == "MINE"
    page = tmp_path / "elsewhere.html"
    assert main(["report", str(mine), "--out", str(page)]) == 0  # a task run's page, elsewhere
    assert '<meta name="generator" content="solo-rgbd report">' in page.read_text()
    assert main(["report", str(mine), "--out", str(mine / "report.html")]) == 2  # not ours
    assert (mine / "report.html").read_text() == "MINE"
    run = _run(tmp_path)  # a real run's own page is replaced when written again
    assert main(["report", str(run)]) == 0 and main(["report", str(run)]) == 0


ADVERSARIAL = "<!--<script>"


def test_names_are_text_and_embedded_json_leaves_no_markup(tmp_path):
    """Issue 30, finding 4: a name with <!--<script> swallowed the page's scripts, and
    <a href> became a live link in a legend."""
    import json

    run = _run(tmp_path)
    csv = run / "logs" / "metrics.csv"
    header, *rows = csv.read_text().splitlines()
    evil = f"loss_{ADVERSARIAL}<a href=https://example.com>x</a>&"
    csv.write_text("\n".join([header + f",{evil}", *[r + ",0.5" for r in rows]]) + "\n")
    (run / "config.yaml").write_text(f"method: mbcf\nname: '{ADVERSARIAL}'\n")
    page = write_report(run).read_text()
    figures = page[page.index('id="figures">') :]
    figures = figures[len('id="figures">') : figures.index("</script>")]
    assert "<" not in figures and ">" not in figures and "&" not in figures
    names = [t["name"] for f in json.loads(figures)["figures"] for t in f["data"]]
    assert any("&lt;a href=https://example.com&gt;" in n for n in names)  # text, not a link
    assert "<a href=https://example.com>" not in page and page.count(ADVERSARIAL) == 0


def test_long_curves_are_thinned_and_the_page_says_so(tmp_path):
    run = _run(tmp_path, rows=12_000)
    page = write_report(run).read_text()
    assert "drawn at 2,000 evenly spaced points" in page
    assert (run / "report.html").stat().st_size < 2.6e6
