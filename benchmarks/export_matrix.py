"""Export matrix: each student x format x precision, exported, loaded in its runtime and compared with PyTorch.

    .venv/bin/python benchmarks/export_matrix.py --size 96 --samples 64 --qonnx-samples 8

Students are created with random weights (no training); inputs are random normal images. Reference: the
PyTorch model's logits. Gates: cpu-x86's top-1 agreement and max |diff| (fp32: >= 0.99 and <= 1e-3; int8:
>= 0.90); fp16 and w4a8 borrow fp32's / int8's (cpu-x86 defines none for them), fp16 without the |diff| gate;
no accuracy-drop gate, as random inputs have no labels. Random-weight logits are nearly tied, so int8 top-1
agreement here is a pessimistic measure (trained models keep wider margins); cosine says more.

Rows: ONNX fp32 and int8 (NNCF PTQ, symmetric `performance` preset, random calibration) in ONNX Runtime;
OpenVINO IR fp32, fp16 (weights compressed, f32 compute) and int8 (NNCF PTQ on the IR) in OpenVINO CPU; QONNX
int8 and w4a8 (from the int8 Q/DQ ONNX) in qonnx's own executor (node by node, so fewer samples); the
TensorRT check: the int8 ONNX rewritten as symmetric int8 and checked against TensorRT 10's op list + Q/DQ
rules, run in ONNX Runtime as a stand-in (TensorRT itself is not installed here).

Prints a Markdown table and writes benchmarks/results/export_matrix.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

STUDENTS = ("mobilevit_xxs", "efficientnet_b0", "mobilenetv3_small_100")


def _thresholds(target, precision: str):
    """cpu-x86's agreement and |diff| gates; no accuracy-drop gate (random inputs have no labels)."""
    th = target.parity["fp32" if precision == "fp16" else "int8" if precision.startswith("w") else precision]
    return th.model_copy(update={"max_metric_drop": 100.0, **({"max_abs_diff": None} if precision == "fp16" else {})})


def run_student(arch: str, size: int, n: int, nq: int, tmp: Path, target) -> list[dict]:
    import torch

    from edgekd.artifacts import ExportedModel
    from edgekd.export.catalog import get_exporter
    from edgekd.export.onnx import export_torch
    from edgekd.export.openvino import OpenVinoExporter
    from edgekd.export.qonnx import QonnxExporter
    from edgekd.export.tensorrt import check_onnx, to_symmetric_int8
    from edgekd.models.factory import create_timm
    from edgekd.quantize.ptq import quantize
    from edgekd.quantize.spec import QuantSpec, is_transformer
    from edgekd.runtimes import runtime_for
    from edgekd.verify import parity, run_batches

    torch.manual_seed(0)
    model = create_timm(arch, 10).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    calib = rng.standard_normal((32, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    labels = ref.argmax(1)
    transformer = is_transformer(arch)
    onnx_path = export_torch(model, torch.zeros(1, 3, size, size), tmp / f"{arch}-fp32.onnx", {})
    onnx_fp32 = get_exporter("onnx").export(onnx_path, tmp, f"{arch}-fp32")
    ov_fp32 = OpenVinoExporter().export(onnx_path, tmp, f"{arch}-fp32")
    ov_fp16 = OpenVinoExporter(precision="fp16").export(onnx_path, tmp, f"{arch}-fp16")
    spec = QuantSpec("performance", transformer)
    onnx_int8 = quantize(onnx_fp32, calib, tmp, f"{arch}-int8", spec)
    ov_int8 = quantize(ov_fp32, calib, tmp, f"{arch}-int8", spec)
    trt_path = tmp / f"{arch}-int8-trt.onnx"
    to_symmetric_int8(Path(onnx_int8.path), trt_path)
    trt = check_onnx(trt_path)
    trt_model = ExportedModel("onnx", "int8", str(trt_path), (str(trt_path),))
    rows = []
    jobs = [("ONNX", onnx_fp32, "onnxruntime"), ("ONNX", onnx_int8, "onnxruntime"),
            ("OpenVINO IR", ov_fp32, "openvino"), ("OpenVINO IR", ov_fp16, "openvino"),
            ("OpenVINO IR", ov_int8, "openvino")]
    for bits in (8, 4):
        t0 = time.perf_counter()
        exp = QonnxExporter(weight_bits=bits).export(Path(onnx_int8.path), tmp, f"{arch}-w{bits}")
        print(f"  {arch}: QONNX w{bits} written in {time.perf_counter() - t0:.1f} s")
        jobs.append(("QONNX", exp, "qonnx"))
    jobs.append(("TensorRT check (ORT stand-in)", trt_model, "onnxruntime"))
    for fmt, exp, runtime in jobs:
        k = nq if runtime == "qonnx" else n
        t0 = time.perf_counter()
        with runtime_for(exp.path, runtime, 2, "f32") as rt:
            out = run_batches(rt, x[:k], batch=16)
            executed = rt.executed_precision
        res = parity(exp.key, runtime, exp.precision, executed, ref[:k], out, labels[:k],
                      _thresholds(target, exp.precision))
        row = {"student": arch, "format": fmt, "precision": exp.precision, "runtime": runtime,
               "executed": executed, "samples": k, "passed": res.passed, "reason": res.reason,
               "top1_agreement": res.top1_agreement, "max_abs_diff": res.max_abs_diff, "cosine": res.cosine,
               "ref_max_abs_logit": float(np.abs(ref[:k]).max()), "size_mb": exp.size_mb(),
               "run_s": time.perf_counter() - t0}
        if fmt.startswith("TensorRT"):
            row["tensorrt_check"] = "ok" if trt.ok else "; ".join(trt.problems)
            row["passed"] = row["passed"] and trt.ok
        rows.append(row)
        print(f"  {arch} {fmt} {exp.precision}: {'pass' if row['passed'] else 'FAIL'} "
              f"agree {res.top1_agreement:.3f} max|d| {res.max_abs_diff:.3g} cos {res.cosine:.5f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", default=",".join(STUDENTS))
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--qonnx-samples", type=int, default=8, help="qonnx's executor runs node by node: slow")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    from edgekd._deps import tool_versions
    from edgekd.bench.system import system_info
    from edgekd.targets import load_target

    target = load_target("cpu-x86")
    rows: list[dict] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekd-matrix-") as tmp:
        for arch in args.students.split(","):
            sub = Path(tmp) / arch
            sub.mkdir()
            rows += run_student(arch, args.size, args.samples, args.qonnx_samples, sub, target)
    print(f"\nexport matrix, {args.size} px, random weights, cpu-x86 thresholds "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print("| student | format | precision | runtime (executed) | n | top-1 agree | max \\|diff\\| (max \\|logit\\|) | "
          "cosine | MB | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = "pass" if r["passed"] else f"fail: {r['reason']}"
        if "tensorrt_check" in r:
            verdict += f" (TensorRT list + Q/DQ check: {r['tensorrt_check']})"
        print(f"| {r['student']} | {r['format']} | {r['precision']} | {r['runtime']} ({r['executed']}) | "
              f"{r['samples']} | {r['top1_agreement']:.3f} | {r['max_abs_diff']:.2g} ({r['ref_max_abs_logit']:.2g}) | "
              f"{r['cosine']:.5f} | "
              f"{r['size_mb']:.2f} | {verdict} |")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "export_matrix.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "target": target.name,
                               "rows": rows, "versions": tool_versions(), "machine": system_info()}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
