"""NNCF post-training int8 quantization of the exported FP32 graphs.

PTQ runs on the exported ONNX / OpenVINO graphs rather than on the torch module: NNCF's torch backend
JIT-compiles a C++ extension (g++/ninja, minutes on 2 cores), while its ONNX backend writes standard
QuantizeLinear/DequantizeLinear pairs (what ONNX Runtime and TensorRT's explicit quantization read) and its
OpenVINO backend writes the FakeQuantize IR that OpenVINO's CPU plugin runs in int8.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgekd._deps import require
from edgekd.artifacts import ExportedModel
from edgekd.errors import BackendError, reason
from edgekd.export.onnx import INPUT_NAME
from edgekd.fileio import atomic
from edgekd.quantize.spec import QuantSpec


def _nncf():
    nncf = require("nncf")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def quantize_onnx(fp32: ExportedModel, calib: np.ndarray, out: Path, spec: QuantSpec = QuantSpec()) -> ExportedModel:
    """FP32 ONNX -> int8 Q/DQ ONNX calibrated on ``calib`` (N x C x H x W float32)."""
    nncf, onnx = _nncf(), require("onnx")
    model = onnx.load(fp32.path)
    ds = nncf.Dataset([{INPUT_NAME: x[None]} for x in calib])
    try:
        q = nncf.quantize(model, ds, **spec.nncf_kwargs(nncf, len(calib)))
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"NNCF could not quantize {fp32.path}: {reason(exc)}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic(out) as tmp:
        onnx.save(q, str(tmp))
    return ExportedModel("onnx", "int8", str(out), (str(out),))


def quantize_openvino(fp32: ExportedModel, calib: np.ndarray, out: Path,
                      spec: QuantSpec = QuantSpec()) -> ExportedModel:
    """FP32 IR -> int8 IR calibrated on ``calib``."""
    nncf, ov = _nncf(), require("openvino")
    from edgekd.export.openvino import save_ir

    model = ov.Core().read_model(fp32.path)
    ds = nncf.Dataset([x[None] for x in calib])
    try:
        q = nncf.quantize(model, ds, **spec.nncf_kwargs(nncf, len(calib)))
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"NNCF could not quantize {fp32.path}: {reason(exc)}") from exc
    files = save_ir(q, out)
    return ExportedModel("openvino", "int8", files[0], files)


def quantize(fp32: ExportedModel, calib: np.ndarray, out_dir: Path, stem: str,
             spec: QuantSpec = QuantSpec()) -> ExportedModel:
    """Dispatch on the FP32 model's format: ``out_dir/stem.onnx`` or ``out_dir/stem.xml`` (+ .bin)."""
    if fp32.format == "onnx":
        return quantize_onnx(fp32, calib, out_dir / f"{stem}.onnx", spec)
    if fp32.format == "openvino":
        return quantize_openvino(fp32, calib, out_dir / f"{stem}.xml", spec)
    raise BackendError(f"post-training int8 is not available for format {fp32.format!r}")
