"""Error of edgekd's Jetson Orin Nano roofline estimate against published Orin Nano latencies.

The target's ``estimate.efficiency`` was fitted to one figure (MobileViT-S FP16, 256 px, 7.13 ms), so its error
there is 0 by construction; this script measures it on figures it was not fitted to. For each published figure it
exports the model to ONNX at the published input size (random weights: the estimate only needs the graph), makes
an int8 Q/DQ ONNX with edgekd.quantize.ptq.quantize_onnx (preset ``performance``, random calibration data) where the
figure is INT8, runs edgekd.bench.estimate.roofline_ms, prints a Markdown table and writes
benchmarks/results/jetson_estimate.json. Every published number below is quoted with its source; none is made up.

YOLOv8n needs ``ultralytics`` importable (e.g. ``pip install --no-deps --target /tmp/ul ultralytics
opencv-python-headless`` and ``PYTHONPATH=/tmp/ul``); without it that row is skipped and the reason printed.

    python benchmarks/jetson_estimate.py [--target jetson-orin-nano]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Published figures (quoted, not measured here). `fitted` marks the one the target's efficiency was fitted to.
FIGURES = [
    {"model": "MobileViT-S", "builder": "timm:mobilevit_s", "input": (256, 256), "precision": "fp16",
     "published_ms": 7.13, "fitted": True,
     "conditions": "FP16, batch 1, compute-only",
     "source": "targets/jetson-orin-nano.yaml estimate.calibration (public device benchmark matrix); "
               "the efficiency factor was fitted to this figure"},
    {"model": "YOLOv8n", "builder": "ultralytics:yolov8n.yaml", "input": (640, 640), "precision": "int8",
     "published_ms": 3.49, "fitted": False,
     "conditions": "TensorRT 10.3 INT8, batch 1, GPU compute time (trtexec); Orin Nano 8GB Developer Kit, "
                   "MAXN_SUPER + jetson_clocks, JetPack 6.2",
     "source": "Hokwang Choi, 'YOLOv8 on Jetson Orin Nano: From PyTorch to TensorRT INT8', April 2026, "
               "https://hokwangchoi.com/blog/vision-benchmarks/ (code: github.com/hokwangchoi/"
               "jetson-orin-nano-benchmarks)"},
    # OpenCV Zoo's "Jetson Nano Orin" section, GPU (CUDA-FP16) table: OpenCV DNN's CUDA backend (cuDNN, no
    # TensorRT), time of net.forward on the host (copies included), 625 MHz GPU (the non-Super clock it states).
    {"model": "ResNet-50 (timm resnet50)", "builder": "timm:resnet50", "input": (224, 224), "precision": "fp16",
     "published_ms": 14.18, "fitted": False,
     "conditions": "OpenCV DNN CUDA-FP16 backend (cuDNN, not TensorRT), batch 1, host-timed forward "
                   "(mean; median 14.16 ms), GPU max freq 625 MHz; model PP-ResNet50 (PaddlePaddle ResNet-50)",
     "source": "opencv/opencv_zoo benchmark/README.md, section 'Jetson Nano Orin', GPU (CUDA-FP16) table, "
               "row image_classification_ppresnet50_2022jan.onnx"},
    {"model": "MobileNetV2 (timm mobilenetv2_100)", "builder": "timm:mobilenetv2_100", "input": (224, 224),
     "precision": "fp16", "published_ms": 7.46, "fitted": False,
     "conditions": "OpenCV DNN CUDA-FP16 backend (cuDNN, not TensorRT), batch 1, host-timed forward "
                   "(mean; median 7.87 ms), GPU max freq 625 MHz",
     "source": "opencv/opencv_zoo benchmark/README.md, section 'Jetson Nano Orin', GPU (CUDA-FP16) table, "
               "row image_classification_mobilenetv2_2022apr.onnx"},
]

# MAXN_SUPER ("Super", JetPack 6.1+) peak figures of the same module: 67 sparse INT8 TOPS (vs 40), memory
# 102 GB/s (vs 68), GPU 1020 MHz (vs 625). Dense = sparse / 2 as in the target file.
SUPER = {"peak_int8_tops": 33.5, "peak_fp16_tflops": 16.75, "memory_bandwidth_gbs": 102.0}
SUPER_SOURCE = ("67 sparse INT8 TOPS, 102 GB/s, GPU 1.02 GHz (was 40 TOPS, 68 GB/s, 625 MHz): NVIDIA Jetson Orin "
                "Nano Super Developer Kit datasheet (Dec 2024) as quoted by https://www.brojogopalsapui.com/"
                "ai-foundations/sub_contents/AI_hardware/jetson_orin_nano_light.html; 40/67 TOPS also in "
                "github.com/hokwangchoi/jetson-orin-nano-benchmarks README. Dense = sparse / 2; efficiency unchanged.")


class _FirstOutput(torch.nn.Module):
    """Ultralytics' Detect head returns (decoded boxes, raw maps) in eval mode; its ONNX export keeps the first."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def build(builder: str) -> torch.nn.Module:
    kind, name = builder.split(":", 1)
    if kind == "timm":
        from edgekd.models.factory import create_timm

        return create_timm(name, 1000).eval()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO  # ImportError -> the row is skipped with the reason

    model = YOLO(name).model.eval()  # from the shipped yaml: random weights, nothing downloaded
    model = model.fuse(verbose=False) if hasattr(model, "fuse") else model  # as ultralytics' own export does
    return _FirstOutput(model).eval()


