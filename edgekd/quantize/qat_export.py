"""Exports of a torch QAT model (NNCF): OpenVINO INT8 IR and standard QuantizeLinear/DequantizeLinear ONNX.

NNCF's default ONNX export of a QAT model carries OpenVINO's custom FakeQuantize op, which onnxruntime and
TensorRT cannot load, and the torch.export-based exporter fails on it. The supported route (probed in
docs/research/nncf_qat_route.py): switch every quantizer to ``ONNX_QUANTIZE_DEQUANTIZE_PAIRS`` and use the
TorchScript exporter (opset >= 13 for per-channel axes). Weights are first snapped onto their int8 grid, which
changes nothing in the QAT model's function (fake quantization is idempotent) but removes the .5-tie rounding
flips between NNCF's rounding and ONNX's QuantizeLinear.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from edgekd._deps import require
from edgekd.artifacts import ExportedModel
from edgekd.errors import BackendError, reason
from edgekd.fileio import atomic
from edgekd.quantize.qad import quantizers


@torch.no_grad()
def _snap_weights(model: nn.Module, sample: torch.Tensor) -> None:
    """w <- FQ(w) for every weight quantizer, so the exported int8 weights round exactly like the QAT model."""
    params = {id(p): p for p in model.parameters()}

    def snap(_mod, inp, out):
        if id(inp[0]) in params:
            params[id(inp[0])].data.copy_(out)

    handles = [q.register_forward_hook(snap) for q in quantizers(model).values()]
    try:
        model(sample)
    finally:
        for h in handles:
            h.remove()


def export_qdq_onnx(qat: nn.Module, sample: torch.Tensor, out: Path, metadata: dict) -> ExportedModel:
    """Standard Q/DQ ONNX (int8 weights per channel, zero point 0) with edgekd's metadata; atomic."""
    from nncf.torch.quantization.layers import QuantizerExportMode

    from edgekd.export.onnx import export_torch

    model = copy.deepcopy(qat).eval()
    _snap_weights(model, sample)
    for q in quantizers(model).values():
        q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    # the TorchScript exporter: torch.export cannot trace NNCF's quantizers (see the module's docstring)
    path = export_torch(model, sample, out, metadata, opset=17, exporter="torchscript")
    fold_weight_quantization(path)
    return ExportedModel("onnx", "int8", str(path), (str(path),))


def fold_weight_quantization(path: Path) -> int:
    """Store quantized weights as int8 initializers (QuantizeLinear folded away); returns how many were folded.

    The TorchScript export keeps FP32 weights followed by QuantizeLinear, so the file is as large as the FP32
    model and every runtime re-quantizes the weights when it loads. Rounding follows ONNX's QuantizeLinear
    (round half to even, saturate). Constant nodes become initializers first, which is also where TensorRT's
    Q/DQ checks look for scales and zero points.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    consts = [n for n in g.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"]
    for n in consts:
        g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(n.attribute[0].t), n.output[0]))
        g.node.remove(n)
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    folded = 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        if not (q.input[0] in inits and q.input[1] in inits and len(q.input) > 2 and q.input[2] in inits):
            continue
        w, scale = numpy_helper.to_array(inits[q.input[0]]), numpy_helper.to_array(inits[q.input[1]])
        zp = numpy_helper.to_array(inits[q.input[2]])
        if scale.ndim == 1 and scale.size > 1:  # per channel along ``axis`` (default 1)
            axis = next((a.i for a in q.attribute if a.name == "axis"), 1) % w.ndim
            shape = [1] * w.ndim
            shape[axis] = -1
            scale, zp_b = scale.reshape(shape), zp.reshape(shape)
        else:
            zp_b = zp
        info = np.iinfo(zp.dtype)
        qw = np.clip(np.rint(w / scale) + zp_b.astype(np.float64), info.min, info.max).astype(zp.dtype)
        name = q.input[0] + "_int8"
        g.initializer.append(numpy_helper.from_array(qw, name))
        for c in consumers.get(q.output[0], []):
            c.input[:] = [name if i == q.output[0] else i for i in c.input]
        g.node.remove(q)
        folded += 1
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    with atomic(path) as tmp:
        onnx.save(model, str(tmp))
    return folded


def export_openvino(qat: nn.Module, sample: torch.Tensor, xml: Path) -> ExportedModel:
    """OpenVINO INT8 IR (FakeQuantize ops, which the CPU plugin runs in int8), dynamic batch; atomic."""
    ov = require("openvino")
    from edgekd.export.openvino import save_ir

    model = copy.deepcopy(qat).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace deprecation and tracer warnings, one per quantizer
            converted = ov.convert_model(model, example_input=sample, input=[(-1, *sample.shape[1:])])
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"OpenVINO could not convert the QAT model: {reason(exc)}") from exc
    files = save_ir(converted, xml)
    return ExportedModel("openvino", "int8", files[0], files)
