"""Jetson targets without a Jetson: TensorRT-ready Q/DQ ONNX, the trtexec build script, labelled estimates."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekd.targets import list_targets, load_target


@pytest.mark.parametrize("name", ["jetson-orin", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin"])
def test_jetson_targets_load_with_tensorrt_and_an_estimate_model(name):
    t = load_target(name)
    assert name in list_targets()
    assert t.device == "jetson" and "tensorrt" in t.formats and t.quant_preset == "performance"
    assert t.estimate.peak_int8_tops == 2 * t.estimate.peak_fp16_tflops
    assert set(t.estimate.fit) == {"fp16", "int8"} and "published" in t.estimate.fit["int8"].fitted_to


def test_trtexec_command_uses_tensorrt_10_flags():
    from edgekd.export.tensorrt import trtexec_command
    from edgekd.targets import TensorRTSettings

    cmd = trtexec_command("m.onnx", "m.engine", (3, 224, 224), TensorRTSettings(max_batch=4, dla_core=0), int8=True)
    assert cmd.startswith("trtexec --onnx=m.onnx --saveEngine=m.engine --minShapes=input:1x3x224x224")
    assert "--maxShapes=input:4x3x224x224" in cmd and "--memPoolSize=workspace:1024" in cmd
    assert "--fp16 --int8" in cmd and "--useDLACore=0 --allowGPUFallback" in cmd and "--workspace=" not in cmd


def _qdq(tmp_path, preset):
    from edgekd.artifacts import ExportedModel
    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm
    from edgekd.quantize.ptq import quantize_onnx
    from edgekd.quantize.spec import QuantSpec

    torch.manual_seed(0)  # the model's random weights must not depend on which tests ran before
    p = export_torch(create_timm("mobilevit_xxs", 10).eval(), torch.zeros(1, 3, 64, 64), tmp_path / "f.onnx", {})
    calib = np.random.default_rng(0).normal(size=(8, 3, 64, 64)).astype(np.float32)
    return quantize_onnx(ExportedModel("onnx", "fp32", str(p), (str(p),)), calib, tmp_path / f"{preset}.onnx",
                         QuantSpec(preset))


@pytest.mark.parametrize("preset", ["performance", "mixed"])
def test_nncf_qdq_rewritten_as_symmetric_int8_passes_the_tensorrt_check_and_keeps_outputs(tmp_path, preset):
    """NNCF writes uint8 Q/DQ for non-negative (and, with `mixed`, asymmetric) activations, which TensorRT
    refuses; the rewrite makes every pair int8 with zero point 0 and onnxruntime still agrees with the original."""
    from pathlib import Path

    import onnxruntime as ort

    from edgekd.export.tensorrt import check_onnx, to_symmetric_int8

    src = Path(_qdq(tmp_path, preset).path)
    before = check_onnx(src)
    assert not before.ok and "zero point" in before.problems[0]
    dst = tmp_path / "trt.onnx"
    assert to_symmetric_int8(src, dst) > 10
    after = check_onnx(dst)
    assert after.ok and after.quantize_nodes == before.quantize_nodes and after.per_channel_weights > 10, after
    x = np.random.default_rng(1).normal(size=(16, 3, 64, 64)).astype(np.float32)
    a = ort.InferenceSession(str(src)).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(dst)).run(None, {"input": x})[0]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    # a random-weight model's logits are near ties, so argmax agreement is no measure here; asymmetric ranges
    # (the mixed preset) lose more when made symmetric, which is why Jetson targets pin `performance`
    # (median over 16 inputs; the worst single input of a random net is too noisy to pin across CPUs)
    assert np.median(cos) > (0.99 if preset == "performance" else 0.95), cos
    assert cos.min() > (0.95 if preset == "performance" else 0.75), cos


def test_unsupported_op_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgekd.export.tensorrt import check_onnx

    node = helper.make_node("Hardmax", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g), tmp_path / "h.onnx")
    assert "Hardmax" in check_onnx(tmp_path / "h.onnx").problems[0]


def test_roofline_counts_macs_of_a_known_conv(tmp_path):
    from edgekd.bench.estimate import estimate_latency, graph_cost
    from edgekd.export.onnx import export_torch

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 16 * 16, 10, bias=False)).eval()
    p = export_torch(conv, torch.zeros(1, 3, 16, 16), tmp_path / "c.onnx", {})
    cost = graph_cost(p)
    assert cost.macs == 8 * 16 * 16 * 3 * 9 + 2048 * 10
    t = load_target("jetson-orin-nano")
    assert estimate_latency(p, t, "int8").latency_ms < estimate_latency(p, t, "fp16").latency_ms


@pytest.mark.slow
def test_compress_for_jetson_orin_writes_a_tensorrt_bundle_with_labelled_estimates(tmp_path):
    import yaml

    from .conftest import ROOT

    raw = yaml.safe_load((ROOT / "targets" / "jetson-orin.yaml").read_text())
    raw["parity"]["int8"] = {"min_top1_agreement": 0.0, "max_metric_drop": 100.0}  # 1-epoch model
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "tiny.yaml").write_text("teacher_arch: resnet10t\nteacher_epochs: 1\nepochs: 1\n"
                                        "max_train_samples: 96\nmax_eval_samples: 32\ncalib_samples: 16\n"
                                        "verify_samples: 32\nbench_iters: 5\nbench_warmup: 1\n")
    res = subprocess.run([sys.executable, "-m", "edgekd", "compress", "--target", str(tmp_path / "t.yaml"),
                          "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    b = tmp_path / "run" / "bundle"
    manifest = json.loads((b / "manifest.json").read_text())
    m = manifest["models"][0]
    assert m["file"] == "student-int8.onnx" and m["runtime"] == "tensorrt" and m["engine"] == "student-int8.engine"
    assert m["latency"].startswith("estimated: per-node roofline on jetson-orin") and "host_p50_ms" in m
    script = (b / "build_engine.sh").read_text()
    assert "--onnx=student-int8.onnx" in script and "build_engine.sh" in manifest["files"]
    assert "(estimated)" in (b / "report.md").read_text()


@pytest.mark.tensorrt
def test_tensorrt_engine_builds_from_the_qdq_onnx(tmp_path):
    """Runs only where TensorRT and an NVIDIA GPU exist (never in this workplace)."""
    from pathlib import Path

    from edgekd.export.tensorrt import available, build_engine
    from edgekd.targets import TensorRTSettings

    if not available():
        pytest.skip("import tensorrt fails here")
    from edgekd.export.tensorrt import make_tensorrt_ready

    qdq = Path(_qdq(tmp_path, "performance").path)
    make_tensorrt_ready(qdq)
    out = build_engine(qdq, tmp_path / "m.engine", TensorRTSettings(), True)
    assert out.stat().st_size > 0
    # the engine computes what onnxruntime computes from the same Q/DQ graph (the parity gate's TensorRT leg)
    from edgekd.runtimes import runtime_for

    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    with runtime_for(out, "tensorrt") as trt_rt, runtime_for(qdq, "onnxruntime") as ort_rt:
        a, b = trt_rt(x), ort_rt(x)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.75 and trt_rt.executed_precision.startswith("int8")
