"""``dptune data ...`` end to end on tiny real-format files; bad input gives one line, exit code 2."""

from __future__ import annotations

import json

import pytest

from dptune.cli.main import main
from fixtures_realdata import write_coco, write_mdetr, write_refer, write_tiny_clip


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_data_pipeline_cli(tmp_path, capsys, tiny_pipeline_dir):
    captions = write_coco(tmp_path / "coco")
    write_refer(tmp_path / "refer")
    clip = write_tiny_clip(tmp_path / "clip")
    code, out, _ = _run(capsys, ["data", "convert-refer", "--refer-dir", str(tmp_path / "refer"),
                                 "--out", str(tmp_path / "refs.json")])
    assert code == 0 and json.loads(out)["expressions"] == 5
    code, out, _ = _run(capsys, ["data", "mine-negatives", "--captions", str(captions), "--out",
                                 str(tmp_path / "hn.json"), "--embedder", "hf_clip", "--model", str(clip),
                                 "--k-captions", "4", "--k-images", "3", "--shard-size", "4", "--no-progress"])
    assert code == 0 and json.loads(out)["captions"] == 13
    assert json.loads((tmp_path / "hn.json").read_text())["k_images"] == 3
    cfg = tmp_path / "cache.yaml"
    cfg.write_text("image_size: 16\nshard_size: 4\n")
    code, out, _ = _run(capsys, ["data", "cache-latents", "--captions", str(captions), "--refs",
                                 str(tmp_path / "refs.json"), "--vae", str(tiny_pipeline_dir), "--out",
                                 str(tmp_path / "lat"), "--config", str(cfg), "--batch-size", "2", "--no-progress"])
    summary = json.loads(out)
    assert code == 0 and summary["images"] == 6 and summary["shards"] == 2
    code, out, _ = _run(capsys, ["data", "build-hn-coco", "--captions", str(captions), "--negatives",
                                 str(tmp_path / "hn.json"), "--out", str(tmp_path / "hn_coco.json")])
    assert code == 0 and json.loads(out)["i2t"] == 6


def test_convert_refer_help_warns_about_pickles(capsys):
    with pytest.raises(SystemExit):
        main(["data", "convert-refer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "restricted unpickler" in text and "execute code" in text


@pytest.mark.parametrize("argv, needle", [
    (["data", "build-hn-coco", "--captions", "{tmp}/missing.json", "--negatives", "{tmp}/x.json", "--out",
      "{tmp}/o.json"], "COCO captions file {tmp}/missing.json does not exist"),
    (["data", "mine-negatives", "--captions", "{tmp}/coco/annotations/captions_train2014.json", "--out",
      "{tmp}/o.json", "--embedder", "open_clip", "--model", "{tmp}/m.bin"], "open_clip"),
    (["data", "convert-refer", "--refer-dir", "{tmp}/refer", "--out", "{tmp}/o.json", "--split-by", "refcoco"],
     "must look like DATASET=SPLITBY"),
    (["data", "cache-latents", "--refs", "{tmp}/finetune_refcoco_train.json", "--vae", "{tmp}", "--out",
      "{tmp}/lat"], "images[0] (expression 'bad box') has box"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, needle):
    write_coco(tmp_path / "coco")
    write_refer(tmp_path / "refer")
    write_mdetr(tmp_path / "finetune_refcoco_train.json", refs=[(0, 1, 10, "train", ["bad box"], [0, 0, 99, 5])])
    code, out, err = _run(capsys, [a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dptune data: error:")
    assert needle.format(tmp=tmp_path) in err
