import pytest
import torch

from solo_rgbd.engine.checkpoint import AtomicCheckpointIO
from solo_rgbd.utils.atomic import atomic_path, atomic_torch_save


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "encoders" / "rgb.pt"
    atomic_torch_save({"w": torch.ones(2)}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        raise RuntimeError("killed mid-write")
    assert torch.equal(torch.load(target)["w"], torch.ones(2))
    assert sorted(p.name for p in target.parent.iterdir()) == ["rgb.pt"]


def test_a_checkpoint_write_cut_off_mid_file_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import solo_rgbd.engine.checkpoint as ckpt_module

    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "last.ckpt")

    def dies_half_way(buffer, path):  # the disk fills up / the process is killed mid-write
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_module, "write_out", dies_half_way)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"a": torch.ones(1)}}, tmp_path / "last.ckpt")
    # the half-written bytes went to a temporary, never onto last.ckpt (which Lightning's own
    # TorchCheckpointIO opens for writing directly)
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(kept["state_dict"]["a"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


def _fresh_bytes(obj, tmp_path) -> bytes:
    """What a plain torch_save_bytes into a new file writes."""
    from solo_rgbd.utils.atomic import torch_save_bytes

    path = tmp_path / "fresh.pt"
    path.unlink(missing_ok=True)
    torch_save_bytes(obj, path)
    return path.read_bytes()


def test_checkpoints_recycle_the_file_before_last_and_hold_the_same_bytes(tmp_path):
    from solo_rgbd.utils.atomic import spare_of

    io, last = AtomicCheckpointIO(), tmp_path / "run" / "last.ckpt"
    states = [{"state_dict": {"w": torch.full((1000 - 300 * i,), float(i))}} for i in range(3)]
    inodes = []
    for i, state in enumerate(states):
        io.save_checkpoint(state, last)
        assert last.read_bytes() == _fresh_bytes(state, tmp_path)  # cut to the new length too
        inodes.append(last.stat().st_ino)
        if i:  # the version before is kept as the spare, complete
            assert spare_of(last).read_bytes() == _fresh_bytes(states[i - 1], tmp_path)
    assert inodes[2] == inodes[0] != inodes[1]  # the third save wrote over the first's file
    io.teardown()
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


def test_a_spare_with_other_links_or_a_symlink_is_never_written_through(tmp_path):
    from solo_rgbd.utils.atomic import spare_of

    io, last = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.zeros(4)}, last)
    keep = tmp_path / "keep.ckpt"
    keep.hardlink_to(last)  # a user keeps this checkpoint under another name
    kept = keep.read_bytes()
    for i in range(3):  # the kept file becomes the spare after the first of these saves
        io.save_checkpoint({"w": torch.full((4,), float(i + 1))}, last)
    assert keep.read_bytes() == kept
    victim = tmp_path / "thesis.txt"
    victim.write_text("not a checkpoint")
    spare_of(last).unlink()
    spare_of(last).symlink_to(victim)
    io.save_checkpoint({"w": torch.ones(4)}, last)
    assert victim.read_text() == "not a checkpoint"
    assert torch.equal(torch.load(last)["w"], torch.ones(4))


def test_where_names_cannot_be_exchanged_the_new_file_is_renamed_over(tmp_path, monkeypatch):
    import solo_rgbd.utils.atomic as atomic

    monkeypatch.setattr(atomic, "exchange_names", lambda a, b: False)
    io, last = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    for i in range(3):
        io.save_checkpoint({"w": torch.full((3,), float(i))}, last)
        assert torch.equal(torch.load(last)["w"], torch.full((3,), float(i)))
        assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no spare is kept
