"""Issue 17, item 6: the sha256 check cannot be switched off by editing the manifest."""

import json

import pytest

from solo_rgbd.errors import CheckpointError
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.encoder_io import MANIFEST, export_encoders, verify_export


@pytest.fixture()
def export(tmp_path):
    folder = tmp_path / "encoders"
    export_encoders(
        {"rgb": Encoder("test_resnet", 3), "depth": Encoder("test_resnet", 1)}, folder, {"epoch": 0}
    )
    return folder


def _edit(folder, fn):
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps(fn(manifest)))


def _set(entry_key, value):
    def fn(m):
        m["encoders"]["rgb"][entry_key] = value
        return m

    return fn


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda m: {
                **m,
                "encoders": {
                    k: {x: y for x, y in v.items() if x != "sha256"}
                    for k, v in m["encoders"].items()
                },
            },
            "has no sha256",
        ),
        (_set("sha256", ""), "has no sha256"),
        (_set("file", "/etc/hostname"), "not a file inside the export folder"),
        (_set("file", "../rgb.safetensors"), "not a file inside the export folder"),
        (lambda m: [m], "is not an encoders manifest"),
        (lambda m: {**m, "encoders": "rgb.safetensors"}, "is not an encoders manifest"),
    ],
    ids=["no-hash", "empty-hash", "absolute-file", "climbing-file", "a-list", "a-string"],
)
def test_a_manifest_that_cannot_be_verified_is_refused(export, edit, message):
    verify_export(export)  # the untouched export verifies
    (export / "rgb.safetensors").write_bytes(
        (export / "rgb.safetensors").read_bytes() + b"tampered"
    )
    _edit(export, edit)
    with pytest.raises(CheckpointError, match=message):
        verify_export(export)


def test_exports_are_safetensors_and_older_pt_exports_still_load(tmp_path, export):
    """No pickle in an export; an export written by an earlier version (.pt state dicts,
    the same manifest) loads to the same weights."""
    import hashlib

    import safetensors.torch
    import torch
    from omegaconf import OmegaConf

    from solo_rgbd.nn.encoder_io import load_encoders

    manifest = json.loads((export / MANIFEST).read_text())
    assert {e["file"] for e in manifest["encoders"].values()} == {
        "rgb.safetensors",
        "depth.safetensors",
    }
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name, entry in manifest["encoders"].items():
        state = safetensors.torch.load_file(export / entry["file"])
        torch.save(state, legacy / f"{name}.pt")
        entry["file"] = f"{name}.pt"
        entry["sha256"] = hashlib.sha256((legacy / f"{name}.pt").read_bytes()).hexdigest()
    (legacy / MANIFEST).write_text(json.dumps(manifest))
    backbone = OmegaConf.create({"name": "test_resnet"})
    new = load_encoders(str(export), backbone)
    old = load_encoders(str(legacy), backbone)
    new_rgb, new_depth, old_rgb, old_depth = new["rgb"], new["depth"], old["rgb"], old["depth"]
    for a, b in ((new_rgb, old_rgb), (new_depth, old_depth)):
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    (export / "rgb.safetensors").write_bytes(b"not safetensors")
    _edit(export, lambda m: m)  # unchanged manifest: the hash check fires first
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_encoders(str(export), backbone)
