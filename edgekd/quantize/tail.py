"""The int8 exports both quantization routes end with (NNCF PTQ of the graphs, and the torch route's QAT model):
from the int8 Q/DQ ONNX, the TensorRT-ready rewrite and the QONNX file FPGA flows take."""

from __future__ import annotations

from pathlib import Path

from edgekd.artifacts import ExportedModel
from edgekd.progress import console
from edgekd.quantize.spec import QuantSpec


def int8_tail(qdq: Path, spec: QuantSpec, out_dir: Path) -> list[ExportedModel]:
    """Finish an int8 Q/DQ ONNX as ``spec`` asks: rewritten in place as symmetric int8 for TensorRT's explicit
    quantization (``spec.tensorrt``), then a QONNX file at ``spec.qonnx_bits`` weight bits derived from it
    (returned; empty without ``spec.qonnx_bits``)."""
    qdq = Path(qdq)
    if spec.tensorrt:
        from edgekd.export.tensorrt import make_tensorrt_ready

        n, rep = make_tensorrt_ready(qdq)
        console.print(f"rewrote {n} uint8 Q/DQ nodes of {qdq.name} as symmetric int8 (TensorRT's explicit "
                      f"quantization); TensorRT Q/DQ check passed: {rep.quantize_nodes} QuantizeLinear, "
                      f"{rep.per_channel_weights} per-channel weights, symmetric int8")
    if spec.qonnx_bits is None:
        return []
    from edgekd.export.qonnx import QonnxExporter

    exp = QonnxExporter(spec.qonnx_bits).export(qdq, Path(out_dir), "student-int8")
    console.print(f"exported {exp.key} ({spec.qonnx_bits}-bit weights) from {qdq.name}: {exp.path} "
                  f"({exp.size_mb():.2f} MB)")
    return [exp]
