"""Fingerprint what a refactor must not change: exports, metrics and a kill-free resume point.

    python bench/fingerprint.py --tree /path/to/checkout --json before.json
    python bench/fingerprint.py --tree . --json after.json
    python bench/fingerprint.py --compare before.json after.json

Runs, with ``PYTHONPATH=<tree>`` and a fresh ``SOLO_RGBD_CACHE``, small jobs on the synthetic
set: an MBCF pretraining (both stages), the same from a LitData pack (``data.format=litdata``),
a short pretraining of every other registered method, and an SOD training on the first one's
encoders with a validation split, then ``sod eval``. It hashes every export file, every tensor
of each ``last.ckpt`` (state dict, optimizer state, the method's and the loader's resumable
state), every value of ``logs/metrics.csv`` except wall-clock columns, and the eval's results.
Two trees that give the same fingerprint train the same bits.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BASE = [
    "backbone=tiny", "data.synthetic.n=32", "data.synthetic.n_test=8", "data.synthetic.size=40",
    "data.image_size=40", "data.batch_size=8", "augmentations.crop_size=32",
    "trainer.enable_progress_bar=false", "log_every_n_steps=1",
]  # fmt: skip
#: every other registered method, a few steps each (the staged ones: both stages)
METHODS = {
    "alignment": ["method_kwargs.stage1_epochs=1", "method_kwargs.stage2_epochs=1",
                  "method_kwargs.queue_size=16"],
    "mocov2plus": ["trainer.max_epochs=2", "method_kwargs.queue_size=16"],
    "byol": ["trainer.max_epochs=2", "method_kwargs.proj_hidden_dim=64",
             "method_kwargs.pred_hidden_dim=64"],
    "simclr": ["trainer.max_epochs=2", "method_kwargs.proj_hidden_dim=64"],
    "barlow_twins": ["trainer.max_epochs=2", "method_kwargs.proj_hidden_dim=64",
                     "method_kwargs.proj_output_dim=64"],
    "vicreg": ["trainer.max_epochs=2", "method_kwargs.proj_hidden_dim=64",
               "method_kwargs.proj_output_dim=64"],
}  # fmt: skip
TINY = [
    "backbone=tiny", "data.synthetic.n=32", "data.synthetic.n_test=8", "data.synthetic.size=40",
    "data.image_size=40", "data.batch_size=8", "augmentations.crop_size=32",
    "trainer.enable_progress_bar=false", "log_every_n_steps=1",
    "method_kwargs.stage1_epochs=1", "method_kwargs.stage2_epochs=1",
    "method_kwargs.queue_size=16", "data.val_fraction=0.25",
]  # fmt: skip
SOD = [
    "backbone=tiny", "data.synthetic.n=32", "data.synthetic.n_test=8", "data.synthetic.size=40",
    "image_size=40", "batch_size=8", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
    "decoder_dim=8", "qualitative=2", "val_fraction=0.25", "log_every_n_steps=1",
]  # fmt: skip
TIMING = ("time", "sec", "_s", "throughput", "per_s")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tensors(obj, prefix: str, out: dict) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = _sha(
            obj.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            _tensors(obj[k], f"{prefix}.{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _tensors(v, f"{prefix}.{i}", out)
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        out[prefix] = repr(obj)


def _metrics(path: Path) -> str:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    keep = [k for k in (rows[0] if rows else {}) if not any(t in k for t in TIMING)]
    return _sha(json.dumps([[r.get(k, "") for k in keep] for r in rows]).encode())


def _run(run_dir: Path, tmp: Path) -> dict:
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state: dict = {}
    for key in ("state_dict", "optimizer_states", "loops", "callbacks", "rng"):
        if key in ckpt:
            _tensors(ckpt[key], key, state)
    state = {k: v for k, v in state.items() if not any(t in k for t in TIMING)}
    out = {
        "metrics": _metrics(run_dir / "logs" / "metrics.csv"),
        "ckpt": _sha(repr(state).encode()),
    }
    if (run_dir / "encoders").is_dir():
        for f in sorted((run_dir / "encoders").iterdir()):
            if f.suffix == ".safetensors":
                out[f"export/{f.name}"] = _sha(f.read_bytes())
    return out


def fingerprint(tree: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "SOLO_RGBD_CACHE": str(tmp / "c")}
        cli = [sys.executable, "-m", "solo_rgbd.cli"]

        def run(*args: str) -> None:
            proc = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, cwd=tmp)
            if proc.returncode:
                sys.exit(f"{' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")

        out = tmp / "out"
        run("pretrain", "method=mbcf", *TINY, f"output_dir={out}", "run_name=folder")
        synth = next((tmp / "c" / "synthetic").glob("*-train-*"))
        run("data", "pack", str(synth), str(tmp / "packed"), "--size", "40", "--quiet")
        packed = ["data.format=litdata", f"data.path={tmp / 'packed'}"]
        run("pretrain", "method=mbcf", *TINY, *packed, f"output_dir={out}", "run_name=packed")
        for method, extra in METHODS.items():
            run("pretrain", f"method={method}", *BASE, *extra, f"output_dir={out}", "run_name=m")
        enc = out / "mbcf" / "folder" / "encoders"
        run("sod", "train", f"encoders={enc}", *SOD, f"output_dir={out / 'sod'}", "run_name=r")
        sod_run = out / "sod" / "train" / "r"
        run("sod", "eval", f"ckpt={sod_run}", f"out={tmp / 'eval'}", *SOD)
        return {
            "pretrain": _run(out / "mbcf" / "folder", tmp),
            "pretrain_pack": _run(out / "mbcf" / "packed", tmp),
            **{f"pretrain_{m}": _run(out / m / "m", tmp) for m in METHODS},
            "sod_train": _run(sod_run, tmp),
            "sod_eval": _sha((tmp / "eval" / "results.json").read_bytes()),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path)
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        print("identical" if not diff else f"differ: {', '.join(diff)}")
        sys.exit(1 if diff else 0)
    fp = fingerprint(args.tree)
    print(json.dumps(fp, indent=1))
    if args.json:
        args.json.write_text(json.dumps(fp, indent=1))


if __name__ == "__main__":
    main()
