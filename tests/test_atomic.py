import mmap
import os

import pytest
import torch

from solo_rgbd.engine.checkpoint import AtomicCheckpointIO
from solo_rgbd.utils.atomic import atomic_path, atomic_torch_save, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "encoders" / "rgb.pt"
    atomic_torch_save({"w": torch.ones(2)}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        raise RuntimeError("killed mid-write")
    assert torch.equal(torch.load(target)["w"], torch.ones(2))
    assert sorted(p.name for p in target.parent.iterdir()) == ["rgb.pt"]


def test_a_checkpoint_write_cut_off_mid_file_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "last.ckpt")

    def dies_half_way(obj, f):  # the disk fills up / the process is killed mid-write
        f.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError):  # torch's RuntimeError, as the OSError it stands for
        io.save_checkpoint({"state_dict": {"a": torch.ones(1)}}, tmp_path / "last.ckpt")
    monkeypatch.undo()
    # the half-written bytes went to a temporary, never onto last.ckpt
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(kept["state_dict"]["a"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


def test_identical_states_give_identical_bytes_whatever_the_file_name(tmp_path):
    state = {"state_dict": {"w": torch.arange(10.0)}}
    atomic_torch_save(state, tmp_path / "a.ckpt")
    atomic_torch_save(state, tmp_path / "b" / "last.ckpt")
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b" / "last.ckpt").read_bytes()


def test_a_reader_with_last_ckpt_mapped_sees_its_bytes_unchanged_across_two_saves(tmp_path):
    """Each save is a new file renamed over the name: an evaluation job that holds the file
    open (``torch.load(..., mmap=True)``) keeps reading the checkpoint it opened."""
    io, last = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(50_000)}}, last)
    before = last.read_bytes()
    with open(last, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        loaded = torch.load(last, mmap=True, weights_only=True)
        for i in (1, 2):
            io.save_checkpoint({"state_dict": {"w": torch.full((50_000,), float(i))}}, last)
        assert mapped[:] == before
        assert loaded["state_dict"]["w"].eq(0).all()
    assert torch.load(last, weights_only=True)["state_dict"]["w"].eq(2).all()


def test_new_files_and_folders_get_the_umasks_mode(tmp_path):
    from solo_rgbd.nn.backbone import Encoder
    from solo_rgbd.nn.encoder_io import export_encoders

    old = os.umask(0o027)
    try:
        atomic_torch_save({"w": torch.ones(1)}, tmp_path / "last.ckpt")
        atomic_write_text("x", tmp_path / "config.yaml")
        export_encoders({"rgb": Encoder("resnet10t", 3)}, tmp_path / "encoders", {})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    assert modes == {
        "last.ckpt": 0o640,
        "config.yaml": 0o640,
        "encoders": 0o750,
        "rgb.safetensors": 0o640,
        "encoders.json": 0o640,
    }


def _no_flock(monkeypatch):
    import errno
    import fcntl

    def flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", flock)


def test_without_flock_a_lock_is_a_pid_file_that_a_dead_holder_leaves_to_the_next(
    tmp_path, monkeypatch, capsys
):
    from solo_rgbd.data.pack_checks import pack_lock
    from solo_rgbd.errors import DataError
    from solo_rgbd.utils.locks import FileLock

    _no_flock(monkeypatch)
    first = FileLock(tmp_path / "x.lock")
    assert first.acquire()
    assert (tmp_path / "x.lock.pid").read_text().split()[-1] == str(os.getpid())
    assert not FileLock(tmp_path / "x.lock").acquire()  # held (by a live process)
    (tmp_path / "x.lock.pid").write_text("elsewhere 1\n")  # another host's: never taken over
    assert not FileLock(tmp_path / "x.lock").acquire(timeout=0.2)
    (tmp_path / "x.lock.pid").write_text(f"{__import__('socket').gethostname()} 999999999\n")
    second = FileLock(tmp_path / "x.lock")
    assert second.acquire()  # a dead process of this host: taken over
    second.release()
    assert not (tmp_path / "x.lock.pid").exists()
    assert capsys.readouterr().err.count("has no flock") == 1  # one line per folder
    out = tmp_path / "packed"
    with (
        pack_lock(out),
        pytest.raises(DataError, match="another 'solo-rgbd data pack'"),
        pack_lock(out),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lock"]  # the pack left nothing
