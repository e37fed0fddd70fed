"""The quantize stage: int8 models by NNCF PTQ of each FP32 export, or the torch route (QAD, or PTQ under an
accuracy bound)."""

from __future__ import annotations

from pathlib import Path

from edgekd.artifacts import ExportedModel
from edgekd.progress import console
from edgekd.quantize.tail import qonnx_from
from edgekd.results import ModelsResult
from edgekd.run_context import Run
from edgekd.stages.common import inputs as _inputs


def quantize(r: Run) -> ModelsResult:
    """int8 models: NNCF PTQ of each FP32 export, or the torch route (QAD, or PTQ under an accuracy bound)."""
    if "int8" not in r.target.precisions:
        return ModelsResult([])
    calib, _ = _inputs(r, "train", r.cfg.calib_samples)
    if r.cfg.quantize_method == "qad" or r.cfg.max_accuracy_drop is not None:
        from edgekd.quantize import torch_stage

        return ModelsResult(torch_stage.run(r, calib))
    from edgekd.formats import FORMATS
    from edgekd.quantize.ptq import quantize as ptq

    r.path("quantize.json").unlink(missing_ok=True)  # a torch-route report of an earlier config no longer applies
    transformer = "vit" in r.cfg.student or "former" in r.cfg.student
    # FPGA dataflow (QONNX) and TensorRT want symmetric int8: targets say so with quant_preset
    preset = r.target.quant_preset or r.cfg.quant_preset
    out = []
    for fp32 in r.results["export"]:
        if not FORMATS[fp32.format].ptq:  # NNCF quantizes ONNX and IR; the others derive from the Q/DQ ONNX
            continue
        exp = ptq(fp32, calib, r.path("export", "x").parent, "student-int8", preset, transformer,
                  tuple(r.cfg.quant_ignored_scope))
        console.print(f"quantized {exp.key} (preset {preset}): {exp.path} ({exp.size_mb():.2f} MB)")
        if exp.format == "onnx" and "tensorrt" in r.target.formats:
            from edgekd.export.tensorrt import make_tensorrt_ready

            n, rep = make_tensorrt_ready(Path(exp.path))
            console.print(f"rewrote {n} uint8 Q/DQ nodes as symmetric int8 (TensorRT's explicit quantization); "
                          f"TensorRT Q/DQ check passed: {rep.quantize_nodes} QuantizeLinear, "
                          f"{rep.per_channel_weights} per-channel weights, symmetric int8")
        out.append(exp)
    if "qonnx" in r.target.formats:
        qdq = next((Path(m.path) for m in out if m.format == "onnx"), None)
        if qdq is None:  # the target ships no ONNX: its Q/DQ graph is made only to derive the QONNX
            fp32 = r.path("export", "student-fp32.onnx")
            qdq = Path(ptq(ExportedModel("onnx", "fp32", str(fp32), (str(fp32),)), calib, fp32.parent,
                           "student-int8-qdq", preset, transformer, tuple(r.cfg.quant_ignored_scope)).path)
        out.append(qonnx_from(r, qdq))
    return ModelsResult(out)
