"""Reruns that never lie: stage records with run-relative paths and output hashes, --overwrite that removes only
edgekd's files, and a torn training checkpoint that falls back to the one before it."""

import json

import pytest
import torch

from edgekd import pipeline
from edgekd.integrity import sha256


def test_stage_record_paths_are_relative_and_follow_a_moved_run(tmp_path):
    a = tmp_path / "a"
    (a / "export").mkdir(parents=True)
    (a / "export" / "m.onnx").write_bytes(b"model")
    result = [{"format": "onnx", "path": str(a / "export" / "m.onnx"), "files": [str(a / "export" / "m.onnx")],
               "elsewhere": "/data/photos/x.jpg", "name": "export"}]
    pipeline._write_record(a / "stages" / "export.json", "h", result, a)
    raw = (a / "stages" / "export.json").read_text()
    assert str(a) not in raw and "/data/photos/x.jpg" in raw  # outside the run: kept as given
    saved = json.loads(raw)
    assert saved["files"] == {"export/m.onnx": sha256(a / "export" / "m.onnx")}
    a.rename(tmp_path / "b")  # a moved (or copied) run reads its own files
    b = tmp_path / "b"
    loaded = pipeline._load_record(b / "stages" / "export.json", b)
    assert loaded["result"][0]["path"] == str(b / "export" / "m.onnx")
    assert loaded["result"][0]["files"] == [str(b / "export" / "m.onnx")] and loaded["result"][0]["name"] == "export"
    assert pipeline._stale(loaded, b) is None


def test_a_missing_or_changed_output_makes_the_record_stale(tmp_path):
    (tmp_path / "bundle").mkdir()
    f = tmp_path / "bundle" / "model.onnx"
    f.write_bytes(b"one")
    pipeline._write_record(tmp_path / "stages" / "bundle.json", "h", {"dir": str(tmp_path / "bundle"),
                                                                        "model": str(f)}, tmp_path)
    rec = pipeline._load_record(tmp_path / "stages" / "bundle.json", tmp_path)
    f.write_bytes(b"two")
    assert pipeline._stale(rec, tmp_path) == "bundle/model.onnx changed since it was written"
    f.unlink()
    assert pipeline._stale(rec, tmp_path) == "bundle/model.onnx is missing"
    assert "older edgekd" in pipeline._stale({"hash": "h", "result": {}}, tmp_path)
    (tmp_path / "stages" / "bundle.json").write_text("{not json")
    assert pipeline._load_record(tmp_path / "stages" / "bundle.json", tmp_path) is None


def test_overwrite_removes_only_what_edgekd_wrote(tmp_path, capsys):
    root = tmp_path / "run"
    for d in ("stages", "export", "bundle", "cache"):
        (root / d).mkdir(parents=True)
        (root / d / "x").write_text("edgekd")
    (root / "run.json").write_text(json.dumps({"config": {"name": "fire"}}))
    (root / "fire.tar.gz").write_bytes(b"tar")
    (root / "verify.json").write_text("{}")
    (root / "my-notes.txt").write_text("mine")
    (root / "photos").mkdir()
    (root / "photos" / "a.jpg").write_bytes(b"jpg")
    (root / "other.tar.gz").write_bytes(b"not edgekd's")
    pipeline.prepare_run_dir(root, overwrite=True)
    assert sorted(p.name for p in root.iterdir()) == ["my-notes.txt", "other.tar.gz", "photos"]
    assert (root / "photos" / "a.jpg").read_bytes() == b"jpg"
    assert "kept 3 entries edgekd did not write" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["file", "foreign folder"])
def test_a_wrong_out_fails_before_the_preflight(tmp_path, monkeypatch, kind):
    """--out a file, or a folder that is not a run: one ConfigError before any data is read or model exported."""
    from edgekd.config import RunConfig
    from edgekd.errors import ConfigError
    from edgekd.stages import preflight
    from edgekd.targets import load_target

    root = tmp_path / "out"
    if kind == "file":
        root.write_text("mine")
    else:
        root.mkdir()
        (root / "photo.jpg").write_bytes(b"jpg")
    monkeypatch.setattr(preflight, "preflight", lambda r: pytest.fail("the pre-flight ran before --out was checked"))
    with pytest.raises(ConfigError, match="not a folder" if kind == "file" else "not an edgekd run folder"):
        pipeline.run(RunConfig(data="builtin:shapes10"), load_target("cpu-x86"), root)
    kept = root.read_text() if kind == "file" else (root / "photo.jpg").read_text()
    assert kept == ("mine" if kind == "file" else "jpg")


def _fit(workdir, epochs):
    from edgekd.data import load_data
    from edgekd.data.torchdata import loader
    from edgekd.distill import trainer
    from edgekd.distill.catalog import build_loss
    from edgekd.models.factory import create_timm

    data = load_data("builtin:shapes10", 32, max_train=32, max_eval=16)
    torch.manual_seed(0)
    model = create_timm("cifar_resnet20", 10)
    tr = loader(data.train, data.preprocess, 16, shuffle=True, seed=3)
    va = loader(data.val, data.preprocess, 16, shuffle=False)
    return trainer.fit(model, tr, va, build_loss("ce"), trainer.TrainSettings(epochs, 1e-2, 0.0, seed=3), workdir)


def _torn(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_a_torn_last_checkpoint_falls_back_to_the_one_before_it(tmp_path, capsys):
    w = tmp_path / "w"
    _fit(w, 2)
    assert (w / "last.prev.pt").is_file()  # epoch 1's state, kept when epoch 2's was written
    (w / "done.json").unlink()
    (w / "final.pt").unlink()
    _torn(w / "last.pt")
    res = _fit(w, 3)  # resumes after epoch 1 (the readable one), trains epochs 2 and 3
    err = capsys.readouterr().err
    assert "last.pt is unreadable" in err and "resuming from the checkpoint before it" in err
    assert "resuming after epoch 1" in err and [h["epoch"] for h in res.history] == [1, 2, 3]
    assert (w / "last.pt.torn").is_file() and torch.load(w / "last.pt", weights_only=True)["epoch"] == 2


def test_no_readable_checkpoint_starts_over_and_keeps_the_torn_files(tmp_path, capsys):
    w = tmp_path / "w"
    _fit(w, 1)
    (w / "done.json").unlink()
    (w / "final.pt").unlink()
    _torn(w / "last.pt")
    res = _fit(w, 1)
    err = capsys.readouterr().err
    assert "no readable checkpoint is left" in err and "starts over" in err
    assert [h["epoch"] for h in res.history] == [1] and (w / "last.pt.torn").is_file()


def test_a_torn_final_checkpoint_is_rebuilt_from_the_last_state(tmp_path, capsys):
    w = tmp_path / "w"
    first = _fit(w, 1)
    _torn(w / "final.pt")
    again = _fit(w, 1)
    err = capsys.readouterr().err
    assert "final.pt is unreadable" in err and "finishing again" in err
    assert again.best_val == pytest.approx(first.best_val) and torch.load(w / "final.pt", weights_only=True)
