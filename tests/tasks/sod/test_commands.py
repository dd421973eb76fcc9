import json
import shutil

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from solo_rgbd.cli import main
from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.errors import CheckpointError, ConfigError
from solo_rgbd.nn.encoder_io import load_encoders, sha256_of
from tests.conftest import tiny_overrides

SOD_TINY = [
    "backbone=tiny",
    "data.synthetic.n=40",
    "data.synthetic.n_test=10",
    "data.synthetic.size=40",
    "image_size=48",
    "batch_size=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "decoder_dim=16",
]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pre")
    cfg = compose(
        "pretrain",
        tiny_overrides(
            tmp,
            **{
                "method_kwargs.stage1_epochs": "1",
                "method_kwargs.stage2_epochs": "1",
                "method_kwargs.queue_size": "16",
                "trainer.limit_train_batches": "2",
            },
        ),
    )
    return run_pretrain(cfg)


def test_encoders_load_from_a_run_folder_and_from_its_checkpoint(pretrained_run):
    backbone = compose("sod", ["backbone=tiny"]).backbone
    loaded = load_encoders(str(pretrained_run), backbone)
    rgb, depth = loaded["rgb"], loaded["depth"]
    saved = load_file(pretrained_run / "encoders" / "depth.safetensors")
    assert all(torch.equal(v, depth.model.state_dict()[k]) for k, v in saved.items())
    assert rgb.in_chans == 3 and depth.in_chans == 1
    depth2 = load_encoders(str(pretrained_run / "checkpoints" / "last.ckpt"), backbone)["depth"]
    assert all(torch.equal(v, depth2.model.state_dict()[k]) for k, v in saved.items())


def _resign(folder):
    manifest = json.loads((folder / "encoders.json").read_text())
    for entry in manifest["encoders"].values():
        entry["sha256"] = sha256_of(folder / entry["file"])
    (folder / "encoders.json").write_text(json.dumps(manifest))


def test_encoder_files_that_do_not_fit_fail_naming_the_mismatch(pretrained_run, tmp_path):
    backbone = compose("sod", ["backbone=tiny"]).backbone
    bad = tmp_path / "encoders"
    shutil.copytree(pretrained_run / "encoders", bad)
    shutil.copy(
        bad / "rgb.safetensors", bad / "depth.safetensors"
    )  # an RGB encoder where depth belongs
    with pytest.raises(CheckpointError, match="depth.safetensors' does not match the sha256"):
        load_encoders(str(bad), backbone)  # the manifest no longer vouches for depth.safetensors
    _resign(bad)  # a manifest that lists the wrong file consistently
    with pytest.raises(ConfigError, match="in_chans=3.*needs in_chans=1"):
        load_encoders(str(bad), backbone)
    manifest = json.loads((bad / "encoders.json").read_text())
    manifest["encoders"]["depth"]["backbone"] = "resnet18"
    (bad / "encoders.json").write_text(json.dumps(manifest))
    shutil.copy(pretrained_run / "encoders" / "depth.safetensors", bad / "depth.safetensors")
    _resign(bad)
    with pytest.raises(ConfigError, match="does not fit backbone 'resnet18'.*missing key"):
        load_encoders(str(bad), backbone)
    with pytest.raises(ConfigError, match="backbone.weights"):
        load_encoders("imagenet", backbone)


def test_imagenet_weights_from_a_local_file_adapt_to_depth(tmp_path):
    backbone = compose("sod", ["backbone=tiny"]).backbone
    ref = timm.create_model("test_resnet", num_classes=10)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    backbone.weights = str(tmp_path / "w.pth")
    loaded = load_encoders("imagenet", backbone)
    rgb, depth = loaded["rgb"], loaded["depth"]
    assert torch.equal(
        rgb.model.conv1[0].weight
        if hasattr(rgb.model.conv1, "__getitem__")
        else rgb.model.conv1.weight,
        ref.conv1[0].weight if hasattr(ref.conv1, "__getitem__") else ref.conv1.weight,
    )
    first = next(v for v in depth.model.state_dict().values() if v.ndim == 4)
    assert first.shape[1] == 1


def _non_square_test_set(src, dst, size=(56, 40)):
    for sub in ("RGB", "depth", "GT"):
        (dst / sub).mkdir(parents=True)
        for path in sorted((src / sub).iterdir())[:6]:
            Image.open(path).resize(size).save(dst / sub / path.name)
    shutil.copy(src / "meta.csv", dst / "meta.csv")


