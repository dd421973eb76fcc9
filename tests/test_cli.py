import subprocess
import sys

import pytest

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


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("trainer.max_epochs=-1", "trainer.max_epochs"),
        ("data.image_size=0", "data.image_size"),
        ("augmentations.crop_size=0", "augmentations.crop_size"),
        ("trainer.precision=bogus", "trainer.precision"),
        ("method_kwargs.queue_size=abc", "method_kwargs.queue_size"),
        ("method_kwargs.momentum.final_tau=5", "method_kwargs.momentum.final_tau"),
        ("log_every_n_steps=0", "log_every_n_steps"),
        ("nan_guard.policy=ignore", "nan_guard.policy"),
        ("optimizer.lr=0.1", "optimizer.lr"),
    ],
)
def test_bad_settings_exit_2_naming_the_key_and_write_nothing(override, key, tmp_path, capsys):
    rc = main(["pretrain", "backbone=tiny", f"output_dir={tmp_path / 'out'}", override])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("error: ") and key in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_os_errors_are_one_paragraph(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["data", "synth", str(tmp_path / "afile" / "sub"), "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert "cannot access" in err and "afile" in err and "Traceback" not in err


def test_a_closed_pipe_is_not_a_traceback():
    # `true` exits without reading: the pipe is closed before anything is printed
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m solo_rgbd.cli pretrain --cfg | true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 141  # 128 + SIGPIPE, like any well-behaved Unix filter
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


@pytest.mark.slow
def test_a_plain_run_is_quiet_and_verbose_true_is_not(tmp_path):
    import os

    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path / "cache")}
    args = [
        sys.executable,
        "-m",
        "solo_rgbd.cli",
        "pretrain",
        "backbone=tiny",
        "data.synthetic.n=24",
        "data.synthetic.size=40",
        "data.image_size=40",
        "data.batch_size=8",
        "augmentations.crop_size=32",
        "method_kwargs.stage1_epochs=1",
        "method_kwargs.stage2_epochs=1",
        "method_kwargs.queue_size=16",
        "trainer.enable_progress_bar=false",
        f"output_dir={tmp_path / 'out'}",
    ]
    quiet = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    text = quiet.stdout + quiet.stderr
    lines = [line for line in quiet.stdout.splitlines() if line.strip()]
    assert lines[0] == "solo-rgbd pretrain: config read; loading PyTorch, Lightning and the method"
    assert lines[1].startswith("mbcf: run folder ") and "preparing data 'synthetic'" in lines[1]
    assert lines[2] == "mbcf: stage 2 (IntraCLM + InterCLM) starts at epoch 1, step 3"
    assert lines[3].startswith("checkpoint: ") and "1 save (" in lines[3]  # size and policy
    assert lines[4].startswith("run folder: ") and lines[5].startswith("encoders:")
    assert lines[6].startswith("report: ") and lines[6].endswith("report.html")
    assert len(lines) == 7 and not quiet.stderr.strip(), text
    loud = subprocess.run(
        args + ["verbose=true"], env=env, capture_output=True, text=True, timeout=300
    )
    assert loud.returncode == 0 and "GPU available" in loud.stdout + loud.stderr