def estimate_row(fig: dict, device, super_device, tmp: Path, calib_n: int) -> dict:
    from edgekd.artifacts import ExportedModel
    from edgekd.bench.estimate import graph_cost, roofline_ms
    from edgekd.export.onnx import export_torch
    from edgekd.quantize.ptq import quantize_onnx

    h, w = fig["input"]
    stem = fig["builder"].split(":", 1)[1].replace(".yaml", "")
    with torch.no_grad():
        fp32 = export_torch(build(fig["builder"]), torch.zeros(1, 3, h, w), tmp / f"{stem}.onnx", {})
    onnx_path = Path(fp32)
    if fig["precision"] == "int8":
        calib = np.random.default_rng(0).normal(size=(calib_n, 3, h, w)).astype(np.float32)
        q = quantize_onnx(ExportedModel("onnx", "fp32", str(fp32), (str(fp32),)), calib,
                          tmp / f"{stem}-int8.onnx", "performance")
        onnx_path = Path(q.path)
    cost = graph_cost(onnx_path)
    est = roofline_ms(cost, device, fig["precision"])
    est_super = roofline_ms(cost, super_device, fig["precision"])
    compute_only = roofline_ms(cost, device.model_copy(update={"memory_bandwidth_gbs": 1e12}), fig["precision"])
    return {**{k: v for k, v in fig.items() if k != "builder"}, "input": f"{h}x{w}",
            "onnx": "fp32 ONNX (fp16 estimate)" if fig["precision"] == "fp16" else "int8 Q/DQ ONNX (NNCF, performance)",
            "gmacs": cost.macs / 1e9, "weights_m": cost.weight_elems / 1e6, "act_m": cost.act_elems / 1e6,
            "bound": "compute" if compute_only >= est * 0.999 else "memory",
            "estimate_ms": est, "error": est / fig["published_ms"] - 1,
            "estimate_maxn_super_ms": est_super, "error_maxn_super": est_super / fig["published_ms"] - 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="jetson-orin-nano")
    ap.add_argument("--calib", type=int, default=8, help="random calibration samples for int8 rows")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "jetson_estimate.json")
    args = ap.parse_args()

    from edgekd.targets import load_target

    device = load_target(args.target).estimate
    super_device = device.model_copy(update=SUPER)
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for fig in FIGURES:
            try:
                rows.append(estimate_row(fig, device, super_device, Path(tmp), args.calib))
            except ImportError as exc:
                skipped.append({"model": fig["model"], "why": f"cannot import: {exc}"})

    print(f"Estimates: roofline on {args.target} (peak INT8 {device.peak_int8_tops} TOPS dense, FP16 "
          f"{device.peak_fp16_tflops} TFLOPS, {device.memory_bandwidth_gbs} GB/s, efficiency {device.efficiency}); "
          f"MAXN_SUPER column: same efficiency, peaks x{SUPER['peak_int8_tops'] / device.peak_int8_tops:.3f}, "
          f"bandwidth {SUPER['memory_bandwidth_gbs']:.0f} GB/s.\n")
    print("| model | input | precision | published ms | GMACs | bound | estimate ms (target) | error | "
          "estimate ms (MAXN_SUPER peaks) | error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = (f"fitted: 0 by construction ({r['error']:+.1%}: efficiency rounded to {device.efficiency})"
               if r["fitted"] else f"{r['error']:+.0%}")
        print(f"| {r['model']} | {r['input']} | {r['precision'].upper()} | {r['published_ms']:.2f} | "
              f"{r['gmacs']:.2f} | {r['bound']} | {r['estimate_ms']:.2f} | {err} | {r['estimate_maxn_super_ms']:.2f} | "
              f"{r['error_maxn_super']:+.0%} |")
    print()
    for r in rows:
        print(f"- {r['model']}: {r['conditions']}. Source: {r['source']}.")
    print(f"- MAXN_SUPER peaks: {SUPER_SOURCE}")
    for s in skipped:
        print(f"- {s['model']} row missing: {s['why']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"target": args.target, "device": device.model_dump(),
                                    "maxn_super_device": super_device.model_dump(),
                                    "maxn_super_source": SUPER_SOURCE, "rows": rows, "skipped": skipped},
                                   indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
