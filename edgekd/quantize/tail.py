"""The int8 exports both quantization routes end with (NNCF PTQ in ``stages/quantize.py``, QAD / torch PTQ in
``quantize/torch_stage.py``): the QONNX file FPGA flows take, made from the int8 Q/DQ ONNX."""

from __future__ import annotations

from pathlib import Path

from edgekd.artifacts import ExportedModel
from edgekd.progress import console
from edgekd.run_context import Run


def qonnx_from(r: Run, qdq: Path) -> ExportedModel:
    """QONNX for FPGA flows (the target's weight bit width) from an int8 Q/DQ ONNX."""
    from edgekd.export.qonnx import QonnxExporter

    bits = r.target.fpga.weight_bits if r.target.fpga else 8
    exp = QonnxExporter(bits).export(Path(qdq), r.path("export", "x").parent, "student-int8")
    console.print(f"exported {exp.key} ({bits}-bit weights) from {Path(qdq).name}: {exp.path} ({exp.size_mb():.2f} MB)")
    return exp
