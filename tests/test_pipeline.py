"""Integration: `edgekd compress` end to end with tiny settings, then resume, bundle checks and tampering."""

import json
import subprocess
import sys
import tarfile

import pytest

from edgekd.bundle import sha256, verify_bundle_dir
from edgekd.errors import IntegrityError


@pytest.mark.slow
def test_compress_writes_a_verified_bundle(tiny_run):
    out = tiny_run["out"]
    manifest = verify_bundle_dir(out / "bundle")
    assert manifest["labels"][0] == "circle" and manifest["input"]["shape"] == [1, 3, 64, 64]
    assert {m["format"] for m in manifest["models"]} == {"onnx", "openvino"}
    assert all(m["precision"] == "int8" for m in manifest["models"])
    assert set(manifest["files"]) >= {"student-int8.onnx", "student-int8.xml", "student-int8.bin", "report.md"}
    assert manifest["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    with tarfile.open(out / "tiny.tar.gz") as tf:
        assert "tiny/manifest.json" in tf.getnames()


@pytest.mark.slow
def test_results_table_is_printed_and_reported(tiny_run):
    text = tiny_run["first"].stdout
    for row in ("teacher resnet10t", "student mobilevit_xxs", "onnxruntime", "openvino", "p50 ms", "FPS"):
        assert row in text
    report = (tiny_run["out"] / "bundle" / "report.md").read_text()
    assert "| student mobilevit_xxs | openvino | int8" in report


@pytest.mark.slow
def test_every_export_was_verified(tiny_run):
    rep = json.loads((tiny_run["out"] / "verify.json").read_text())
    keys = {m["model"] for m in rep["models"]}
    assert keys == {"onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8"}
    fp32 = [m for m in rep["models"] if m["precision"] == "fp32"]
    assert all(m["passed"] and m["top1_agreement"] >= 0.99 and m["max_abs_diff"] < 1e-3 for m in fp32)


@pytest.mark.slow
def test_rerun_reuses_every_stage(tiny_run):
    second = tiny_run["second"]
    assert second.returncode == 0
    assert second.stderr.count("reused (options unchanged, outputs verified)") == 7


@pytest.mark.slow
def test_a_copied_run_uses_its_own_files_and_rebuilds_what_is_missing_or_changed(tiny_run, tmp_path):
    """Stage records hold run-relative paths and output hashes: a copy of the run never reads the original's
    files, a deleted bundle is rebuilt (not "reused"), a changed int8 model redoes quantize and what follows."""
    import shutil

    orig = tiny_run["out"]
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(orig, copy)
    for rec in (copy / "stages").glob("*.json"):
        assert str(orig) not in rec.read_text(), rec.name
    (copy / "tiny.tar.gz").unlink()
    shutil.rmtree(copy / "bundle")
    cmd = [c if c != str(orig) else str(copy) for c in tiny_run["cmd"]]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bundle: recomputed, since" in res.stderr and "is missing" in res.stderr
    assert res.stderr.count("reused (options unchanged, outputs verified)") == 6
    manifest = verify_bundle_dir(copy / "bundle")
    int8 = copy / "export" / "student-int8.onnx"
    assert manifest["files"]["student-int8.onnx"] == sha256(int8) and (copy / "tiny.tar.gz").is_file()
    with open(int8, "r+b") as fh:  # the int8 model changed behind edgekd's back
        fh.seek(-64, 2)
        fh.write(b"\x00" * 8)
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "quantize: recomputed, since export/student-int8.onnx changed since it was written" in res.stderr
    assert res.stderr.count("reused (options unchanged, outputs verified)") == 3  # teacher, distill, export
    assert "verify: recomputed, since quantize was" in res.stderr
    assert verify_bundle_dir(copy / "bundle")["files"]["student-int8.onnx"] == sha256(int8)


@pytest.mark.slow
def test_tampered_bundle_is_named(tiny_run, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(tiny_run["out"] / "bundle", b)
    with open(b / "student-int8.bin", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(IntegrityError, match="'student-int8.bin' does not match"):
        verify_bundle_dir(b)
    res = subprocess.run([sys.executable, "-m", "edgekd", "verify-bundle", str(b)], capture_output=True, text=True)
    assert res.returncode == 9 and "student-int8.bin" in res.stderr


@pytest.mark.slow
def test_stage_commands_work_on_run_files(tiny_run, tmp_path):
    """export -> quantize -> verify -> bench, each on its own, files in and files out."""
    ck = tiny_run["out"] / "student" / "student.safetensors"
    run = lambda *a: subprocess.run([sys.executable, "-m", "edgekd", *a], capture_output=True, text=True)  # noqa: E731
    r = run("export", str(ck), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    onnx_fp32 = tmp_path / "student-fp32.onnx"
    assert onnx_fp32.is_file() and (tmp_path / "student-fp32.xml").is_file()
    r = run("quantize", str(onnx_fp32), "--data", "builtin:shapes10", "--calib", "16")
    assert r.returncode == 0, r.stderr
    int8 = tmp_path / "student-int8.onnx"
    assert int8.is_file()
    r = run("verify", str(onnx_fp32), "--reference", str(ck), "--data", "builtin:shapes10", "--samples", "32",
            "--report", str(tmp_path / "v.json"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True
    import yaml

    raw = yaml.safe_load((tiny_run["out"].parent.parent / "t.yaml").read_text())
    raw["parity"]["int8"] = {"min_top1_agreement": 0.0, "max_abs_diff": 1e-9, "max_metric_drop": 100.0}
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(raw))
    r = run("verify", str(int8), "--reference", str(ck), "--data", "builtin:shapes10", "--samples", "32",
            "--target", str(strict))
    assert r.returncode == 6 and "FAIL: max |diff|" in r.stdout, r.stdout + r.stderr
    r = run("bench", str(tmp_path / "student-fp32.xml"), "--iters", "5", "--warmup", "1", "--json",
            str(tmp_path / "b.json"))
    assert r.returncode == 0 and "p50 ms" in r.stdout, r.stderr
    assert json.loads((tmp_path / "b.json").read_text())["result"]["executed_precision"] == "f32"
    assert sha256(ck)  # the checkpoint was read, never rewritten
