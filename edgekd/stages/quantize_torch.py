"""The quantize stage's torch route: QAD (or PTQ on the torch student when an accuracy bound is asked for),
the accuracy guard, and the int8 exports of the resulting QAT model (the library parts: ``quantize/qad.py``,
``quantize/guard.py``, ``quantize/qat_export.py``, ``quantize/tail.py``; this module is the stage around them).

Writes ``RUN/quantize.json``: the method, validation metrics of FP32 / PTQ / QAD, the QAD history, the layers
kept in FP32 by the guard, and how closely each exported file follows the torch QAT model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgekd.artifacts import ExportedModel
from edgekd.errors import AccuracyError
from edgekd.fileio import write_text
from edgekd.progress import console
from edgekd.quantize.spec import QuantSpec
from edgekd.quantize.tail import int8_tail
from edgekd.run_context import Run

RANK_IMAGES = 256  # validation images the guard's sensitivity ranking runs on


def run(r: Run, calib: np.ndarray, spec: QuantSpec) -> list[ExportedModel]:
    """QAD / torch PTQ for the pipeline's quantize stage; returns the int8 ExportedModels."""
    from edgekd.config import schedule
    from edgekd.data.torchdata import loader
    from edgekd.distill.trainer import evaluate, predict
    from edgekd.models.factory import load_checkpoint
    from edgekd.quantize import qad
    from edgekd.quantize.guard import GuardResult, rank_layers, search

    cfg, data = r.cfg, r.data
    folder = r.path("quantize", f"{cfg.quantize_method}-{r.stage_key}", "x").parent
    student, card = load_checkpoint(Path(r.results["distill"].path))
    console.print(f"PTQ start of the torch student ({len(calib)} calibration images, preset {spec.preset}"
                  + (", TensorRT: signed int8, per-tensor activations" if spec.tensorrt else "") + ")")
    model = qad.start(student, calib, spec, folder)
    report: dict = {"method": cfg.quantize_method, "preset": spec.preset, "calib_samples": len(calib),
                    "ignored_scope": list(spec.ignored_scope), "metric": cfg.select_metric,
                    "quantizers": len(qad.quantizers(model))}
    if cfg.quantize_method == "qad":
        losses = list(cfg.qad_losses) or list(schedule(cfg)[-1].losses)
        won = r.results["distill"].get("sweep", {}).get("winner")
        if won and not cfg.qad_losses:  # the distillation's losses, at the values its sweep chose
            from edgekd.distill.sweep import with_params

            losses = list(with_params(schedule(cfg)[-1], won).losses)
        lr = cfg.qad_lr or cfg.lr / 20
        console.print(f"QAD: {cfg.qad_epochs} epochs at lr {lr:g}, losses " + ", ".join(t.name for t in losses)
                      + ", BatchNorm frozen, FP32 teacher(s) supervising")
        report["qad"] = qad.train(model, data, cfg, r.results["teacher"].teachers, folder, cfg.qad_epochs, lr,
                                  losses)
    val_dl = loader(data.val, data.preprocess, data.eval_batch, shuffle=False)
    fp32_logits = predict(student, val_dl) if cfg.max_accuracy_drop is not None else None
    fp32_val = evaluate(student, val_dl, cfg.select_metric)

    def int8_metric() -> float:
        return evaluate(model, val_dl, cfg.select_metric)

    int8_val = int8_metric()
    report.update(fp32_val=fp32_val, int8_val=int8_val)
    console.print(f"validation {cfg.select_metric}: FP32 {fp32_val:.2f}, int8 ({cfg.quantize_method}) {int8_val:.2f} "
                  f"(drop {fp32_val - int8_val:+.2f})")
    guard = None
    if cfg.max_accuracy_drop is not None:
        if fp32_val - int8_val <= cfg.max_accuracy_drop:
            guard = GuardResult(True, fp32_val, int8_val, [])
        else:
            x = torch.cat([b[0] for b in val_dl])[:RANK_IMAGES]
            ranking = rank_layers(model, torch.from_numpy(fp32_logits[:RANK_IMAGES]), x)
            guard = search(model, ranking, int8_metric, fp32_val, cfg.max_accuracy_drop, cfg.max_fp32_layers)
            report["sensitivity"] = [{"layer": n, "kl_reduction": s} for n, s in ranking[:20]]
        report["guard"] = {"max_drop": cfg.max_accuracy_drop, "met": guard.met, "drop": guard.drop,
                           "int8_val": guard.int8_metric, "fp32_layers": guard.kept, "tried": guard.tried,
                           "max_fp32_layers": cfg.max_fp32_layers}
        if guard.kept:
            console.print(f"accuracy guard: {len(guard.kept)} layer(s) kept in FP32 -> drop {guard.drop:.2f} "
                          f"(bound {cfg.max_accuracy_drop}): " + ", ".join(guard.kept))
    qad.save_qat(model, folder, "final")
    exports = _export(r, model, card, report, spec)
    write_text(r.path("quantize.json"), json.dumps(report, indent=2))
    if guard is not None and not guard.met:
        files = ", ".join(e.path for e in exports)
        raise AccuracyError(
            f"the int8 model cannot meet --max-accuracy-drop {cfg.max_accuracy_drop}: the best drop reached is "
            f"{guard.drop:.2f} points of validation {cfg.select_metric} with {len(guard.kept)} of at most "
            f"{cfg.max_fp32_layers} layers kept in FP32 (raise max_fp32_layers, try --method qad or more QAD "
            f"epochs); that best model is written: {files} (report: {r.root / 'quantize.json'})")
    return exports


