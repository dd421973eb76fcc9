import subprocess
import sys

from solo_rgbd.cli import main


def test_help_lists_groups_and_methods(capsys):
    assert main(["pretrain", "--help"]) == 0
    out = capsys.readouterr().out
    methods = "alignment, barlow_twins, byol, mbcf, mocov2plus, simclr, vicreg"
    assert f"registered methods: {methods}" in out
    for group in ("method", "backbone", "data", "augmentations", "experiment"):
        assert f"  {group}" in out
    assert main(["--help"]) == 0
    assert "pretrain" in capsys.readouterr().out


def test_user_errors_are_one_paragraph_and_exit_2(capsys, tmp_path):
    assert main(["pretrain", "method=nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: method 'nope' is not registered") and "Traceback" not in err
    assert main(["pretrain", "trainer.max_epoch=1"]) == 2
    assert "Did you mean 'trainer.max_epochs'?" in capsys.readouterr().err
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["data", "synth", str(out), "--n", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"


def test_console_script_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "solo_rgbd.cli", "pretrain", "--cfg", "backbone=tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "name: test_resnet" in proc.stdout
