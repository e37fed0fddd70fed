"""Pretrained starts (edgekd.models.pretrained): files loaded through timm's own loader, the local hub cache, the
offline messages, and what the model cards record. No test downloads anything (conftest sets HF_HUB_OFFLINE=1);
"pretrained" files are made here from tiny timm models."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from edgekd.errors import ConfigError, ModelError
from edgekd.models import pretrained

REV = "0" * 40


@pytest.fixture(autouse=True)
def _fresh_lookups():
    """Hub lookups are cached per process; each test starts from its own cache and network settings."""
    pretrained.find_imagenet.cache_clear()
    pretrained.reachable.cache_clear()
    yield
    pretrained.find_imagenet.cache_clear()
    pretrained.reachable.cache_clear()


def _save(model: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hf_cache(root: Path, repo: str, model: torch.nn.Module) -> Path:
    """``model`` as the Hugging Face hub cache holds a downloaded timm model (refs/main -> snapshot with
    config.json + model.safetensors, written by timm's own save_for_hf)."""
    from timm.models._hub import save_for_hf

    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REV)
    save_for_hf(model, str(folder / "snapshots" / REV), safe_serialization=True)
    return folder / "snapshots" / REV / "model.safetensors"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache and torch hub cache of this test's own (never the user's)."""
    from huggingface_hub import constants

    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-hub"))
    return root


def test_safetensors_with_1000_class_head_loads_backbone_and_reinitialises_head(tmp_path: Path):
    src = timm.create_model("resnet10t", num_classes=1000)
    path = _save(src, tmp_path / "in1k.safetensors")
    torch.manual_seed(0)
    model, rec = pretrained.build("resnet10t", 10, str(path), "student resnet10t", "--student-weights")
    assert torch.equal(model.conv1[0].weight, src.conv1[0].weight)
    assert torch.equal(model.layer4[0].conv2.weight, src.layer4[0].conv2.weight)
    assert model.fc.out_features == 10
    torch.manual_seed(0)
    fresh = timm.create_model("resnet10t", num_classes=10)
    assert torch.equal(model.fc.weight, fresh.fc.weight)  # the head is timm's fresh init, not a slice of the file's
    assert rec == {"requested": str(path), "used": "file", "file": str(path.resolve()), "sha256": _sha(path),
                   "head": "re-initialised (1000 -> 10 classes)"}


def test_state_dict_file_whose_head_fits_keeps_it(tmp_path: Path):
    """A .pth state_dict (DDP `module.` prefixes, {"state_dict": ...} wrapper) of a 10-class model: the head fits
    the data's 10 classes and is kept; the same file for 5 classes re-initialises it."""
    src = timm.create_model("resnet10t", num_classes=10)
    path = tmp_path / "ft10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    model, rec = pretrained.build("resnet10t", 10, str(path), "student", "--student-weights")
    assert torch.equal(model.fc.weight, src.fc.weight) and rec["head"] == "kept"
    assert torch.equal(model.conv1[0].weight, src.conv1[0].weight)
    model5, rec5 = pretrained.build("resnet10t", 5, str(path), "student", "--student-weights")
    assert model5.fc.out_features == 5 and rec5["head"] == "re-initialised (10 -> 5 classes)"
    assert torch.equal(model5.conv1[0].weight, src.conv1[0].weight)


def test_weights_of_another_architecture_are_refused(tmp_path: Path):
    path = _save(timm.create_model("mobilenetv3_small_050", num_classes=1000), tmp_path / "mnv3.safetensors")
    with pytest.raises(ModelError, match="does not match resnet10t"):
        pretrained.build("resnet10t", 3, str(path), "student resnet10t", "--student-weights")


def test_code_pickle_is_refused_not_executed(tmp_path: Path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="refused to load"):
        pretrained.build("resnet10t", 3, str(tmp_path / "evil.pth"), "student", "--student-weights")
    assert "must never run" not in capsys.readouterr().out


