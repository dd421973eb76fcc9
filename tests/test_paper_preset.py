"""experiment=paper is the paper: docs/paper.md's table against the composed configs."""

import re
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from solo_rgbd.config import compose

DOC = Path(__file__).resolve().parent.parent / "docs" / "paper.md"


def _table_rows() -> list[dict[str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("setting", "---") or set(cells[0]) <= {"-", " "}:
            continue
        rows.append(dict(zip(("setting", "paper", "value", "key", "note"), cells, strict=True)))
    return rows


ROWS = [r for r in _table_rows() if r["key"] != "-"]


def test_the_table_covers_every_paper_setting():
    settings = {r["setting"] for r in _table_rows()}
    for needed in (
        "queue size",
        "tau_intra",
        "tau_inter",
        "mask ratio",
        "stage 1 lr",
        "one-stage epochs",
        "batch size",
        "key-encoder momentum",
        "shuffle-BN",
        "weight decay on BN and biases",
        "augmentation: colour jitter",
        "test sets",
    ):
        assert needed in settings, needed
    assert len(ROWS) >= 40


@pytest.mark.parametrize("row", ROWS, ids=[r["setting"] for r in ROWS])
def test_composed_config_matches_the_table(row):
    key = row["key"]
    if key.startswith("sod: "):
        cfg, key = compose("sod", ["recipe=paper"]), key[len("sod: ") :]
    elif m := re.match(r"\[(\w+)\] (.+)", key):
        cfg, key = compose("pretrain", ["experiment=paper", f"method={m.group(1)}"]), m.group(2)
    else:
        cfg = compose("pretrain", ["experiment=paper", "method=mbcf"])
    expected = yaml.safe_load(row["value"])
    got = OmegaConf.select(cfg, key, default="<absent>")
    assert got == expected, f"{row['setting']}: {key} = {got!r}, docs/paper.md says {expected!r}"


def test_mocov2plus_and_alignment_take_the_moco_lineage_in_the_paper_preset():
    for method in ("mocov2plus", "alignment"):
        kw = compose("pretrain", ["experiment=paper", f"method={method}"]).method_kwargs
        assert kw.shuffle_bn is True and kw.momentum.base_tau == 0.999
        assert kw.momentum.schedule == "constant"


def test_weight_decay_exclusion_follows_each_methods_paper(tmp_path):
    from solo_rgbd.methods import METHODS
    from tests.conftest import tiny_overrides

    for method, excluded in (("mbcf", False), ("simclr", True)):
        cfg = compose("pretrain", tiny_overrides(tmp_path, method=method))
        groups = METHODS[method](cfg).configure_optimizers().param_groups
        no_decay = [p for g in groups if g["weight_decay"] == 0 for p in g["params"]]
        assert bool(no_decay) is excluded
        assert all(p.ndim <= 1 for p in no_decay)


def test_momentum_encoders_move_once_per_optimizer_step(tmp_path, monkeypatch):
    from solo_rgbd.commands.pretrain import run_pretrain
    from solo_rgbd.nn.momentum import EMAUpdate
    from tests.conftest import tiny_overrides

    updates = []
    real = EMAUpdate.__call__
    monkeypatch.setattr(
        EMAUpdate,
        "__call__",
        lambda self, pairs, tau: (updates.extend([tau] * len(pairs)), real(self, pairs, tau)),
    )
    over = tiny_overrides(
        tmp_path,
        **{
            "method_kwargs.stage1_epochs": "1",
            "method_kwargs.stage2_epochs": "0",
            "method_kwargs.queue_size": "16",
            "trainer.limit_train_batches": "4",
            "trainer.accumulate_grad_batches": "2",
        },
    )
    run = run_pretrain(compose("pretrain", over))
    # 4 micro-batches = 2 optimizer steps; each moves the 4 (online, momentum) pairs once
    assert len(updates) == 2 * 4
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 2