@pytest.mark.slow
def test_train_eval_predict_end_to_end(pretrained_run, tmp_path, synth_root, capsys):
    out = tmp_path / "sod"
    assert (
        main(
            [
                "sod",
                "train",
                f"encoders={pretrained_run}",
                f"output_dir={out}",
                "run_name=r",
                *SOD_TINY,
            ]
        )
        == 0
    )
    run = out / "train" / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert (run / "checkpoints" / "best.ckpt").is_file() and summary["select_by"] == "MAE"
    page = (run / "report.html").read_text()  # written when training finished
    assert "not evaluated yet" in page and "solo-rgbd sod eval ckpt=" in page
    assert 'id="train-curves"' in page and 'id="run-info"' in page
    # a test set whose GT is neither square nor the network's input size (48)
    odd = tmp_path / "odd"
    _non_square_test_set(synth_root, odd)
    ev = tmp_path / "eval"
    assert (
        main(
            [
                "sod",
                "eval",
                f"ckpt={run}",
                f"out={ev}",
                "batch_size=4",
                f"test_sets=[{{name: odd, path: '{odd}'}}]",
            ]
        )
        == 0
    )
    for png in (ev / "predictions" / "odd").iterdir():
        assert Image.open(png).size == (56, 40) and Image.open(png).mode == "L"
    assert sorted(p.stem for p in (ev / "predictions" / "odd").iterdir()) == sorted(
        p.stem for p in (odd / "GT").iterdir()
    )
    results = json.loads((ev / "results.json").read_text())
    scores = next(iter(results.values()))["odd"]
    assert {"all", "plain"} <= set(scores)  # broken down by the camouflage metadata
    assert 0 <= scores["all"]["MAE"] <= 1 and 0 <= scores["all"]["maxF"] <= 1
    for name in (
        "results.md",
        "results.csv",
        "pr_curves.png",
        "f_threshold.png",
        "qualitative_odd.png",
        "curves.json",
    ):
        assert (ev / name).is_file(), name
    _check_eval_report(ev, scores, tmp_path)
    # predict works without GT; eval does not
    unlabelled = tmp_path / "unlabelled"
    _non_square_test_set(synth_root, unlabelled)
    shutil.rmtree(unlabelled / "GT")
    pred_out = tmp_path / "pred"
    assert main(["sod", "predict", f"ckpt={run}", f"input={unlabelled}", f"out={pred_out}"]) == 0
    assert len(list(pred_out.iterdir())) == 6
    assert Image.open(next(pred_out.iterdir())).size == (56, 40)
    capsys.readouterr()
    assert (
        main(
            [
                "sod",
                "eval",
                f"ckpt={run}",
                f"out={tmp_path / 'e2'}",
                f"test_sets=[{{name: u, path: '{unlabelled}'}}]",
            ]
        )
        == 2
    )
    assert "GT" in capsys.readouterr().err


def _check_eval_report(ev, scores, tmp_path):
    """The eval's artefacts and its page: scores, PR and F curves, best / median / worst."""
    import csv

    from tests.reports.chromium import CHROMIUM, render

    with open(ev / "per_image_odd.csv", newline="") as f:
        per_image = list(csv.DictReader(f))
    assert len(per_image) == 6 and {"stem", "maxF", "MAE", "S"} <= set(per_image[0])
    mean_mae = sum(float(r["MAE"]) for r in per_image) / 6
    assert abs(mean_mae - scores["all"]["MAE"]) < 1e-5  # the set's MAE is the mean of these
    index = json.loads((ev / "qualitative" / "odd" / "index.json").read_text())
    by_mae = sorted(per_image, key=lambda r: float(r["MAE"]))
    assert index["ranked"]["best"] == by_mae[0]["stem"]
    assert index["ranked"]["worst"] == by_mae[-1]["stem"]
    page = (ev / "report.html").read_text()  # eval out of the run folder: the eval's page
    for anchor in ('id="scores"', 'id="pr"', 'id="f-threshold"', 'id="qualitative"'):
        assert anchor in page
    assert f"{scores['all']['MAE']:.4g}" in page and 'id="missing"' not in page
    assert page.count("<img ") == 12  # best, median, worst x RGB, depth, GT, prediction
    if CHROMIUM is not None:
        shown = render(ev / "report.html", tmp_path)
        assert shown.console == [] and len(shown.plots) == 2
        assert all(w > 0 and h > 0 for w, h in shown.svgs)
        assert len(shown.images) == 12 and all(w > 0 and nw > 0 for w, _, nw, _ in shown.images)


def test_sod_score_names_missing_predictions(tmp_path, synth_root, capsys):
    pred = tmp_path / "maps"
    pred.mkdir()
    for path in sorted((synth_root / "GT").iterdir())[:-2]:
        shutil.copy(path, pred / path.name)
    score = ["sod", "score", f"pred={pred}", f"test_sets=[{{name: s, path: '{synth_root}'}}]"]
    score.append(f"out={tmp_path / 'scores'}")  # the maps are the user's: the tables go elsewhere
    assert main(score) == 2
    err = capsys.readouterr().err
    assert "no map for 2 GT stem(s): 00030, 00031" in err
    (pred / "00030.png").write_bytes((synth_root / "GT" / "00030.png").read_bytes())
    arr = np.asarray(Image.open(synth_root / "GT" / "00031.png"))
    Image.fromarray(arr).save(pred / "00031.png")
    assert main(score) == 0
    assert "| s | maxF ↑ | 1.000 |" in capsys.readouterr().out
    assert sorted(p.suffix for p in pred.iterdir()) == [".png"] * 32  # the user's maps alone


