"""Checkpoints written in the background: a consistent snapshot, each storage once, one write in
flight, errors surfaced; the checkpoint policy; ``solo-rgbd ckpt info``."""

import threading
import time
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch

from solo_rgbd.cli import main
from solo_rgbd.engine.async_io import AsyncAtomicCheckpointIO, host_snapshot
from solo_rgbd.engine.checkpoint import RunCheckpoint
from solo_rgbd.engine.ckpt_info import breakdown, describe
from tests.conftest import tiny_overrides


def test_snapshot_shares_what_the_original_shares_and_nothing_with_it():
    base = torch.arange(12.0)
    state = OrderedDict(a=base, b=base, view=base[2:6], step=3, meta={"names": ["x"]})
    snap = host_snapshot(state)
    assert type(snap) is OrderedDict and snap["step"] == 3 and snap["meta"] == {"names": ["x"]}
    assert snap["a"].untyped_storage().data_ptr() == snap["b"].untyped_storage().data_ptr()
    assert snap["view"].untyped_storage().data_ptr() == snap["a"].untyped_storage().data_ptr()
    assert snap["view"].storage_offset() == 2 and snap["view"].tolist() == [2, 3, 4, 5]
    assert snap["a"].untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
    base.add_(100)  # the loop moves on: the snapshot does not
    state["meta"]["names"].append("y")
    assert snap["a"].tolist() == list(range(12)) and snap["meta"] == {"names": ["x"]}


def test_a_checkpoint_holds_the_state_of_the_call_and_each_storage_once(tmp_path):
    io = AsyncAtomicCheckpointIO()
    weight = torch.ones(256, 256)
    io.save_checkpoint({"state_dict": {"w": weight, "alias": weight}}, tmp_path / "a.ckpt")
    weight.mul_(0)  # changed while (or before) the thread writes
    io.teardown()
    loaded = torch.load(tmp_path / "a.ckpt", weights_only=True)["state_dict"]
    assert loaded["w"].sum().item() == 256 * 256
    assert loaded["w"].untyped_storage().data_ptr() == loaded["alias"].untyped_storage().data_ptr()
    # written once: about the size of one 256 x 256 float tensor, not two
    assert (tmp_path / "a.ckpt").stat().st_size < 1.2 * 256 * 256 * 4


def _slow(io: AsyncAtomicCheckpointIO, seconds: float, order: list) -> None:
    inner = io.checkpoint_io.save_checkpoint

    def save(checkpoint, path, storage_options=None):
        time.sleep(seconds)
        inner(checkpoint, path, storage_options)
        order.append((checkpoint["n"], threading.current_thread() is threading.main_thread()))

    io.checkpoint_io.save_checkpoint = save


def test_one_write_in_flight_in_order_and_the_loop_only_waits_for_a_slow_disk(tmp_path):
    io, order = AsyncAtomicCheckpointIO(), []
    _slow(io, 0.3, order)
    start = time.perf_counter()
    io.save_checkpoint({"n": 1, "t": torch.zeros(4)}, tmp_path / "last.ckpt")
    first = time.perf_counter() - start
    start = time.perf_counter()
    io.save_checkpoint({"n": 2, "t": torch.zeros(4)}, tmp_path / "last.ckpt")
    second = time.perf_counter() - start
    assert first < 0.15  # returned before the write
    assert second >= 0.25  # the second save waited for the first write
    io.wait()
    assert order == [(1, False), (2, False)]  # in order, both in the background thread
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["n"] == 2
    io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left


def test_a_failed_background_write_is_raised_and_leaves_the_previous_file(tmp_path):
    io = AsyncAtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"n": 1}, path)
    io.wait()

    def fail(checkpoint, path, storage_options=None):
        raise OSError(28, "No space left on device", str(path))

    io.checkpoint_io.save_checkpoint = fail
    io.save_checkpoint({"n": 2}, path)
    with pytest.raises(OSError, match="No space"):
        io.wait()
    io.save_checkpoint({"n": 3}, path)
    with pytest.raises(OSError, match="No space"):  # teardown surfaces it too
        io.teardown()
    assert torch.load(path, weights_only=True)["n"] == 1


def test_a_checkpoint_is_never_written_after_its_export_failed(tmp_path):
    io, path = AsyncAtomicCheckpointIO(), tmp_path / "last.ckpt"

    def export():
        time.sleep(0.2)
        raise OSError(5, "Input/output error")

    io.submit(export)  # the epoch's export, before its checkpoint
    with pytest.raises(OSError, match="Input/output"):
        io.save_checkpoint({"n": 1}, path)  # waits for the export, and raises its error
    io.teardown()
    assert not path.exists()


def _policy_trainer(**kw) -> SimpleNamespace:
    return SimpleNamespace(
        **{"world_size": 1, "global_step": 0, "current_epoch": 0, "max_epochs": 100, **kw}
    )


