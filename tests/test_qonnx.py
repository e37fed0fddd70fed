"""QONNX export from the int8 Q/DQ ONNX, round-tripped through qonnx's own tools (ModelWrapper, execute_onnx)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.artifacts import ExportedModel
from edgekd.errors import ModelError
from edgekd.export.onnx import export_torch
from edgekd.models.unet import TinyUNet
from edgekd.quantize.ptq import quantize_onnx
from edgekd.quantize.spec import QuantSpec


def _qdq(model, tmp: Path, side: int, name: str):
    torch.manual_seed(0)
    p = export_torch(model.eval(), torch.zeros(1, 3, side, side), tmp / f"{name}-fp32.onnx", {"edgekd.arch": name})
    calib = np.random.default_rng(0).normal(size=(8, 3, side, side)).astype(np.float32)
    fp32 = ExportedModel("onnx", "fp32", str(p), (str(p),))
    # symmetric quantization, as FPGA flows expect (zero point 0; uint8 after ReLU)
    return fp32, quantize_onnx(fp32, calib, tmp / f"{name}-int8.onnx", QuantSpec("performance"))


@pytest.fixture(scope="module", params=["mobilenetv3_small_050", "unet"])
def qdq(request, tmp_path_factory):
    from edgekd.models.factory import create_timm

    tmp = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    model = TinyUNet(3) if request.param == "unet" else create_timm(request.param, 10)
    fp32, q = _qdq(model, tmp, 32, request.param)
    x = np.random.default_rng(1).normal(size=(6, 3, 32, 32)).astype(np.float32)
    return {"name": request.param, "tmp": tmp, "fp32": fp32, "int8": q, "x": x}


def _ort(path, x, optimized=True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_qonnx_round_trips_through_qonnx_and_matches_the_qdq_onnx(qdq):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from edgekd.export.catalog import get_exporter
    from edgekd.export.qonnx import QONNX_DOMAIN

    exp = get_exporter("qonnx").export(Path(qdq["int8"].path), qdq["tmp"], "m")
    assert exp.format == "qonnx" and exp.precision == "int8" and exp.path.endswith(".qonnx.onnx")
    model = ModelWrapper(exp.path)
    ops = {(n.op_type, n.domain) for n in model.graph.node}
    assert ("Quant", QONNX_DOMAIN) in ops
    assert not {o for o, _ in ops} & {"QuantizeLinear", "DequantizeLinear"}
    quants = model.get_nodes_by_op_type("Quant")
    assert {int(model.get_initializer(n.input[3])) for n in quants} == {8}
    x = qdq["x"]
    out = np.concatenate([execute_onnx(model, {"input": x[i:i + 1]})["logits"] for i in range(len(x))])
    # the same arithmetic as the un-fused Q/DQ graph, up to float rounding of scale products
    exact = _ort(qdq["int8"].path, x, optimized=False)
    assert np.abs(out - exact).max() <= 1e-4 * np.abs(exact).max() + 1e-6
    # onnxruntime's default session fuses Q/DQ into integer kernels: close, and the same top-1
    fused = _ort(qdq["int8"].path, x)
    assert (out.argmax(1) == fused.argmax(1)).mean() >= 0.98
    # How far the integer kernels round away from the float Q/DQ arithmetic depends on the CPU's ISA (exactly equal
    # on an AVX-512 VNNI EPYC, 11 % of the largest logit on CI's machine for this random net whose logits are ~0.01):
    # it must stay within the int8 model's own error against fp32, plus 5 % of the largest logit.
    quant_err = np.abs(exact - _ort(qdq["fp32"].path, x)).max()
    assert np.abs(out - fused).max() < quant_err + 0.05 * np.abs(fused).max()


def test_qonnx_verifies_through_the_parity_gate_runtime(qdq):
    from edgekd.export.qonnx import QonnxExporter
    from edgekd.runtimes import runtime_for

    exp = QonnxExporter().export(Path(qdq["int8"].path), qdq["tmp"], "v")
    with runtime_for(exp.path) as rt:  # *.qonnx.onnx -> qonnx's executor
        assert rt.name == "qonnx" and rt.input_shape[0] == 1
        out = rt(qdq["x"][:2])
        assert "8-bit" in rt.executed_precision
    assert out.shape[0] == 2 and np.isfinite(out).all()


def test_four_bit_weights(qdq):
    from qonnx.core.modelwrapper import ModelWrapper

    from edgekd.export.qonnx import QonnxExporter, quant_summary

    exp = QonnxExporter(weight_bits=4).export(Path(qdq["int8"].path), qdq["tmp"], "w4")
    assert exp.precision == "w4a8"
    counts = quant_summary(Path(exp.path))
    assert counts["4"] >= 10 and counts["8"] >= 10  # weights at 4 bits, activations at 8
    model = ModelWrapper(exp.path)
    for n in model.get_nodes_by_op_type("Quant"):
        w = model.get_initializer(n.input[0])
        if w is not None and w.ndim > 1:  # a weight: on the 4-bit grid, narrow signed (-7..7)
            q = w / model.get_initializer(n.input[1])
            assert np.abs(q).max() <= 7 + 1e-3


def test_unet_is_built_from_plain_ops(qdq):
    import onnx

    if qdq["name"] != "unet":
        pytest.skip("U-Net only")
    ops = {n.op_type for n in onnx.load(qdq["fp32"].path).graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "Resize", "Concat", "Constant"}, ops


def test_fp32_onnx_is_refused_with_a_clear_message(qdq):
    from edgekd.export.qonnx import QonnxExporter

    with pytest.raises(ModelError, match="needs the int8 Q/DQ ONNX"):
        QonnxExporter().export(Path(qdq["fp32"].path), qdq["tmp"], "bad")
    with pytest.raises(ModelError, match="2..8"):
        QonnxExporter(weight_bits=12).export(Path(qdq["int8"].path), qdq["tmp"], "bad")


def test_the_parity_gate_verifies_qonnx_on_a_capped_sample(qdq, monkeypatch):
    from dataclasses import replace

    import edgekd.verify as verify
    from edgekd.export.qonnx import QonnxExporter
    from edgekd.formats import FORMATS, timed_runtime
    from edgekd.targets import load_target

    if qdq["name"] == "unet":
        pytest.skip("compare() takes classification logits")
    assert FORMATS["qonnx"].verify_samples == 64
    monkeypatch.setitem(FORMATS, "qonnx", replace(FORMATS["qonnx"], verify_samples=3))
    exp = QonnxExporter().export(Path(qdq["int8"].path), qdq["tmp"], "gate")
    ref = _ort(qdq["int8"].path, qdq["x"], optimized=False)
    res = verify.verify_model(exp, qdq["x"], ref.argmax(1), ref, load_target("cpu-x86"))
    assert res.passed and res.samples == 3 and res.runtime == "qonnx", res
    assert timed_runtime("qonnx") is None  # bench never times the reference executor
