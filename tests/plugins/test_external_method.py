"""A method from another package: one module, one YAML and one entry point, nothing in solo-rgbd."""

import subprocess
import sys
import textwrap

import pytest

from tests.plugins import plugin_env

pytestmark = pytest.mark.slow

METHOD = """
from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss

from solo_rgbd.methods import register_method
from solo_rgbd.methods.base import BaseMethod, StreamKwargs


@dataclass
class FooKwargs(StreamKwargs):
    temperature: float = 0.2


@register_method("foo_ssl")
class FooSSL(BaseMethod):
    Kwargs = FooKwargs

    def __init__(self, cfg):
        super().__init__(cfg)
        self.criterion = NTXentLoss(temperature=float(self.kwargs["temperature"]))

    def make_projector(self, in_dim):
        return torch.nn.Linear(in_dim, 16)

    def stream_loss(self, stream, x1, x2):
        return self.criterion(self.project(stream, x1), self.project(stream, x2)), {}
"""

YAML = """
# @package _global_
method: foo_ssl
optimizer:
  lr: 0.1
trainer:
  max_epochs: 1
"""


def _install_plugin(site):
    pkg = site / "fooplug"
    (pkg / "configs" / "method").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "foo_ssl.py").write_text(METHOD)
    (pkg / "configs" / "method" / "foo_ssl.yaml").write_text(YAML)
    meta = site / "fooplug-0.1.dist-info"  # what pip writes for an installed package
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: fooplug\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [solo_rgbd.methods]
            foo_ssl = fooplug.foo_ssl:FooSSL
            """
        )
    )


def test_a_plugin_method_is_listed_and_trains_with_method_name(tmp_path):
    site = tmp_path / "site"
    _install_plugin(site)
    env = plugin_env(site, tmp_path / "cache")
    cli = [sys.executable, "-m", "solo_rgbd.cli", "pretrain"]
    helped = subprocess.run([*cli, "--help"], env=env, capture_output=True, text=True)
    assert "foo_ssl" in helped.stdout.split("registered methods:")[1].splitlines()[0]
    run = subprocess.run(
        [
            *cli,
            "method=foo_ssl",
            "backbone=tiny",
            "data.synthetic.n=16",
            "data.synthetic.size=32",
            "data.image_size=32",
            "data.batch_size=8",
            "augmentations.crop_size=32",
            "trainer.enable_progress_bar=false",
            f"output_dir={tmp_path / 'out'}",
            "run_name=p",
            "method_kwargs.temperature=0.3",  # a key of the plug-in's own Kwargs schema
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    encoders = tmp_path / "out" / "foo_ssl" / "p" / "encoders"
    assert (encoders / "rgb.safetensors").is_file() and (encoders / "encoders.json").is_file()
    saved = (tmp_path / "out" / "foo_ssl" / "p" / "config.yaml").read_text()
    assert "temperature: 0.3" in saved and "rgbd_mode: two_stream" in saved  # schema defaults
    typo_key = subprocess.run(
        [*cli, "method=foo_ssl", "method_kwargs.temprature=0.3"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert typo_key.returncode == 2
    assert "Did you mean 'method_kwargs.temperature'?" in typo_key.stderr
    typo = subprocess.run([*cli, "method=foo_sl"], env=env, capture_output=True, text=True)
    assert typo.returncode == 2 and "foo_ssl" in typo.stderr  # listed among the registered
