"""Exports write over the export before last: the same bytes as safetensors' own writer, and
never through a link."""

import hashlib
import os
import threading

import safetensors.torch
import torch

from solo_rgbd.nn.backbone import Encoder, export_state_dict
from solo_rgbd.nn.encoder_io import (
    discard_spare_folder,
    snapshot_encoders,
    spare_folder_of,
    stage_export,
    verify_export,
    write_export,
)
from solo_rgbd.nn.safetensors_io import write_safetensors


def _state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = export_state_dict(Encoder("resnet10t", 1))  # floats, BN buffers, int64 counters
    state["half"] = torch.randn(3, 5).to(torch.bfloat16)
    state["flag"] = torch.tensor([True, False])
    return state


def _reference(state, tmp_path) -> bytes:
    path = tmp_path / "reference.safetensors"
    safetensors.torch.save_file(state, path, {"backbone": "resnet10t"})
    return path.read_bytes()


def test_a_rewrite_in_place_gives_save_files_bytes_and_their_sha256(tmp_path):
    path, meta = tmp_path / "depth.safetensors", {"backbone": "resnet10t"}
    first = write_safetensors(path, _state(0), meta)()  # a new file
    inode = path.stat().st_ino
    for seed in (1, 2):
        state = _state(seed)
        digest = write_safetensors(path, state, meta)  # the sha256, taken when called
        assert path.stat().st_ino == inode  # written over, not made anew
        assert path.read_bytes() == _reference(state, tmp_path)
        assert digest() == hashlib.sha256(path.read_bytes()).hexdigest() != first
    loaded = safetensors.torch.load_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in _state(2).items())


def test_another_layout_or_a_linked_file_is_made_anew(tmp_path):
    path, meta = tmp_path / "rgb.safetensors", {"backbone": "resnet10t"}
    write_safetensors(path, _state(0), meta)
    grown = {**_state(1), "extra": torch.ones(2)}
    write_safetensors(path, grown, meta)  # another set of tensors
    assert path.read_bytes() == _reference(grown, tmp_path)
    write_safetensors(path, _state(1), {"backbone": "other"})  # other metadata
    assert safetensors.torch.load_file(path).keys() == _state(1).keys()
    keep = tmp_path / "keep.safetensors"
    keep.hardlink_to(path)  # a user keeps this epoch's file
    kept = keep.read_bytes()
    write_safetensors(path, _state(2), {"backbone": "other"})
    assert keep.read_bytes() == kept and path.stat().st_ino != keep.stat().st_ino
    victim = tmp_path / "thesis.txt"
    victim.write_text("mine")
    link = tmp_path / "linked.safetensors"
    link.symlink_to(victim)
    write_safetensors(link, _state(0), meta)
    assert victim.read_text() == "mine" and not link.is_symlink()


def test_a_series_of_exports_recycles_the_folder_before_last(tmp_path):
    out = tmp_path / "encoders"
    snaps = [snapshot_encoders({"rgb": _enc(s, 3), "depth": _enc(s, 1)}) for s in range(3)]
    manifests = [write_export(snap, out, {"epoch": i}) for i, snap in enumerate(snaps)]
    assert verify_export(out)["epoch"] == 2
    spare = spare_folder_of(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".encoders.spare", "encoders"]
    assert (spare / "encoders.json").read_text().count('"epoch": 1') == 1  # the one before
    # the bytes are a fresh export's: the same manifest in a folder of its own
    fresh = write_export(snaps[2], tmp_path / "fresh" / "encoders", {"epoch": 2})
    assert fresh == manifests[2]
    for name in ("rgb.safetensors", "depth.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "fresh" / "encoders" / name).read_bytes()
    discard_spare_folder(out)
    assert not spare.exists()


def test_a_spare_folder_that_is_a_link_is_never_written_through(tmp_path):
    out = tmp_path / "encoders"
    write_export(snapshot_encoders({"rgb": _enc(0, 3)}), out, {"epoch": 0})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "rgb.safetensors").write_text("my file")
    spare = spare_folder_of(out)
    spare.symlink_to(mine, target_is_directory=True)
    staged = stage_export(snapshot_encoders({"rgb": _enc(1, 3)}), out, {"epoch": 1})
    staged.commit()
    assert (mine / "rgb.safetensors").read_text() == "my file"
    assert verify_export(out)["epoch"] == 1 and not spare.is_symlink()
    assert os.listdir(mine) == ["rgb.safetensors"]


def _enc(seed: int, chans: int) -> Encoder:
    torch.manual_seed(seed)
    return Encoder("resnet10t", chans)


def test_a_staged_export_takes_its_hashes_and_writes_its_manifest_when_committed(tmp_path):
    """The sha256 is taken by ``commit`` (the writer thread's, overlapping the checkpoint's
    serialisation), of the bytes written at stage time; the folder has no manifest before."""
    out = tmp_path / "encoders"
    write_export(snapshot_encoders({"rgb": _enc(0, 3), "depth": _enc(0, 1)}), out, {"epoch": 0})
    write_export(snapshot_encoders({"rgb": _enc(1, 3), "depth": _enc(1, 1)}), out, {"epoch": 1})
    snap = snapshot_encoders({"rgb": _enc(2, 3), "depth": _enc(2, 1)})
    staged = stage_export(snap, out, {"epoch": 2})  # over the files of epoch 0, in place
    assert not (staged.tmp / "encoders.json").exists()
    assert verify_export(out)["epoch"] == 1
    worker = threading.Thread(target=staged.commit)
    worker.start()
    worker.join()
    manifest = verify_export(out)  # every file's sha256 checked against its bytes
    assert manifest["epoch"] == 2 and set(manifest["encoders"]) == {"rgb", "depth"}
    fresh = write_export(snap, tmp_path / "fresh" / "encoders", {"epoch": 2})
    assert manifest["encoders"] == fresh["encoders"] == staged.manifest["encoders"]


def test_exported_files_get_the_umasks_mode_not_0600(tmp_path):
    """safetensors' ``save_file`` makes its files 0600; an export is read by a lab, so its
    files get the mode a plain ``open`` gives (0666 less the umask), as the manifest does."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "encoders"
        write_export(snapshot_encoders({"rgb": _enc(0, 3), "depth": _enc(0, 1)}), out, {})
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"rgb.safetensors": 0o644, "depth.safetensors": 0o644, "encoders.json": 0o644}
