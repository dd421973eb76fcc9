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


def test_a_checkpoint_write_that_fails_keeps_the_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "last.ckpt")
    with pytest.raises(Exception):  # noqa: B017  (pickling a lambda fails half-way through)
        io.save_checkpoint(
            {"state_dict": {"a": torch.ones(1)}, "bad": lambda: 0}, tmp_path / "last.ckpt"
        )
    # Lightning's own TorchCheckpointIO would have truncated last.ckpt here
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(kept["state_dict"]["a"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left