def test_unet_encoder_starts_from_a_file(tmp_path: Path):
    """unet_<encoder>: the file is the encoder's (a timm classifier checkpoint, 1000-class head and all); the
    decoder and head start random, and the model runs."""
    src = timm.create_model("resnet10t", num_classes=1000)
    path = _save(src, tmp_path / "enc.safetensors")
    model, rec = pretrained.build("unet_resnet10t", 2, str(path), "student unet_resnet10t", "--student-weights")
    assert torch.equal(model.encoder.conv1[0].weight, src.conv1[0].weight)
    assert torch.equal(model.encoder.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    assert rec["sha256"] == _sha(path) and rec["head"] == "decoder and head random"
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_whole_unet_checkpoint_loads_as_a_whole(tmp_path: Path):
    """A file holding a whole edgekd U-Net (e.g. an earlier student) is not mistaken for encoder weights."""
    from edgekd.models.factory import create_timm

    src = create_timm("unet_resnet10t", 2)
    path = _save(src, tmp_path / "unet.safetensors")
    model, rec = pretrained.build("unet_resnet10t", 2, str(path), "student", "--student-weights")
    assert torch.equal(model.head.weight, src.head.weight) and rec["head"] == "kept"


def test_unet_plain_has_no_pretrained_weights():
    model, rec = pretrained.build("unet_plain8", 2, "auto", "student unet_plain8", "--student-weights")
    assert rec["used"] == "random" and "no pretrained weights" in rec["reason"]
    with pytest.raises(ModelError, match="unet_plain8 has no ImageNet weights"):
        pretrained.check("unet_plain8", "imagenet", "student unet_plain8", "--student-weights")


def test_imagenet_weights_come_from_the_local_hub_cache(hf_cache: Path):
    """With HF_HUB_OFFLINE=1 the cached download is used (the file itself; nothing asks the hub): classifier and
    U-Net encoder alike, `imagenet` and `auto` alike."""
    src = timm.create_model("resnet10t", num_classes=1000)
    cached = _hf_cache(hf_cache, "timm/resnet10t.c3_in1k", src)
    pretrained.check("resnet10t", "imagenet", "student", "--student-weights")  # does not raise
    model, rec = pretrained.build("resnet10t", 4, "imagenet", "student resnet10t", "--student-weights")
    assert torch.equal(model.conv1[0].weight, src.conv1[0].weight) and model.fc.out_features == 4
    assert rec["used"] == "imagenet (timm resnet10t.c3_in1k)" and rec["source"] == str(cached)
    unet, rec = pretrained.build("unet_resnet10t", 2, "auto", "student unet_resnet10t", "--student-weights")
    assert torch.equal(unet.encoder.conv1[0].weight, src.conv1[0].weight)
    assert rec["used"] == "imagenet (timm resnet10t.c3_in1k encoder)"


def test_hub_name_loads_from_the_cache_and_must_be_the_same_architecture(hf_cache: Path):
    src = timm.create_model("resnet10t", num_classes=1000)
    _hf_cache(hf_cache, "timm/resnet10t.c3_in1k", src)
    model, rec = pretrained.build("resnet10t", 3, "hf-hub:timm/resnet10t.c3_in1k", "student", "--student-weights")
    assert torch.equal(model.conv1[0].weight, src.conv1[0].weight) and model.fc.out_features == 3
    assert rec["used"] == "hf-hub:timm/resnet10t.c3_in1k"
    with pytest.raises(ConfigError, match="holds resnet10t weights, not resnet18"):
        pretrained.check("resnet18", "hf-hub:timm/resnet10t.c3_in1k", "student resnet18", "--student-weights")


def test_auto_offline_warns_once_and_starts_random(hf_cache, capsys):
    torch.manual_seed(0)
    model, rec = pretrained.build("resnet10t", 3, "auto", "student resnet10t", "--student-weights")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "no ImageNet weights reachable" in ln]
    assert len(lines) == 1 and "starting from random weights" in lines[0] and "--student-weights" in lines[0]
    assert rec["used"] == "random" and "HF_HUB_OFFLINE" in rec["reason"]
    torch.manual_seed(0)
    assert torch.equal(model.conv1[0].weight, timm.create_model("resnet10t", num_classes=3).conv1[0].weight)


def test_auto_on_builtin_data_is_silent_random(capsys):
    _, rec = pretrained.build("resnet10t", 3, "auto", "student", "--student-weights", synthetic=True)
    assert rec["used"] == "random" and "built-in" in rec["reason"]
    assert "ImageNet" not in capsys.readouterr().err


