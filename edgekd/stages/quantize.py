"""The quantize stage: int8 models by NNCF PTQ of each FP32 export, or the torch route (QAD, or PTQ under an
accuracy bound, ``stages/quantize_torch.py``). Both take the run's one :class:`QuantSpec` (:func:`quant_spec`)
and end in the same tail (``quantize/tail.py``: TensorRT-ready Q/DQ, QONNX)."""

from __future__ import annotations

from pathlib import Path

from edgekd.artifacts import ExportedModel
from edgekd.progress import console
from edgekd.quantize.spec import QuantSpec, is_transformer
from edgekd.quantize.tail import int8_tail
from edgekd.results import ModelsResult
from edgekd.run_context import Run
from edgekd.stages.common import inputs as _inputs


def quant_spec(r: Run) -> QuantSpec:
    """The run's quantization choices: the target's preset before the config's (FPGA dataflow and TensorRT want
    symmetric int8), TensorRT's constraints and the QONNX bit width when the target ships those formats."""
    t = r.target
    return QuantSpec(preset=t.quant_preset or r.cfg.quant_preset, transformer=is_transformer(r.cfg.student),
                     ignored_scope=tuple(r.cfg.quant_ignored_scope), tensorrt="tensorrt" in t.formats,
                     qonnx_bits=(t.fpga.weight_bits if t.fpga else 8) if "qonnx" in t.formats else None)


def quantize(r: Run) -> ModelsResult:
    """int8 models: NNCF PTQ of each FP32 export, or the torch route (QAD, or PTQ under an accuracy bound)."""
    if "int8" not in r.target.precisions:
        return ModelsResult([])
    calib, _ = _inputs(r, "train", r.cfg.calib_samples)
    spec = quant_spec(r)
    if r.cfg.quantize_method == "qad" or r.cfg.max_accuracy_drop is not None:
        from edgekd.stages import quantize_torch

        return ModelsResult(quantize_torch.run(r, calib, spec))
    from edgekd.formats import FORMATS
    from edgekd.quantize.ptq import quantize as ptq

    r.path("quantize.json").unlink(missing_ok=True)  # a torch-route report of an earlier config no longer applies
    out_dir = r.path("export", "x").parent
    out = []
    for fp32 in r.results["export"]:
        if not FORMATS[fp32.format].ptq:  # NNCF quantizes ONNX and IR; the others derive from the Q/DQ ONNX
            continue
        exp = ptq(fp32, calib, out_dir, "student-int8", spec)
        console.print(f"quantized {exp.key} (preset {spec.preset}): {exp.path} ({exp.size_mb():.2f} MB)")
        out.append(exp)
    qdq = next((Path(m.path) for m in out if m.format == "onnx"), None)
    if qdq is None and spec.qonnx_bits is not None:  # no ONNX shipped: a Q/DQ graph only to derive the QONNX from
        fp32 = r.path("export", "student-fp32.onnx")
        qdq = Path(ptq(ExportedModel("onnx", "fp32", str(fp32), (str(fp32),)), calib, fp32.parent,
                       "student-int8-qdq", spec).path)
    return ModelsResult(out + (int8_tail(qdq, spec, out_dir) if qdq is not None else []))
