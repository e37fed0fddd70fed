"""The export stage: FP32 ONNX (the root graph), then every other FP32 format of the target."""

from __future__ import annotations

from pathlib import Path

from edgekd.progress import console
from edgekd.results import ModelsResult
from edgekd.run_context import Run


def export(r: Run) -> ModelsResult:
    """FP32 ONNX (the root graph), then every other FP32 format of the target derived from it."""
    import torch

    from edgekd.export.catalog import get_exporter
    from edgekd.export.onnx import export_torch
    from edgekd.formats import FORMATS
    from edgekd.models.factory import load_checkpoint

    model, card = load_checkpoint(Path(r.results["distill"].path))
    h, w = r.data.preprocess.size
    meta = {"edgekd.preprocess": card["preprocess"], "edgekd.classes": card["classes"], "edgekd.arch": card["arch"]}
    onnx_path = export_torch(model, torch.zeros(1, 3, h, w), r.path("export", "student-fp32.onnx"), meta,
                            exporter=r.cfg.onnx_exporter)
    out = []
    for fmt in r.target.formats:
        if fmt == "tensorrt":
            from edgekd.export import tensorrt

            if not tensorrt.available():
                console.print("tensorrt: not importable here; engines are built on the device from the ONNX "
                              "(the bundle carries build_engine.sh)")
                continue
            exp = tensorrt.TensorRTExporter(r.target.tensorrt).export(onnx_path, onnx_path.parent, "student-fp16")
            console.print(f"exported {exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")
            out.append(exp)
            continue
        if FORMATS[fmt].export_from != "fp32":  # QONNX is made from the int8 Q/DQ graph in the quantize stage
            continue
        exp = get_exporter(fmt).export(onnx_path, r.path("export", "x").parent, "student-fp32")
        console.print(f"exported {exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")
        out.append(exp)
    return ModelsResult(out)