def _export(r: Run, model, card: dict, report: dict, spec: QuantSpec) -> list[ExportedModel]:
    """The int8 formats of the target from the QAT model, each checked against it on validation images."""
    from edgekd.formats import runtime_of
    from edgekd.quantize.qat_export import export_openvino, export_qdq_onnx
    from edgekd.runtimes import runtime_for
    from edgekd.verify import run_batches

    h, w = r.data.preprocess.size
    sample = torch.zeros(1, 3, h, w)
    out_dir = r.path("export", "x").parent
    formats = r.results["export"].formats()
    x = r.data.preprocess.batch([r.data.val.image(i) for i in range(min(len(r.data.val), RANK_IMAGES))])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    exports, parity, tail = [], {}, []
    for fmt in ("onnx", "openvino"):
        if not (fmt in formats or (fmt == "onnx" and spec.qonnx_bits is not None)):
            continue
        if fmt == "onnx":
            meta = {"edgekd.preprocess": card["preprocess"], "edgekd.classes": card["classes"],
                    "edgekd.arch": card["arch"], "edgekd.quantization": report["method"]}
            # without ONNX among the target's formats the Q/DQ graph is made only to derive the QONNX from
            stem = "student-int8" if "onnx" in formats else "student-int8-qdq"
            exp = export_qdq_onnx(model, sample, out_dir / f"{stem}.onnx", meta)
            # TensorRT rewrite in place, and the QONNX (verify checks it: qonnx's executor is too slow for a
            # second check here)
            tail = int8_tail(Path(exp.path), spec, out_dir)
            if "onnx" not in formats:
                continue
        else:
            exp = export_openvino(model, sample, out_dir / "student-int8.xml")
        with runtime_for(exp.path, runtime_of(fmt), r.target.threads,
                         r.target.openvino_inference_precision) as rt:
            out = run_batches(rt, x)
        cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
        parity[exp.key] = {"top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
                           "max_abs_diff": float(np.abs(out - ref).max()), "cosine": float(cos.mean()),
                           "max_abs_logit": float(np.abs(ref).max()), "samples": len(x)}
        console.print(f"exported {exp.key} from the QAT model: {exp.path} ({exp.size_mb():.2f} MB); agreement with "
                      f"torch QAT {parity[exp.key]['top1_agreement']:.4f}, max|diff| "
                      f"{parity[exp.key]['max_abs_diff']:.3g}")
        exports.append(exp)
    report["export_vs_torch_qat"] = parity
    return exports + tail
