"""The on-device runner (`python -m edgekd.device_runner`, no torch) and safe bundle extraction."""

import io
import json
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from edgekd.bundle import safe_extract
from edgekd.errors import IntegrityError
from edgekd.integrity import manifest_digest

NO_TORCH = ("import sys, runpy; sys.modules.update(torch=None, timm=None, nncf=None, torchvision=None); "
            "sys.argv = ['edgekd.device_runner'] + sys.argv[1:]; "
            "runpy.run_module('edgekd.device_runner', run_name='__main__')")


def runner(*args):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def fp32_bundle(tiny_run, tmp_path_factory):
    """The tiny run re-bundled at FP32 (teacher and student reused), so runner and PyTorch must agree exactly."""
    import yaml

    tmp = tmp_path_factory.mktemp("fp32")
    run = tmp / "runs" / "tiny"
    shutil.copytree(tiny_run["out"], run)
    raw = yaml.safe_load((tiny_run["out"].parent.parent / "t.yaml").read_text())
    raw.update(name="cpu-x86-fp32", precisions=["fp32"], bundle_precision="fp32", deploy="fastest")
    (tmp / "t.yaml").write_text(yaml.safe_dump(raw))
    cmd = [*tiny_run["cmd"][:4], "--target", str(tmp / "t.yaml"), *tiny_run["cmd"][6:9], str(run)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "teacher: reused" in res.stderr and "distill: reused" in res.stderr
    return run


@pytest.mark.slow
def test_runner_and_pytorch_agree_from_jpeg_files_on_disk(fp32_bundle, tmp_path):
    import torch
    from PIL import Image

    from edgekd.data import load_data
    from edgekd.models.factory import load_checkpoint
    from edgekd.preprocess import Preprocess, load_image

    data = load_data("builtin:shapes10", max_eval=12)
    files = []
    for i in range(len(data.test)):
        files.append(tmp_path / f"img{i}.jpg")
        Image.fromarray(data.test.image(i)).save(files[-1], quality=90)
    res = runner(fp32_bundle / "tiny.tar.gz", *files, "--json", "--top", "10")
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    model, card = load_checkpoint(fp32_bundle / "student" / "student.safetensors")
    pre = Preprocess.from_dict(card["preprocess"])
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([pre(load_image(f)) for f in files]))).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for r, p in zip(out, probs, strict=True):
        assert r["label"] == card["classes"][int(p.argmax())]
        assert r["top"][0]["p"] == pytest.approx(float(p.max()), abs=1e-4)


@pytest.mark.slow
def test_runner_benches_and_refuses_bad_input(tiny_run, tmp_path):
    b = tiny_run["out"] / "bundle"
    res = runner(b, "--bench", "--iters", "5", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["fps"] > 0
    for args, code, text in [((tmp_path / "nope",), 2, "does not exist"),
                             ((b,), 2, "give image files"),
                             ((b, tmp_path / "missing.jpg"), 3, "not a readable image"),
                             ((b, "--model", "x.onnx", "--bench"), 2, "no model 'x.onnx'")]:
        res = runner(*args)
        assert res.returncode == code and text in res.stderr and "Traceback" not in res.stderr, res.stderr


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_tar_slip_and_special_members_are_refused_before_anything_is_written(tmp_path, kind):
    evil = tarfile.TarInfo({"dotdot": "b/../../evil.txt", "absolute": "/tmp/evil.txt"}.get(kind, "b/x"))
    data = b"x"
    if kind in ("dotdot", "absolute"):
        evil.size = 1
    elif kind == "symlink":
        evil.type, evil.linkname, data = tarfile.SYMTYPE, "/etc/passwd", None
    elif kind == "hardlink":
        evil.type, evil.linkname, data = tarfile.LNKTYPE, "b/ok.txt", None
    else:
        evil.type, data = tarfile.CHRTYPE, None
    ok = tarfile.TarInfo("b/ok.txt")
    ok.size = 1
    tb = _tar(tmp_path / "b.tar.gz", [(ok, b"o"), (evil, data)])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="refused"):
        safe_extract(tb, dest)
    assert not any(dest.iterdir()) and not (tmp_path / "evil.txt").exists()
    res = subprocess.run([sys.executable, "-m", "edgekd", "verify-bundle", str(tb)], capture_output=True, text=True)
    assert res.returncode == 9 and "refused" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_verify_bundle_runs_the_stored_samples_and_catches_a_swapped_model(tiny_run, tmp_path):
    import hashlib

    b = tmp_path / "b"
    shutil.copytree(tiny_run["out"] / "bundle", b)
    ok = subprocess.run([sys.executable, "-m", "edgekd", "verify-bundle", str(b)], capture_output=True, text=True)
    assert ok.returncode == 0 and "reproduces its 4 stored sample outputs" in ok.stdout, ok.stderr
    # a different model with consistent manifest hashes and digest (a rewrite without the builder's key) passes
    # the hash checks but not the samples
    manifest = json.loads((b / "manifest.json").read_text())
    onnx_file = next(m["file"] for m in manifest["models"] if m["format"] == "onnx")
    import torch

    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm

    torch.manual_seed(0)
    export_torch(create_timm("resnet10t", 10).eval(), torch.zeros(1, 3, 64, 64), b / onnx_file, {})
    manifest["files"][onnx_file] = hashlib.sha256((b / onnx_file).read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(manifest))
    (b / "manifest.sha256").write_text(manifest_digest(manifest) + "\n")
    bad = subprocess.run([sys.executable, "-m", "edgekd", "verify-bundle", str(b)], capture_output=True, text=True)
    assert bad.returncode == 9 and "does not reproduce its stored sample outputs" in bad.stderr, bad.stderr


@pytest.mark.slow
def test_copied_bundle_runs_in_a_clean_venv_with_only_onnxruntime_numpy_pillow(tiny_run, tmp_path):
    """The tarball is copied and unpacked elsewhere; a new venv gets only onnxruntime, numpy and Pillow (no torch,
    no edgekd); the bundle's own run.pyz classifies a JPEG and benchmarks the model."""
    import venv

    from PIL import Image

    venv_dir = tmp_path / "venv"
    venv.create(venv_dir, with_pip=True)
    py = venv_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "onnxruntime", "numpy", "pillow"],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.skip(f"cannot install onnxruntime/numpy/Pillow into a new venv here: {pip.stderr[-300:]}")
    have = subprocess.run([str(py), "-c", "import importlib.util as u; print([m for m in ('torch', 'timm', "
                           "'edgekd', 'openvino') if u.find_spec(m)])"], capture_output=True, text=True, cwd=tmp_path)
    assert have.stdout.strip() == "[]", have.stdout
    tarball = next(tiny_run["out"].glob("*.tar.gz"))
    device = tmp_path / "device"
    device.mkdir()
    with tarfile.open(tarball) as tf:
        tf.extractall(device, filter="data")
    bundle = next(device.iterdir())
    manifest = json.loads((bundle / "manifest.json").read_text())
    onnx_model = next(m["file"] for m in manifest["models"] if m["format"] == "onnx")
    img = tmp_path / "shape.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img)
    res = subprocess.run([str(py), str(bundle / "run.pyz"), str(bundle), str(img), "--model", onnx_model,
                          "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.splitlines()[0])
    assert out["label"] in manifest["labels"]
    res = subprocess.run([str(py), str(bundle / "run.pyz"), str(bundle), "--bench", "--iters", "5", "--model",
                          onnx_model], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and "FPS" in res.stdout, res.stderr[-2000:]
