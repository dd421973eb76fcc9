"""Refactors keep every composed config: each preset x method of ``pretrain``, the SOD recipes
and the compare experiments compose to exactly the stored ``fixtures/composed_configs.json``.

The fixture was written at issue 19 and diffed against the tree before it (efa81e2): the 27
configs were identical except ``sod``'s four engine settings (``resume``, ``log_every_n_steps``,
``checkpoint``, ``nan_guard``), which ``sod train`` gained with the engine. A change that is
meant regenerates the fixture (``python tests/test_composed_configs.py``) and says why in
its commit.
"""

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from solo_rgbd.config import compose

FIXTURE = Path(__file__).parent / "fixtures" / "composed_configs.json"
EXPECTED = json.loads(FIXTURE.read_text())


def _compose(key: str) -> dict:
    root, *rest = key.split("/")
    if root == "pretrain":
        exp, method = rest
        extra = ["data.base=/d"] if exp == "paper" else []
        cfg = compose("pretrain", [f"experiment={exp}", f"method={method}", *extra])
    elif root == "sod":
        cfg = compose("sod", [f"recipe={rest[0]}"])
    else:
        cfg = compose(key, ["data_base=/d"] if rest == ["paper"] else [])
    return json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=False), default=str))


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_the_composed_config_is_unchanged(key):
    assert _compose(key) == EXPECTED[key]


if __name__ == "__main__":  # regenerate the fixture after an intended change
    FIXTURE.write_text(json.dumps({k: _compose(k) for k in EXPECTED}, indent=1, sort_keys=True))
    print(f"wrote {FIXTURE}", file=sys.stderr)
