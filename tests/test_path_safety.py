"""Nothing outside a run is ever touched (issue 17, items 1, 2 and 4): names that become paths
are one path component, and solo-rgbd deletes only folders it marked as its own."""

import json

import pytest

from solo_rgbd.cli import main
from solo_rgbd.errors import CheckpointError
from solo_rgbd.nn.encoder_io import resolve_export_dir
from solo_rgbd.utils.paths import is_component, own_marker

SOD_TINY = [
    "backbone=tiny",
    "data.synthetic.n=24",
    "data.synthetic.n_test=8",
    "data.synthetic.size=40",
    "image_size=32",
    "batch_size=8",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "decoder_dim=8",
    "qualitative=0",
]


def _canary(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("mine")
    return victim


def test_path_components():
    assert is_component("run1") and is_component("slurm-12-3") and is_component("a b")
    for bad in ("", ".", "..", "../x", "/abs", "a/b", "a\\b", None, 3):
        assert not is_component(bad), bad


@pytest.mark.parametrize("command", ["pretrain", "sod"])
@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", "..", "a/b"])
def test_a_run_name_that_leaves_output_dir_is_refused_before_anything_is_written(
    tmp_path, capsys, command, name
):
    out = tmp_path / "out"
    args = (
        ["pretrain", "backbone=tiny", f"output_dir={out}", f"run_name={name}"]
        if command == "pretrain"
        else ["sod", "train", "encoders=random", f"output_dir={out}", f"run_name={name}", *SOD_TINY]
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "run_name" in err and "one path component" in err
    assert not out.exists() and not (tmp_path / "escaped").exists()


@pytest.mark.slow
def test_sod_eval_never_deletes_outside_its_out_folder(tmp_path, capsys, synth_root):
    out = tmp_path / "sod"
    assert (
        main(["sod", "train", "encoders=random", f"output_dir={out}", "run_name=r", *SOD_TINY]) == 0
    )
    ckpt = out / "train" / "r"
    victim = _canary(tmp_path)
    evals = tmp_path / "evals"
    # 1. an absolute or climbing test-set name
    for name in (str(victim), "../../victim"):
        sets = f'test_sets=[{{name: "{name}", path: "{synth_root}"}}]'
        assert main(["sod", "eval", f"ckpt={ckpt}", f"out={evals}", sets, *SOD_TINY]) == 2
        assert "test_sets[0].name" in capsys.readouterr().err
    # 2. data.name climbing out of predictions/ after predictions/ exists
    assert main(["sod", "eval", f"ckpt={ckpt}", f"out={evals}", *SOD_TINY]) == 0
    assert own_marker(evals / "predictions" / "synthetic").is_file()
    assert main(["sod", "eval", f"ckpt={ckpt}", f"out={evals}", *SOD_TINY]) == 0  # ours: replaced
    assert (
        main(["sod", "eval", f"ckpt={ckpt}", f"out={evals}", "data.name=../../victim", *SOD_TINY])
        == 2
    )
    assert "data.name" in capsys.readouterr().err
    # 3. a predictions folder that solo-rgbd did not write is not replaced
    theirs = evals / "predictions" / "synthetic"
    own_marker(theirs).unlink()
    (theirs / "notes.txt").write_text("mine")
    assert main(["sod", "eval", f"ckpt={ckpt}", f"out={evals}", *SOD_TINY]) == 2
    assert "not written by solo-rgbd" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "mine"
    assert (victim / "precious.txt").read_text() == "mine"


def test_a_stale_swap_beside_a_users_folder_does_not_delete_it(tmp_path):
    run = tmp_path / "run"
    user = run / "encoders"
    user.mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    stale = run / ".encoders.abc.old"
    stale.mkdir()
    (stale / "encoders.json").write_text(json.dumps({"encoders": {}}))
    with pytest.raises(CheckpointError, match="not an export solo-rgbd wrote"):
        resolve_export_dir(user)
    assert (user / "notes.txt").read_text() == "mine" and stale.is_dir()
    (user / "notes.txt").unlink()  # an empty folder is completed as before
    assert json.loads((resolve_export_dir(user) / "encoders.json").read_text()) == {"encoders": {}}


def test_a_fresh_run_never_overwrites_another_runs_files(tmp_path, capsys):
    run = tmp_path / "out" / "mbcf" / "r"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text("theirs\n")
    (run / "logs" / "metrics.csv").write_text("epoch,step,loss\n" + "0,1,5.0\n" * 32)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["pretrain", "backbone=tiny", f"output_dir={tmp_path / 'out'}", "run_name=r"]) == 2
    assert "already holds another run's files" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_folder_in_use_by_another_process_is_refused(tmp_path, capsys):
    import subprocess
    import sys

    run = tmp_path / "out" / "mocov2plus" / "r"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from solo_rgbd.utils.locks import hold_run_lock; "
            "lock = hold_run_lock(sys.argv[1]); print('held', flush=True); time.sleep(120)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = [
            "pretrain",
            "method=mocov2plus",
            "backbone=tiny",
            "data.synthetic.n=16",
            "data.batch_size=8",
            f"output_dir={tmp_path / 'out'}",
            "run_name=r",
        ]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}" in err
        assert not (run / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


def test_sod_train_never_overwrites_another_run(tmp_path, capsys):
    out = tmp_path / "sod"
    (out / "train" / "r").mkdir(parents=True)
    (out / "train" / "r" / "summary.json").write_text("theirs")
    code = main(["sod", "train", "encoders=random", f"output_dir={out}", "run_name=r", *SOD_TINY])
    assert code == 2 and "already holds another run's files" in capsys.readouterr().err
    assert (out / "train" / "r" / "summary.json").read_text() == "theirs"
