"""The bad-input catalogue: each gives one clear line (no traceback), a non-zero exit code, and leaves what was
already written untouched (a precious file in the working folder and a finished run are checked after each)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# (name, argv with {tmp} placeholders, exit code, text in the error line)
CASES = [
    ("missing data dir", ["compress", "--data", "{tmp}/nope", "--out", "{tmp}/r"], 3, "does not exist"),
    ("data path is a file", ["compress", "--data", "{tmp}/precious.txt", "--out", "{tmp}/r"], 3, "is not a folder"),
    ("empty data dir", ["distill", "--data", "{tmp}/empty", "--out", "{tmp}/r"], 3, "{tmp}/empty"),
    ("class folder without images", ["distill", "--data", "{tmp}/oneempty", "--out", "{tmp}/r"], 3, "no images"),
    ("only corrupt images", ["distill", "--data", "{tmp}/corrupt", "--out", "{tmp}/r"], 3, "{tmp}/corrupt"),
    ("unknown target", ["compress", "--target", "jetson-orin-mega"], 2, "unknown target 'jetson-orin-mega'"),
    ("malformed target YAML", ["compress", "--target", "{tmp}/bad.yaml"], 2, "malformed YAML"),
    ("target with an unknown key", ["compress", "--target", "{tmp}/extra_target.yaml"], 2, "Extra inputs"),
    ("recipe missing", ["compress", "--recipe", "{tmp}/none.yaml"], 2, "does not exist"),
    ("recipe malformed", ["compress", "--recipe", "{tmp}/bad.yaml"], 2, "malformed YAML"),
    ("recipe not a mapping", ["compress", "--recipe", "{tmp}/list.yaml"], 2, "must be a mapping"),
    ("recipe unknown key", ["compress", "--recipe", "{tmp}/unknown_key.yaml"], 2, "epohcs"),
    ("zero epochs", ["compress", "--epochs", "0"], 2, "greater than 0"),
    ("negative lr", ["distill", "--recipe", "{tmp}/neg_lr.yaml"], 2, "lr"),
    ("unknown student", ["compress", "--student", "mobilevit_xxxs", "--out", "{tmp}/r"], 4, "unknown timm model"),
    ("teacher without prefix", ["compress", "--teacher", "resnet50", "--out", "{tmp}/r"], 2, "expected timm:NAME"),
    ("unknown edgekd arch", ["compress", "--teacher", "edgekd:resnet9000", "--out", "{tmp}/r"], 2,
     "edgekd's own architectures"),
    ("teacher weights missing", ["compress", "--teacher", "timm:resnet18", "--teacher-weights", "{tmp}/w.pt",
                                 "--out", "{tmp}/r"], 2, "do not exist"),
    ("teacher weights are a code pickle", ["distill", "--teacher", "timm:resnet10t", "--teacher-weights",
                                           "{tmp}/evil.pt", "--max-train-samples", "16", "--max-eval-samples",
                                           "8", "--out", "{tmp}/r"], 4, "refused to load"),
    ("weights without a teacher", ["compress", "--teacher-weights", "{tmp}/precious.txt"], 2,
     "without a matching --teacher"),
    ("unknown loss", ["distill", "--loss", "kdd", "--out", "{tmp}/r"], 2, "unknown loss 'kdd'"),
    ("ONNX teacher missing", ["distill", "--teacher", "onnx:{tmp}/t.onnx", "--out", "{tmp}/r"], 2, "does not exist"),
    ("segment: classification data", ["compress", "--task", "segment", "--out", "{tmp}/r"], 3,
     "needs a folder with images/ and masks/"),
    ("segment: no masks folder", ["compress", "--task", "segment", "--data", "{tmp}/seg_nomasks", "--out",
                                  "{tmp}/r"], 3, "no masks/ folder"),
    ("segment: image without mask", ["compress", "--task", "segment", "--data", "{tmp}/seg_missing", "--out",
                                     "{tmp}/r"], 3, "have no mask"),
    ("segment: mask size mismatch", ["compress", "--task", "segment", "--data", "{tmp}/seg_size", "--out",
                                     "{tmp}/r"], 3, "a mask must have its image's size"),
    ("segment: colour mask", ["compress", "--task", "segment", "--data", "{tmp}/seg_rgb", "--out", "{tmp}/r"], 3,
     "not colour images"),
    ("segment: JPEG masks", ["compress", "--task", "segment", "--data", "{tmp}/seg_jpeg", "--out", "{tmp}/r"], 3,
     "save masks as PNG"),
    ("segment: class beyond classes.txt", ["compress", "--task", "segment", "--data", "{tmp}/seg_classes",
                                           "--out", "{tmp}/r"], 3, "classes.txt names 2 classes"),
    ("segment: classifier student", ["compress", "--task", "segment", "--data", "{tmp}/seg_ok", "--student",
                                     "resnet18", "--out", "{tmp}/r"], 2, "is a classifier"),
    ("classify with a U-Net", ["compress", "--student", "unet_plain16", "--out", "{tmp}/r"], 2,
     "add --task segment"),
    ("bench: model missing", ["bench", "{tmp}/none.onnx"], 2, "does not exist"),
    ("bench: unknown suffix", ["bench", "{tmp}/precious.txt"], 2, "cannot tell the runtime"),
    ("bench: corrupt ONNX", ["bench", "{tmp}/corrupt.onnx"], 4, "cannot load"),
    ("verify-bundle: not a bundle", ["verify-bundle", "{tmp}/empty"], 2, "not an edgekd bundle"),
    ("verify-bundle: not a tarball", ["verify-bundle", "{tmp}/precious.txt"], 2, "not a readable tar"),
    ("verify-bundle: malformed --expect", ["verify-bundle", "{tmp}/empty", "--expect", "abc"], 2,
     "--expect 'abc' is not a sha256 digest"),
    ("verify-bundle: --key not a key", ["verify-bundle", "{tmp}/empty", "--key", "{tmp}/precious.txt"], 2,
     "not a PEM or OpenSSH public key"),
    ("compress: --sign key missing", ["compress", "--sign", "{tmp}/none.pem", "--out", "{tmp}/r"], 2,
     "cannot be read"),
    ("compress: --sign with a public key", ["compress", "--sign", "{tmp}/k.pub", "--out", "{tmp}/r"], 2,
     "not an unencrypted PEM or OpenSSH private key"),
    ("keygen over an existing file", ["keygen", "{tmp}/precious.txt"], 2, "exists; keys are never overwritten"),
    ("keygen into a missing folder", ["keygen", "{tmp}/nope/k"], 2, "is not a folder"),
    ("resume without a run", ["distill", "--resume", "--out", "{tmp}/nothing"], 2, "holds no edgekd run"),
    ("resume and overwrite", ["compress", "--resume", "--overwrite", "--out", "{tmp}/r"], 2, "contradict"),
    ("out is a non-run folder", ["compress", "--overwrite", "--out", "{tmp}"], 2, "not an edgekd run folder"),
    ("out is a file", ["compress", "--out", "{tmp}/precious.txt"], 2, "is not a folder"),
    ("layers: unknown model", ["layers", "timm:resnet9000"], 4, "unknown timm model"),
    ("quantize: unknown method", ["quantize", "--run", "{tmp}/r", "--method", "awq"], 2, "choose ptq or qad"),
    ("quantize: nothing to quantize", ["quantize"], 2, "nothing to quantize"),
    ("quantize: QAD of a bare file", ["quantize", "{tmp}/precious.txt", "--method", "qad"], 2, "pass --run"),
    ("quantize: --run without a run", ["quantize", "--run", "{tmp}/empty"], 2, "holds no edgekd run"),
    # usage errors: typer's own, one line naming the option, exit 2
    ("unknown option", ["compress", "--frobnicate"], 2, "No such option: --frobnicate"),
    ("option value not a number", ["compress", "--epochs", "abc"], 2, "Invalid value for '--epochs'"),
    ("missing argument", ["export"], 2, "Missing argument 'checkpoint'"),
    ("export: unknown ONNX exporter", ["export", "{tmp}/precious.txt", "--onnx-exporter", "jit"], 2,
     "--onnx-exporter 'jit': choose dynamo or torchscript"),
    ("unknown command", ["frobnicate"], 2, "No such command 'frobnicate'"),
    # a bad value is blamed on where it came from: the flag, not the recipe beside it
    ("bad flag value beside a recipe", ["distill", "--recipe", "{tmp}/ok.yaml", "--epochs", "0", "--out",
                                        "{tmp}/r"], 2, "--epochs: Input should be greater than 0"),
    ("run name from --out", ["distill", "--out", "{tmp}/my run"], 2,
     "--out {tmp}/my run (its folder name is the run name"),
    ("val fraction out of range", ["distill", "--val-fraction", "0.7", "--out", "{tmp}/r"], 2,
     "--val-fraction: Input should be less than 0.5"),
    ("split too small for validation", ["distill", "--data", "{tmp}/twoeach", "--out", "{tmp}/r"], 3,
     "raise --val-fraction"),
    # backend errors keep the line that says why
    ("ONNX teacher with a static batch", ["distill", "--teacher", "onnx:{tmp}/static.onnx", "--student", "resnet10t",
                                          "--student-weights", "none", "--epochs", "1", "--max-train-samples", "16",
                                          "--max-eval-samples", "8", "--out", "{tmp}/r"], 4,
     "for the following indices index: 0 Got: 8 Expected: 1"),
    ("OpenVINO .xml without its .bin", ["bench", "{tmp}/nobin.xml"], 4, "bin file cannot be found"),
    ("bundle tarball truncated", ["verify-bundle", "{tmp}/trunc.tar.gz"], 9, "truncated or corrupt archive"),
    ("bundle tarball empty", ["verify-bundle", "{tmp}/empty.tar.gz"], 2, "empty file, not a bundle tarball"),
    # data that must not pass silently
    ("one class", ["distill", "--data", "{tmp}/oneclass", "--out", "{tmp}/r"], 3, "only one class folder"),
    ("__MACOSX and hidden folders are not classes", ["distill", "--data", "{tmp}/macosx", "--out", "{tmp}/r"], 3,
     "only one class folder (a)"),
    ("segment: stray value in 0/255 masks", ["compress", "--task", "segment", "--data", "{tmp}/seg_stray", "--out",
                                             "{tmp}/r"], 3, "03.png: mask value 7 in a set of 0/255 binary masks"),
    ("distill: weights without a teacher", ["distill", "--teacher-weights", "{tmp}/precious.txt", "--out",
                                            "{tmp}/r"], 2, "without a matching --teacher"),
    ("target name with a path separator", ["compress", "--target", "../targets/cpu-x86"], 2, "no path separators"),
    ("recipe with a duplicate key", ["compress", "--recipe", "{tmp}/dup.yaml"], 2,
     "key 'epochs' is given twice (lines 1 and 3)"),
    ("target with a duplicate key", ["compress", "--target", "{tmp}/dup_target.yaml"], 2,
     "key 'threads' is given twice"),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "precious.txt").write_text("mine")
    (tmp / "empty").mkdir()
    (tmp / "oneempty" / "a").mkdir(parents=True)
    (tmp / "oneempty" / "b").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp / "oneempty" / "a" / f"{i}.png")
    (tmp / "corrupt" / "a").mkdir(parents=True)
    (tmp / "corrupt" / "a" / "x.jpg").write_bytes(b"not a jpeg")
    (tmp / "bad.yaml").write_text("a: [1, 2\n")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    (tmp / "unknown_key.yaml").write_text("epohcs: 3\n")
    (tmp / "neg_lr.yaml").write_text("lr: -0.1\n")
    (tmp / "extra_target.yaml").write_text((Path(__file__).parent.parent / "targets" / "cpu-x86.yaml").read_text()
                                           + "turbo: true\n")
    (tmp / "corrupt.onnx").write_bytes(b"\x00garbage")
    from edgekd.integrity import keygen

    keygen(tmp / "k")
    (tmp / "ok.yaml").write_text("epochs: 2\n")
    (tmp / "dup.yaml").write_text("epochs: 2\nlr: 0.01\nepochs: 3\n")
    (tmp / "dup_target.yaml").write_text((Path(__file__).parent.parent / "targets" / "cpu-x86.yaml").read_text()
                                         + "threads: 4\n")
    for name, classes in (("oneclass", ("a",)), ("macosx", ("a", "__MACOSX", ".thumbs")), ("twoeach", ("a", "b"))):
        for c in classes:
            (tmp / name / c).mkdir(parents=True)
            for i in range(2 if name == "twoeach" else 6):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp / name / c / f"{i}.png")
    _bad_models(tmp)
    _bad_tarballs(tmp)
    _seg_folders(tmp)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": Evil()}, tmp / "evil.pt")
    return tmp


def _bad_models(tmp: Path) -> None:
    """static.onnx: a 10-class ONNX classifier whose batch axis is fixed at 1; nobin.xml: an IR without its .bin."""
    import openvino as ov
    import torch

    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm

    export_torch(create_timm("cifar_resnet20", 10).eval(), torch.zeros(1, 3, 32, 32), tmp / "static.onnx", {},
                 dynamic_batch=False)
    ov.save_model(ov.convert_model(str(tmp / "static.onnx")), str(tmp / "nobin.xml"))
    (tmp / "nobin.bin").unlink()


def _bad_tarballs(tmp: Path) -> None:
    import io
    import os
    import tarfile

    with tarfile.open(tmp / "whole.tar.gz", "w:gz") as tf:
        blob = os.urandom(200_000)  # incompressible: the cut lands inside the member's data
        info = tarfile.TarInfo("bundle/model.onnx")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    (tmp / "trunc.tar.gz").write_bytes((tmp / "whole.tar.gz").read_bytes()[:50_000])
    (tmp / "empty.tar.gz").write_bytes(b"")


def _seg_folders(tmp: Path) -> None:
    """Segmentation folders, each with one thing wrong (seg_ok: nothing)."""
    def pair(root: Path, stem: str, img=(32, 32), mask=(32, 32), mode="L", ext=".png", value=255) -> None:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", img, (90, 90, 90)).save(root / "images" / f"{stem}.jpg")
        Image.new(mode, mask, value if mode == "L" else (value, 0, 0)).save(root / "masks" / f"{stem}{ext}")

    for name in ("seg_ok", "seg_nomasks", "seg_missing", "seg_size", "seg_rgb", "seg_jpeg", "seg_classes",
                 "seg_stray"):
        for i in range(6):
            pair(tmp / name, f"{i:02d}", mask=(16, 32) if name == "seg_size" and i == 3 else (32, 32),
                 mode="RGB" if name == "seg_rgb" else "L", ext=".jpg" if name == "seg_jpeg" else ".png",
                 value=2 if name == "seg_classes" else 255)
    import shutil

    shutil.rmtree(tmp / "seg_nomasks" / "masks")
    (tmp / "seg_missing" / "masks" / "04.png").unlink()
    (tmp / "seg_classes" / "classes.txt").write_text("background\ncrack\n")
    stray = np.zeros((32, 32), np.uint8)
    stray[8:16, 8:16], stray[20, 20] = 255, 7  # one pixel of 7 in a 0/255 set
    Image.fromarray(stray).save(tmp / "seg_stray" / "masks" / "03.png")


@pytest.mark.parametrize("name,args,code,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input(work, name, args, code, text):
    tmp = str(work)
    res = subprocess.run([sys.executable, "-m", "edgekd", *[a.replace("{tmp}", tmp) for a in args]],
                         capture_output=True, text=True, cwd=tmp)
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error:")]
    assert res.returncode == code, res.stderr[-2000:]
    assert len(err) == 1 and text.replace("{tmp}", tmp) in err[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "pwned" not in res.stdout
    assert (work / "precious.txt").read_text() == "mine"


def test_catalogue_is_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


def test_bad_input_never_destroys_a_finished_run(tiny_run):
    """A bad rerun into a finished run folder (here: an unknown loss) changes nothing in it."""
    before = {p: p.stat().st_mtime_ns for p in tiny_run["out"].rglob("*") if p.is_file()}
    res = subprocess.run([*tiny_run["cmd"], "--loss", "nope"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown loss 'nope'" in res.stderr
    after = {p: p.stat().st_mtime_ns for p in tiny_run["out"].rglob("*") if p.is_file()}
    assert after == before
    assert json.loads((tiny_run["out"] / "bundle" / "manifest.json").read_text())["schema_version"] == 2


# a bundle changed after its build (issue 17): (name, variant of the tiny run's bundle, extra args, text); each is
# refused by `edgekd verify-bundle` and by the runner with exit code 9
BUNDLE_CASES = [
    ("labels reversed", "labels", [], "manifest.json does not match manifest.sha256"),
    ("labels reversed, digest rewritten, --expect", "labels_rehashed", ["--expect", "{digest}"],
     "manifest.json has digest"),
    ("foreign ONNX unlisted, samples removed", "foreign_unlisted", [], "has no field 'samples'"),
    ("model path outside the bundle", "outside", [], "'models[0].file' '../../x.onnx'"),
    ("pickled samples", "pickled", [], "'samples.npz' holds a pickled (object) array"),
    ("file added", "added", [], "'extra.txt' is not listed"),
    ("wrong --expect", "intact", ["--expect", "0" * 64], "manifest.json has digest"),
    ("unsigned bundle with --key", "intact", ["--key", "{tmp}/k.pub"], "manifest.sig is missing"),
    ("signed with another key", "signed", ["--key", "{tmp}/other.pub"], "manifest.sig does not verify"),
]


@pytest.fixture(scope="module")
def bad_bundles(tiny_run, work):
    """One copy of the tiny run's bundle per variant, at WORK/bundles/VARIANT/dev/tiny."""
    import shutil

    from edgekd.bundle import sign_bundle
    from edgekd.integrity import keygen, load_private_key, manifest_digest

    from .bundle_tamper import foreign_models, pickled_samples, read, swap_model, write

    src = tiny_run["out"] / "bundle"
    foreign = foreign_models(work / "foreign", src)
    keygen(work / "other")  # the bundle is signed with k, --key gives other.pub
    out = {}
    for variant in ("labels", "labels_rehashed", "foreign_unlisted", "outside", "pickled", "added", "intact",
                    "signed"):
        b = work / "bundles" / variant / "dev" / "tiny"
        shutil.copytree(src, b)
        m = read(b)
        if variant.startswith("labels"):
            m["labels"] = m["labels"][::-1]
            write(b, m, digest=variant == "labels_rehashed")
        elif variant == "foreign_unlisted":
            onnx_model = next(x["file"] for x in m["models"] if x["format"] == "onnx")
            swap_model(b, onnx_model, foreign)
            del m["files"][onnx_model], m["samples"], m["files"]["samples.npz"]
            (b / "samples.npz").unlink()
            write(b, m, digest=True)
        elif variant == "outside":
            shutil.copyfile(foreign["onnx"], b.parent.parent / "x.onnx")
            m["models"][0].update(file="../../x.onnx", format="onnx")
            m["recommended"] = "../../x.onnx"
            write(b, m, digest=True)
        elif variant == "pickled":
            pickled_samples(b / "samples.npz", m)
            write(b, m, digest=True, files=True)
        elif variant == "added":
            (b / "extra.txt").write_text("x")
        elif variant == "signed":
            sign_bundle(b, load_private_key(work / "k"))
        out[variant] = b
    return out, manifest_digest(read(src))


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,args,text", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_bad_bundle(work, bad_bundles, name, variant, args, text):
    from .bundle_tamper import snapshot

    bundles, digest = bad_bundles
    b = bundles[variant]
    args = [a.replace("{tmp}", str(work)).replace("{digest}", digest) for a in args]
    before = snapshot(b.parent.parent)
    for cmd, prefix in ((["-m", "edgekd", "verify-bundle", str(b)], "edgekd: error:"),
                        (["-m", "edgekd.device_runner", str(b), "--bench", "--iters", "1"],
                         "edgekd.device_runner: error:")):
        res = subprocess.run([sys.executable, *cmd, *args], capture_output=True, text=True, cwd=work)
        err = res.stderr.strip().splitlines()
        assert res.returncode == 9, res.stderr[-2000:]
        assert len(err) == 1 and err[0].startswith(prefix) and text in err[0], res.stderr[-2000:]
        assert "pwned" not in res.stdout + res.stderr
    assert snapshot(b.parent.parent) == before


