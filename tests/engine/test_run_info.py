"""run.json: one entry per session with the command line, versions, device and wall time."""

import json
from types import SimpleNamespace

import torch

from solo_rgbd.engine.run_info import RunInfo, status_of
from solo_rgbd.errors import Aborted, Preempted

TRAINER = SimpleNamespace(
    strategy=SimpleNamespace(root_device=torch.device("cpu")), world_size=1, precision="32-true"
)


def test_sessions_append_across_resumes_and_sum_their_wall_time(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["solo-rgbd", "pretrain", "run_name=a b"])
    first = RunInfo(tmp_path)
    first.start(TRAINER, None)
    first.end("preempted")
    second = RunInfo(tmp_path)
    second.start(TRAINER, tmp_path / "checkpoints" / "last.ckpt")
    info = json.loads((tmp_path / "run.json").read_text())
    one, two = info["sessions"]
    assert one["command"] == "solo-rgbd pretrain 'run_name=a b'"  # as a shell would need it
    assert one["status"] == "preempted" and one["wall_s"] >= 0 and one["ended"]
    assert two["status"] == "running" and two["ended"] is None  # a SIGKILL leaves it so
    assert two["resumed_from"].endswith("last.ckpt")
    assert two["device"] == {
        "accelerator": "cpu",
        "name": two["device"]["name"],
        "world_size": 1,
        "precision": "32-true",
        "torch_threads": torch.get_num_threads(),
    }
    assert torch.__version__.startswith(two["versions"]["torch"])  # metadata drops "+cpu"
    second.end("finished")
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["wall_s_total"] == round(sum(s["wall_s"] for s in info["sessions"]), 3)


def test_a_damaged_run_json_starts_over_instead_of_failing_the_run(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    info = RunInfo(tmp_path)
    info.start(TRAINER, None)
    info.end("finished")
    (session,) = json.loads((tmp_path / "run.json").read_text())["sessions"]
    assert session["status"] == "finished"


def test_how_a_session_ended_is_named_from_its_exception():
    assert status_of(None) == "finished"
    assert status_of(Preempted("stopped", 15)) == "preempted"
    assert status_of(Aborted("second ctrl-c")) == "stopped"
    assert status_of(KeyboardInterrupt()) == "stopped"
    assert status_of(ValueError("bad")) == "failed: ValueError: bad"


def test_the_cpu_is_named_by_its_model_where_the_system_says_it():
    from pathlib import Path

    from solo_rgbd.engine.run_info import cpu_name

    info = Path("/proc/cpuinfo")
    models = (
        [line for line in info.read_text().splitlines() if line.startswith("model name")]
        if info.is_file()
        else []
    )
    expected = models[0].split(":", 1)[1].strip() if models else None
    assert cpu_name() and (expected is None or cpu_name() == expected)
