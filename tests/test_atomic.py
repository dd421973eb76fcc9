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

    def dies_half_way(obj, path):  # the disk fills up / the process is killed mid-write
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_module, "torch_save_bytes", dies_half_way)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"a": torch.ones(1)}}, tmp_path / "last.ckpt")
    # the half-written bytes went to a temporary, never onto last.ckpt (which Lightning's own
    # TorchCheckpointIO opens for writing directly)
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(kept["state_dict"]["a"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left
