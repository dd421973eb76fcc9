import pytest

from solo_rgbd.compare.gaps import paired_gaps
from solo_rgbd.compare.protocols import FINETUNE, PROBES
from solo_rgbd.compare.runner import _check_gaps
from solo_rgbd.config import compose
from solo_rgbd.errors import ConfigError
from solo_rgbd.tasks.sod.spec import SOD_REPORT


def _cell(frozen, probe_depth, finetune):
    return {
        "synthetic": {"all": {"maxF": frozen, "MAE": 0.1}},
        PROBES: {"synthetic": {"rgb": {"maxF": 0.2}, "depth": {"maxF": probe_depth}}},
        FINETUNE: {"0.1": {"synthetic": {"all": {"maxF": finetune}}}},
    }


def test_paired_gaps_are_per_seed_differences_with_their_sign_count():
    by_seed = {
        "MBCF": {0: _cell(0.80, 0.35, 0.70), 1: _cell(0.78, 0.33, 0.60), 2: _cell(0.90, 0.3, 0.5)},
        "Random": {0: _cell(0.75, 0.30, 0.71), 1: _cell(0.76, 0.30, 0.65)},  # seed 2 missing
    }
    text = paired_gaps(by_seed, [["MBCF", "Random"]], SOD_REPORT)
    lines = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| MBCF")}
    # frozen: +0.05 and +0.02 on the two shared seeds
    assert "+0.035 ± 0.021 | 2/2 | 0, 1 |" in lines["frozen, synthetic all"]
    assert "+0.040 ± 0.014 | 2/2" in lines["probe depth, synthetic"]
    assert "+0.000 ± 0.000 | 0/2" in lines["probe rgb, synthetic"]
    assert "-0.030 ± 0.028 | 0/2" in lines["finetune 0.1, synthetic all"]
    assert paired_gaps(by_seed, [["MBCF", "Nobody"]], SOD_REPORT) == ""


def test_a_gap_naming_an_unknown_row_is_a_config_error():
    cfg = compose("compare/cpu", ['gaps=[["MBCF (two-stage 50% mask)", Randon]]'])
    with pytest.raises(ConfigError, match=r"gaps\[0\].*two names from rows"):
        _check_gaps(cfg, [r.name for r in cfg.rows])
    _check_gaps(compose("compare/cpu"), [r.name for r in compose("compare/cpu").rows])


def test_a_signal_in_a_cell_stops_the_grid_instead_of_failing_the_cell(tmp_path):
    from solo_rgbd.compare.runner import run_compare
    from solo_rgbd.errors import Preempted
    from solo_rgbd.tasks.sod.spec import SOD_REPORT

    cfg = compose(
        "compare/quick",
        [f"out={tmp_path}", "rows=[{name: A, init: random}, {name: B, init: random}]", "tables=[]"],
    )
    ran = []

    def cell(cfg, row, seed, path):
        ran.append(row["name"])
        raise Preempted("stopped by SIGTERM", 15)

    with pytest.raises(Preempted):
        run_compare(cfg, cell, SOD_REPORT)
    assert ran == ["A"]  # B never started
