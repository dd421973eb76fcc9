"""The host buffer checkpoints are serialised into, and the write past the page cache."""

import errno
import os

import pytest
import torch

from solo_rgbd.utils.atomic import torch_save_bytes
from solo_rgbd.utils.direct_io import ALIGN, HostBuffer, serialise, stored_bytes, write_out


def _state(n: int, value: float) -> dict:
    shared = torch.full((n,), value)
    return {"a": shared, "view": shared[1:], "b": torch.arange(n // 3), "meta": {"epoch": 3}}


def test_stored_bytes_counts_each_storage_once():
    state = _state(1000, 1.0)
    assert stored_bytes(state) == 1000 * 4 + (1000 // 3) * 8


def test_the_buffer_grows_in_place_and_keeps_its_content():
    buf = HostBuffer()
    buf.write(b"x" * 1000)
    buf.write(memoryview(torch.arange(4, dtype=torch.int32).numpy()))  # any buffer, as bytes
    first = buf.capacity
    buf.write(b"y" * (3 << 20))  # past the first mapping
    assert buf.capacity > first and buf.capacity % ALIGN == 0
    with buf._span(buf.nbytes) as data:
        got = bytes(data)
    assert got == b"x" * 1000 + bytes(torch.arange(4, dtype=torch.int32).numpy()) + b"y" * (3 << 20)
    buf.clear()
    assert buf.nbytes == 0 and buf.capacity >= 3 << 20  # the pages are kept for the next save
    buf.close()
    assert buf.capacity == 0
    buf.write(b"again")  # usable after close
    assert buf.nbytes == 5


@pytest.mark.parametrize("direct", [True, False])
def test_written_bytes_are_torch_saves_and_an_old_longer_file_is_cut(tmp_path, monkeypatch, direct):
    if not direct:  # a file system without O_DIRECT (tmpfs): open says EINVAL
        real_open = os.open

        def no_direct(path, flags, *args):
            if flags & getattr(os, "O_DIRECT", 0):
                raise OSError(errno.EINVAL, "Invalid argument", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", no_direct)
    small, big = _state(1000, 2.0), _state(300_000, 1.0)
    reference = tmp_path / "reference.pt"
    torch_save_bytes(small, reference)
    out, buf = tmp_path / "out.ckpt", HostBuffer()
    serialise(big, buf)
    write_out(buf, out)
    serialise(small, buf)  # the same buffer and file again: shorter
    write_out(buf, out)
    assert out.read_bytes() == reference.read_bytes()
    assert os.stat(out).st_size % ALIGN != 0  # the direct write's padding was cut off
    assert torch.equal(torch.load(out, weights_only=True)["view"], small["view"])


def test_a_device_that_refuses_the_alignment_gets_a_buffered_write(tmp_path, monkeypatch):
    real_write, calls = os.write, []

    def picky(fd, data):
        calls.append(len(data))
        if len(calls) == 1:  # the first write, the direct one, is refused
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", picky)
    buf, out = HostBuffer(), tmp_path / "out.ckpt"
    buf.write(b"0123456789")
    write_out(buf, out)
    assert out.read_bytes() == b"0123456789"
    assert calls == [ALIGN, 10]  # padded and direct, then unpadded through the page cache


def test_never_written_through_a_symlink(tmp_path):
    victim = tmp_path / "thesis.txt"
    victim.write_text("not a checkpoint")
    link = tmp_path / "out.ckpt"
    link.symlink_to(victim)
    buf = HostBuffer()
    buf.write(b"checkpoint bytes")
    with pytest.raises(OSError):
        write_out(buf, link)
    assert victim.read_text() == "not a checkpoint"