def test_sod_score_does_not_write_into_a_folder_of_the_users_maps(tmp_path, synth_root, capsys):
    """Issue 30, finding 3: without out= the tables went into pred=, over the user's files."""
    pred = tmp_path / "mymaps"
    shutil.copytree(synth_root / "GT", pred)
    (pred / "scores.md").write_text("my notes")
    sets = f"test_sets=[{{name: s, path: '{synth_root}'}}]"
    assert main(["sod", "score", f"pred={pred}", sets]) == 2
    assert "pass out=DIR" in capsys.readouterr().err
    assert (pred / "scores.md").read_text() == "my notes" and not (pred / "scores.csv").exists()


def test_sod_can_train_on_every_pair_without_a_validation_split(tmp_path, capsys):
    over = [*SOD_TINY, "trainer.max_epochs=1", "val_fraction=0", f"output_dir={tmp_path}"]
    assert main(["sod", "train", "encoders=random", "run_name=all", *over]) == 0
    summary = json.loads((tmp_path / "train" / "all" / "summary.json").read_text())
    assert summary["val_pairs"] == 0 and summary["train_pairs"] == 40  # every training pair
    assert (tmp_path / "train" / "all" / "checkpoints" / "best.ckpt").is_file()  # the last epoch
    assert compose("sod", ["recipe=paper"]).val_fraction == 0.0


def test_label_fraction_keeps_a_seeded_prefix_cycled_to_the_full_count():
    import torch
    from omegaconf import OmegaConf

    from solo_rgbd.commands.sod_train import _labelled
    from solo_rgbd.errors import ConfigError

    ids = torch.tensor([7, 3, 9, 1, 4, 8, 2, 6, 5, 0])
    tenth = _labelled(ids, OmegaConf.create({"label_fraction": 0.1}))
    assert tenth == [7] * 10  # 1 labelled pair, as many steps as with every pair
    half = _labelled(ids, OmegaConf.create({"label_fraction": 0.5}))
    assert half == [7, 3, 9, 1, 4] * 2
    assert _labelled(ids, OmegaConf.create({"label_fraction": 1.0})) == ids.tolist()
    with pytest.raises(ConfigError, match="label_fraction=0.0 must be in"):
        _labelled(ids, OmegaConf.create({"label_fraction": 0.0}))


@pytest.mark.slow
def test_sod_eval_and_predict_read_a_packed_test_set_as_the_folder(tmp_path, synth_root, capsys):
    """Issue 33: a test set packed with --split test scores exactly as its folder does, and
    sod predict takes a pack as input."""
    out = tmp_path / "out"
    train = ["sod", "train", "encoders=random", f"output_dir={out}", "run_name=r", *SOD_TINY]
    assert main(train) == 0
    run = out / "train" / "r"
    packed = tmp_path / "packed"
    assert main(["data", "pack", str(synth_root), str(packed), "--size", "48", "--quiet"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "sod",
                "eval",
                f"ckpt={run}",
                f"out={tmp_path / 'e'}",
                f"test_sets=[{{name: t, path: '{packed}'}}]",
            ]
        )
        == 2
    )  # a train pack
    assert "packed as the train split" in capsys.readouterr().err
    shutil.rmtree(packed)
    pack = ["data", "pack", str(synth_root), str(packed), "--size", "48", "--quiet"]
    assert main([*pack, "--split", "test"]) == 0
    scores = {}
    for name, path in (("folder", synth_root), ("pack", packed)):
        ev = tmp_path / name
        cmd = [
            "sod",
            "eval",
            f"ckpt={run}",
            f"out={ev}",
            f"test_sets=[{{name: t, path: '{path}'}}]",
        ]
        assert main(cmd) == 0
        scores[name] = next(iter(json.loads((ev / "results.json").read_text()).values()))["t"]
        assert len(list((ev / "predictions" / "t").glob("*.png"))) == 32
    assert scores["pack"] == scores["folder"]  # the same pixels in, the same GT files scored
    pred = tmp_path / "pred"
    assert main(["sod", "predict", f"ckpt={run}", f"input={packed}", f"out={pred}"]) == 0
    maps = sorted(p.name for p in pred.glob("*.png"))
    assert maps == sorted(p.name for p in (tmp_path / "folder" / "predictions" / "t").glob("*.png"))
