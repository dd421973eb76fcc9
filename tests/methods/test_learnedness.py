"""The learnedness criteria of experiment=cpu (issue 16), pinned on a shortened run.

The batch top-1 (each query against the other keys of its own batch, under shuffle-BN: no
BatchNorm leak, no stale keys) must rise well above chance, and the share of RGB attention the
mask removes must rise above where it started (0.5 is a random half).
"""

import csv

import pytest

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from tests.conftest import tiny_overrides


def _mean(rows, key):
    values = [float(r[key]) for r in rows if r.get(key)]
    assert values, key
    return sum(values) / len(values)


@pytest.mark.slow
def test_a_short_cpu_preset_run_learns_instances_and_sharpens_the_mask(tmp_path):
    over = tiny_overrides(
        tmp_path,
        **{
            "experiment": "cpu",
            "backbone": "tiny",
            "data.synthetic.n": "64",
            "data.batch_size": "16",
            "method_kwargs.stage1_epochs": "6",
            "method_kwargs.stage2_epochs": "6",
        },
    )
    run_dir = run_pretrain(compose("pretrain", ["method=mbcf", *over]))
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss")]
    chance = 1 / 16
    first, last = rows[:4], rows[-4:]
    for stream in ("rgb", "depth"):
        assert _mean(first, f"acc_batch_{stream}") < 4 * chance
        assert _mean(last, f"acc_batch_{stream}") > 6 * chance, stream
    stage2 = [r for r in rows if r.get("acc_batch_inter")]
    assert _mean(stage2[-4:], "acc_batch_inter") > 6 * chance
    start, end = (_mean(part, "rgb_masked_attention_mass") for part in (stage2[:2], stage2[-4:]))
    assert end > start + 0.01