def test_unreachable_hub_is_probed_briefly_not_retried(hf_cache, monkeypatch):
    """Without HF_HUB_OFFLINE an unreachable hub costs one short probe (huggingface_hub itself retries each file
    five times with back-off: 47 s on this machine)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    monkeypatch.setenv("EDGEKD_HUB_TIMEOUT", "2")
    t0 = time.time()
    reason = pretrained.find_imagenet("mobilevit_xxs")
    assert isinstance(reason, str) and "127.0.0.1:9 does not answer" in reason
    with pytest.raises(ModelError, match="--student-weights imagenet, but no ImageNet weights are reachable"):
        pretrained.check("mobilevit_xxs", "imagenet", "student mobilevit_xxs", "--student-weights")
    assert time.time() - t0 < 10


def _folder(root: Path, n: int = 16) -> Path:
    """Two classes of 32 px images (dark vs bright noise)."""
    rng = np.random.default_rng(0)
    for c, scale in (("dark", 0.4), ("bright", 1.0)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((32, 32, 3)) * 255 * scale).astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def test_teacher_from_cached_imagenet_weights_is_fine_tuned_and_carded(tmp_path: Path, hf_cache: Path):
    from edgekd.data import load_data
    from edgekd.teacher import TeacherRecipe, build_teacher

    src = timm.create_model("resnet10t", num_classes=1000)
    _hf_cache(hf_cache, "timm/resnet10t.c3_in1k", src)
    data = load_data(str(_folder(tmp_path / "d", 12)), 32)
    _, card = build_teacher(data, TeacherRecipe("resnet10t", epochs=1, batch_size=8), None, tmp_path / "w",
                            tmp_path / "t.safetensors", required=True)
    assert card["how"] == "fine-tuned from imagenet (timm resnet10t.c3_in1k)" and len(card["history"]) == 1
    assert card["weights"]["requested"] == "auto"
    # a file whose head fits is used as is, and its sha256 is on the card
    fit = timm.create_model("resnet10t", num_classes=2)
    path = _save(fit, tmp_path / "fit.safetensors")
    model, card = build_teacher(data, TeacherRecipe("resnet10t", epochs=1), path, tmp_path / "w2",
                                tmp_path / "t2.safetensors")
    assert card["how"] == "given weights" and card["weights"]["sha256"] == _sha(path)
    assert torch.equal(model.fc.weight, fit.fc.weight)


def _edgekd(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True, **kw)


TINY = "teacher_arch: resnet10t\nteacher_epochs: 1\nepochs: 1\nbatch_size: 8\nmax_train_samples: 64\n"


@pytest.mark.parametrize("args,match", [
    (["--student-weights", "imagenet"], "--student-weights imagenet, but no ImageNet weights are reachable"),
    (["--teacher", "timm:resnet10t"], "pass --teacher-weights FILE"),
    (["--student-weights", "hf-hub:timm/resnet10t.c3_in1k"], "cannot fetch hf-hub:timm/resnet10t.c3_in1k (offline"),
])
def test_unreachable_weights_stop_the_run_before_anything_trains(tmp_path: Path, args, match):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "run"
    res = _edgekd("distill", "--data", _folder(tmp_path / "d", 4), "--student", "resnet10t", "--recipe",
                  tmp_path / "tiny.yaml", "--out", out, *args)
    assert res.returncode == 4, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert len(lines) == 1 and match in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (out / "teacher").exists() and not (out / "student").exists()


def test_auto_warns_and_runs_then_a_weights_file_retrains_only_the_student(tmp_path: Path):
    """Folder data, nothing cached, offline: `auto` warns once per model (teacher, student) and trains from random
    weights; the same run with --student-weights FILE reuses the teacher, retrains the student from the file and
    records its sha256 on the student card."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    data, out = _folder(tmp_path / "d"), tmp_path / "run"
    base = ["distill", "--data", data, "--student", "resnet10t", "--recipe", tmp_path / "tiny.yaml", "--out", out]
    res = _edgekd(*base)
    assert res.returncode == 0, res.stderr[-2000:]
    warned = [ln for ln in res.stderr.splitlines() if "no ImageNet weights reachable" in ln]
    assert len(warned) == 2 and warned[1].startswith("student resnet10t:"), res.stderr
    assert "Pass --student-weights FILE, or none to silence this" in warned[1]
    card = json.loads((out / "student" / "student.json").read_text())
    assert card["weights"]["requested"] == "auto" and card["weights"]["used"] == "random"

    src = timm.create_model("resnet10t", num_classes=1000)
    path = _save(src, tmp_path / "in1k.safetensors")
    res = _edgekd(*base, "--student-weights", path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "teacher: reused" in res.stderr and "no ImageNet weights reachable" not in res.stderr
    card = json.loads((out / "student" / "student.json").read_text())
    assert card["weights"] == {"requested": str(path), "used": "file", "file": str(path.resolve()),
                               "sha256": _sha(path), "head": "re-initialised (1000 -> 2 classes)"}


def test_bundle_manifest_records_the_starts(tiny_run):
    """The compressed tiny run (builtin data, so `auto` means none): the manifest says which start each model
    had, and the student card agrees."""
    from edgekd.bundle import verify_bundle_dir

    manifest = verify_bundle_dir(tiny_run["out"] / "bundle")
    assert manifest["student"]["weights"] == {"requested": "auto", "used": "random",
                                              "reason": "built-in synthetic data (auto means none there)"}
    assert [t["requested"] for t in manifest["teacher"]["weights"]] == ["auto"]
    card = json.loads((tiny_run["out"] / "student" / "student.json").read_text())
    assert card["weights"] == manifest["student"]["weights"]


def test_offline_default_teacher_gives_way_to_the_students_architecture(monkeypatch):
    """No ImageNet weights for the default teacher: a from-scratch mobilevit_s is replaced by the student's own
    architecture (born-again), and the line says why and how to choose; reachable weights keep the default."""
    why = pretrained.scratch_teacher("mobilevit_s", "mobilevit_xxs", "auto")
    assert why is not None and why.startswith("teacher: no ImageNet weights for the default mobilevit_s (offline")
    assert "mobilevit_xxs, trained first from random weights (born-again distillation)" in why
    assert "Set teacher_arch in a recipe, or --teacher, to choose" in why
    assert pretrained.scratch_teacher("mobilevit_xxs", "mobilevit_xxs", "auto") is None  # already the student's
    assert pretrained.scratch_teacher("unet_plain32", "unet_plain16", "auto") is None  # no weights exist anyway
    found = pretrained.Found("timm mobilevit_s.cvnets_in1k", "/cache/model.safetensors", False, 1000)
    monkeypatch.setattr(pretrained, "find_imagenet", lambda name: found)
    assert pretrained.scratch_teacher("mobilevit_s", "mobilevit_xxs", "auto") is None


def test_default_teacher_rule_only_for_auto_folder_classification():
    from edgekd.config import RunConfig, TeacherSpec
    from edgekd.pipeline import _default_teacher_trains

    base = RunConfig(data="/photos")
    assert _default_teacher_trains(base)
    assert not _default_teacher_trains(base.model_copy(update={"teacher_arch_weights": "none"}))
    assert not _default_teacher_trains(base.model_copy(update={"data": "builtin:shapes10"}))
    assert not _default_teacher_trains(base.model_copy(update={"task": "segment"}))
    assert not _default_teacher_trains(base.model_copy(update={"teachers": [TeacherSpec(spec="timm:resnet10t")]}))


def test_offline_run_trains_the_students_architecture_as_teacher(tmp_path: Path):
    """End to end, offline, no teacher_arch given: the run says so once, run.json records the student's
    architecture as teacher_arch and the teacher card is that architecture."""
    (tmp_path / "tiny.yaml").write_text(TINY.replace("teacher_arch: resnet10t\n", "student_weights: none\n"))
    out = tmp_path / "run"
    res = _edgekd("distill", "--data", _folder(tmp_path / "d"), "--student", "resnet10t", "--recipe",
                  tmp_path / "tiny.yaml", "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    said = [ln for ln in (res.stdout + res.stderr).splitlines() if "born-again" in ln]
    assert len(said) == 1 and "resnet10t, trained first from random weights" in said[0], res.stdout + res.stderr
    assert json.loads((out / "run.json").read_text())["config"]["teacher_arch"] == "resnet10t"
    assert json.loads((out / "teacher" / "teacher0.json").read_text())["arch"] == "resnet10t"
