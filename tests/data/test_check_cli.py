import json

from solo_rgbd.cli import main


def test_synth_then_check_reports_64_pairs(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "synth", str(out), "--n", "64", "--size", "40"]) == 0
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pairs: 64" in text and "usable" in text and "near = bright" in text


def test_check_a_broken_copy_fails_naming_the_files(tmp_path, capsys):
    out = tmp_path / "ds"
    main(["data", "synth", str(out), "--n", "12", "--size", "40"])
    (out / "depth" / "00004.png").unlink()
    (out / "RGB" / "00007.jpg").write_bytes(b"\xff\xd8\xff garbage")
    capsys.readouterr()
    assert main(["data", "check", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)[0]
    assert report["usable"] is False
    assert report["rgb_without_depth"] == ["00004"]
    assert any("00007.jpg" in f for f in report["unreadable"])
    assert report["pairs"] == 11


def test_check_reports_a_flipped_polarity(tmp_path, capsys):
    out = tmp_path / "ds"
    main(["data", "synth", str(out), "--n", "8", "--size", "40"])
    capsys.readouterr()
    main(["data", "check", str(out), "--invert-depth"])
    assert "set invert_depth=false" in capsys.readouterr().out


def test_check_a_missing_root_exits_nonzero(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().out
