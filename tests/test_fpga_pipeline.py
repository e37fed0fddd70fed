"""`edgekd compress --target fpga-zu`: the op pre-flight refuses a student the FPGA flow cannot build, and an
FPGA-friendly student ends in a QONNX bundle whose latency and energy are labelled estimated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, TINY


def test_preflight_refuses_a_student_with_ops_outside_the_fpga_flow(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgekd", "compress", "--target", "fpga-zu", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "mobilevit_xxs" in lines[0] and "try resnet10t" in lines[0], res.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_compress_for_fpga_ships_qonnx_with_estimated_fps_and_energy(tmp_path):
    raw = yaml.safe_load((ROOT / "targets" / "fpga-zu.yaml").read_text())
    raw["parity"]["int8"] = {"min_top1_agreement": 0.0, "max_metric_drop": 100.0}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "r.yaml").write_text(TINY.replace("teacher_arch: resnet10t", "teacher_arch: resnet10t\n"
                                                  "student: resnet10t"))
    res = subprocess.run([sys.executable, "-m", "edgekd", "compress", "--target", str(tmp_path / "t.yaml"),
                          "--recipe", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    (model,) = manifest["models"]
    assert model["file"].endswith(".qonnx.onnx") and model["runtime"] == "finn"
    assert model["latency"].startswith("estimated: FINN-style dataflow")
    assert manifest["quantization"]["preset"] == "performance"
    bench = json.loads((run / "stages" / "bench.json").read_text())["result"]
    fpga = next(b for b in bench if b["model"] == "qonnx-int8@fpga-zu")
    assert fpga["estimated"] and fpga["energy"]["estimated"] and not fpga["energy"]["measured"]
    # host-measured torch rows say nothing about the FPGA's energy
    assert all("energy" not in b for b in bench if not b.get("estimated"))
    verify = json.loads((run / "verify.json").read_text())
    assert [m["model"] for m in verify["models"]] == ["qonnx-int8"]
    check = subprocess.run([sys.executable, "-m", "edgekd", "verify-bundle", str(run / "bundle")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