def test_epoch_ends_checkpoint_by_the_clock_and_the_run_end_always():
    """The default policy: an epoch's end saves once every_n_minutes have passed since the
    last checkpoint; the last epoch always; each epoch is decided once (the export asks
    first, the checkpoint follows)."""
    now = [0.0]
    cb = RunCheckpoint("/nonexistent", every_n_minutes=0.5, clock=lambda: now[0])
    saved = []

    def save(trainer, module):
        saved.append(trainer.current_epoch)
        cb._last_save_time = now[0]

    cb.save = save
    trainer = _policy_trainer(max_epochs=7)
    for epoch, t in enumerate([10, 20, 31, 40, 62, 70, 75]):
        now[0], trainer.current_epoch = float(t), epoch
        asked = cb.due_at_epoch_end(trainer)  # the export asks first
        cb.on_train_epoch_end(trainer, None)
        assert asked == (epoch in saved)
    assert saved == [2, 4, 6]  # 31 s and 62 s: 30 s after the previous save; 6: the run's end
    trainer.current_epoch, now[0] = 0, 0.0  # a new epoch (as after a resume): decided anew
    assert not cb.due_at_epoch_end(trainer)
    now[0] = 1000.0  # the clock moves on while the export is written: the same decision
    assert not cb.due_at_epoch_end(trainer)


def test_every_n_epochs_and_every_n_steps_add_checkpoints():
    cb = RunCheckpoint("/nonexistent", every_n_minutes=0, every_n_epochs=2, every_n_steps=3)
    saved = []
    cb.save = lambda trainer, module: saved.append((trainer.current_epoch, trainer.global_step))
    trainer = _policy_trainer(max_epochs=5, num_training_batches=4)
    for epoch in range(5):
        trainer.current_epoch = epoch
        for batch in range(4):
            trainer.global_step = epoch * 4 + batch + 1
            cb.on_train_batch_end(trainer, None, None, None, batch)
        cb.on_train_epoch_end(trainer, None)
    # steps 3, 6, 9, 15, 18 (12 is an epoch's last step: saved at its end if due);
    # epochs 1 and 3 (every 2), epoch 4 (the end)
    assert saved == [(0, 3), (1, 6), (1, 8), (2, 9), (3, 15), (3, 16), (4, 18), (4, 20)]


def _tiny_checkpoint(tmp_path):
    args = ["pretrain", *tiny_overrides(tmp_path), "run_name=r"]
    args += ["method_kwargs.stage1_epochs=1", "method_kwargs.stage2_epochs=1"]
    assert main([*args, "method_kwargs.queue_size=16"]) == 0
    return tmp_path / "outputs" / "mbcf" / "r" / "checkpoints" / "last.ckpt"


def test_ckpt_info_names_each_part_once(tmp_path, capsys):
    path = _tiny_checkpoint(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    sizes = breakdown(ckpt)
    model = ckpt["state_dict"]
    online = sum(
        t.untyped_storage().nbytes() for k, t in model.items() if k.startswith("encoders.")
    )
    momentum = sum(t.untyped_storage().nbytes() for k, t in model.items() if "_k." in k)
    queues = sum(t.untyped_storage().nbytes() for k, t in model.items() if "queue" in k)
    assert sizes["momentum copies"] == momentum and sizes["queues"] == queues > 0
    assert sizes["weights"] >= online > 0
    # SGD with momentum keeps one buffer per trained parameter: the size of the weights that
    # train (BatchNorm statistics are buffers, with no optimizer state)
    trained = sum(
        t.untyped_storage().nbytes()
        for k, t in model.items()
        if "_k." not in k and "queue" not in k and "running_" not in k and "num_batches" not in k
    )
    assert sizes["optimizer"] == pytest.approx(trained, rel=0.01)
    assert sum(sizes.values()) <= path.stat().st_size  # nothing counted twice
    text = describe(path)
    assert "momentum copies" in text and "optimizer" in text and "state_roles" not in text
    assert main(["ckpt", "info", str(path)]) == 0
    assert "momentum copies" in capsys.readouterr().out


def test_ckpt_info_refuses_what_is_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["ckpt", "info", str(junk)]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main(["ckpt", "info", str(tmp_path / "missing.ckpt")]) == 2
    assert main(["ckpt", "nope", "x"]) == 2


def test_a_signal_at_an_epochs_last_step_exits_after_the_epoch_end_checkpoint():
    """Mid-epoch the step's checkpoint is written at once and the run exits at the next hook;
    at the epoch's last step validation runs first, the epoch's end writes the checkpoint, and
    the run exits at the next epoch's start (never before a checkpoint of that step)."""
    from solo_rgbd.errors import Preempted

    def run(batch_idx: int) -> list[str]:
        cb = RunCheckpoint("/nonexistent")
        events: list[str] = []
        cb.save = lambda trainer, module: events.append(f"save {trainer.global_step}")
        cb.signals.signum = 15  # as the handler sets it
        trainer = _policy_trainer(global_step=batch_idx + 1, num_training_batches=4)
        trainer.loggers, trainer.strategy = [], SimpleNamespace()
        cb.on_train_batch_end(trainer, None, None, None, batch_idx)
        hooks = [
            ("validation", lambda: cb.on_validation_start(trainer, None)),
            ("epoch end", lambda: cb.on_train_epoch_end(trainer, None)),
            ("next epoch", lambda: cb.on_train_epoch_start(trainer, None)),
        ]
        if batch_idx < 3:
            hooks = [("next batch", lambda: cb.on_train_batch_start(trainer, None, None, 0))]
        for name, hook in hooks:
            try:
                hook()
                events.append(name)
            except Preempted:
                events.append(f"exit at {name}")
                break
        return events

    assert run(1) == ["save 2", "exit at next batch"]
    assert run(3) == ["validation", "save 4", "epoch end", "exit at next epoch"]