def _main(monkeypatch, capsys, *argv) -> tuple[int, list[str]]:
    """Run the CLI's entry point in this process (so a writer can be made to fail): exit code, error lines."""
    from edgekd import cli

    monkeypatch.setattr(sys, "argv", ["edgekd", *map(str, argv)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exc.value.code, [ln for ln in err.splitlines() if ln.startswith("edgekd: error:")]


def _disk_full(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_export_names_the_file_and_keeps_the_earlier_one(tmp_path, monkeypatch, capsys):
    """A full disk (ENOSPC from onnx.save) is 'cannot write FILE: ...', exit 10, not an export failure of the model;
    the file it would have replaced is untouched and no temporary file is left behind."""
    import onnx

    from edgekd.models.factory import create_timm, save_checkpoint
    from edgekd.preprocess import Preprocess

    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(create_timm("cifar_resnet20", 2), ckpt, {"arch": "cifar_resnet20", "classes": ["a", "b"],
                                                             "preprocess": Preprocess(size=(32, 32)).to_dict()})
    out = tmp_path / "export"
    out.mkdir()
    (out / "s-fp32.onnx").write_text("an earlier export")
    monkeypatch.setattr(onnx, "save", _disk_full)
    code, err = _main(monkeypatch, capsys, "export", ckpt, "--out", out)
    assert code == 10 and len(err) == 1, err
    assert f"cannot write {out / 's-fp32.onnx'}: No space left on device" in err[0]
    assert (out / "s-fp32.onnx").read_text() == "an earlier export" and sorted(out.iterdir()) == [out / "s-fp32.onnx"]


def test_disk_full_in_preflight_is_not_blamed_on_the_student(tmp_path, monkeypatch):
    """The pre-flight export used to turn a full disk into 'student X does not export to ONNX'."""
    import onnx

    from edgekd.errors import WriteError
    from edgekd.export.preflight import preflight_student
    from edgekd.targets import load_target

    monkeypatch.setattr(onnx, "save", _disk_full)
    with pytest.raises(WriteError, match=r"cannot write .*preflight\.onnx: No space left on device"):
        preflight_student("cifar_resnet20", 2, 32, load_target("cpu-x86"), tmp_path)


@pytest.mark.parametrize("writer", ["torch.save", "safetensors"])
def test_checkpoint_write_failure_names_the_file_and_keeps_the_earlier_one(tmp_path, monkeypatch, writer):
    """torch.save reports a full disk as '[enforce fail at inline_container.cc] ...': now 'cannot write FILE'."""
    import safetensors.torch
    import torch

    from edgekd.distill.trainer import _atomic_save
    from edgekd.errors import WriteError
    from edgekd.models.factory import create_timm, save_checkpoint

    def enforce(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    model = create_timm("cifar_resnet20", 2)
    target = tmp_path / ("last.pt" if writer == "torch.save" else "student.safetensors")
    target.write_bytes(b"earlier")
    if writer == "torch.save":
        monkeypatch.setattr(torch, "save", enforce)
        write, why = (lambda: _atomic_save({"epoch": 2}, target)), "PytorchStreamWriter failed writing file data/0"
    else:
        monkeypatch.setattr(safetensors.torch, "save_file", _disk_full)
        write, why = (lambda: save_checkpoint(model, target, {"arch": "x"})), "No space left on device"
    with pytest.raises(WriteError, match=f"cannot write {target}: {why}"):
        write()
    assert target.read_bytes() == b"earlier" and sorted(tmp_path.iterdir()) == [target]


def test_runner_bad_inputs_give_one_line(work, tiny_run):
    """The bundle runner: a truncated or empty tarball, and an image too large to decode (20000 x 20000)."""
    huge = work / "huge.png"
    if not huge.is_file():
        Image.new("1", (20000, 20000)).save(huge)  # 50 MB in memory, ~50 kB on disk
    bundle = tiny_run["out"] / "bundle"
    for args, code, text in [([work / "trunc.tar.gz", huge], 9, "truncated or corrupt archive"),
                             ([work / "empty.tar.gz", huge], 2, "empty file, not a bundle tarball"),
                             ([bundle, huge], 3, "exceeds limit of")]:
        res = subprocess.run([sys.executable, "-m", "edgekd.device_runner", *map(str, args)], capture_output=True,
                             text=True)
        err = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd.device_runner: error:")]
        assert res.returncode == code and len(err) == 1 and text in err[0], res.stderr[-2000:]
        assert "Traceback" not in res.stderr
    assert (work / "precious.txt").read_text() == "mine"
