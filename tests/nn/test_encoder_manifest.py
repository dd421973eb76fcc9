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
        (_set("file", "../rgb.pt"), "not a file inside the export folder"),
        (lambda m: [m], "is not an encoders manifest"),
        (lambda m: {**m, "encoders": "rgb.pt"}, "is not an encoders manifest"),
    ],
    ids=["no-hash", "empty-hash", "absolute-file", "climbing-file", "a-list", "a-string"],
)
def test_a_manifest_that_cannot_be_verified_is_refused(export, edit, message):
    verify_export(export)  # the untouched export verifies
    (export / "rgb.pt").write_bytes((export / "rgb.pt").read_bytes() + b"tampered")
    _edit(export, edit)
    with pytest.raises(CheckpointError, match=message):
        verify_export(export)
