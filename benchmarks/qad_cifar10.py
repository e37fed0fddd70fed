"""FP32 vs PTQ int8 vs QAD int8 on CIFAR-10 (../shared/data/cifar10-jpg), through the pipeline's own stages.

One distilled FP32 student (mobilevit_xxs at 64 px, Hinton KD from the pretrained ResNet-56 ONNX teacher, teacher
logits cached for 8 views) is shared by both int8 runs; each int8 run starts from a copy of that run folder:
  ptq: NNCF post-training int8 of the exported graphs (300 calibration images, preset mixed)
  qad: NNCF QAT started from PTQ, fine-tuned with the same KD loss from the FP32 teacher (--qad-epochs, low LR),
       best epoch by validation top-1 (the PTQ start counts as epoch 0)
Accuracy is the test top-1 of each exported model on all 10,000 test images (OpenVINO CPU, f32 pinned for the
non-quantized parts); latency is OpenVINO CPU, batch 1, 2 threads, the three IRs timed in alternating passes in
one process (median of the pass medians).

    .venv/bin/python benchmarks/qad_cifar10.py [--epochs 12] [--qad-epochs 3] [--passes 3]
    .venv/bin/python benchmarks/qad_cifar10.py --until distill     # only the FP32 student

Prints a Markdown table and writes benchmarks/results/qad_cifar10.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "models" / "cifar10-resnet56.yaml"


def base_values(epochs: int) -> dict:
    from edgekd.config import load_recipe

    return {**load_recipe(RECIPE), "name": "qad-base", "student": "mobilevit_xxs", "optimizer": "adamw", "lr": 2e-3,
            "weight_decay": 0.05, "warmup_epochs": 1, "epochs": epochs, "verify_samples": 10000,
            "bench_iters": 100, "bench_warmup": 10}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12, help="FP32 distillation epochs")
    ap.add_argument("--qad-epochs", type=int, default=3)
    ap.add_argument("--qad-lr", type=float, default=None)
    ap.add_argument("--passes", type=int, default=3, help="alternating latency passes")
    ap.add_argument("--iters", type=int, default=300, help="timed iterations per latency pass")
    ap.add_argument("--until", choices=["distill", "all"], default="all")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-qad")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    import os

    from edgekd.config import make_config
    from edgekd.pipeline import run
    from edgekd.targets import load_target

    os.chdir(ROOT)  # the recipe's data paths are relative to the project root
    if not (ROOT.parent / "shared" / "data" / "cifar10-jpg").is_dir():
        raise SystemExit("../shared/data/cifar10-jpg is absent; this benchmark needs the shared data")
    target = load_target("cpu-x86")
    base = args.work / "base"
    t0 = time.time()
    run(make_config(None, **base_values(args.epochs)), target, base, until="distill")
    print(f"FP32 student ready in {time.time() - t0:.0f} s")
    if args.until == "distill":
        return
    runs, walls = {}, {}
    for method in ("ptq", "qad"):
        folder = args.work / method
        if not (folder / "run.json").is_file():
            shutil.copytree(base, folder, ignore=shutil.ignore_patterns("export", "bundle", "*.tar.gz"))
        extra = {"quantize_method": method, "name": f"qad-{method}"}
        if method == "qad":
            extra["qad_epochs"] = args.qad_epochs
            if args.qad_lr:
                extra["qad_lr"] = args.qad_lr
        t0 = time.time()
        runs[method] = run(make_config(None, **{**base_values(args.epochs), **extra}), target, folder, until="verify")
        walls[method] = time.time() - t0
    rows = table(runs, walls, args)
    args.out.mkdir(parents=True, exist_ok=True)
    from edgekd._deps import tool_versions
    from edgekd.bench.system import system_info

    out_json = args.out / "qad_cifar10.json"
    out_json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "versions": tool_versions(), "machine": system_info()}, indent=2))
    print(f"\nwritten {out_json}")


def table(runs: dict, walls: dict, args) -> list[dict]:
    """Accuracy from each run's verify stage; OpenVINO latency of the three IRs in alternating passes."""
    from edgekd.bench.latency import bench_runtime
    from edgekd.runtimes import runtime_for

    def ov(r, precision: str) -> dict:
        return next(m for m in r.results["verify"].to_json()["models"] if m["model"] == f"openvino-{precision}")

    def ir(r, precision: str) -> Path:
        stage = "export" if precision == "fp32" else "quantize"
        return Path(next(m.path for m in r.results[stage] if m.format == "openvino"))

    models = {"FP32": (runs["ptq"], "fp32"), "PTQ int8": (runs["ptq"], "int8"), "QAD int8": (runs["qad"], "int8")}
    x = None
    lat: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.passes):
        for name, (r, prec) in models.items():
            path = ir(r, prec)
            with runtime_for(path, "openvino", 2, "f32") as rt:
                if x is None:
                    import numpy as np

                    x = np.random.default_rng(0).standard_normal([1, *rt.input_shape[1:]]).astype("float32")
                res = bench_runtime(rt, x, name, prec, 2, 0.0, 30, args.iters)
            lat[name].append(res.p50_ms)
    fp32_top1 = ov(runs["ptq"], "fp32")["metric"]
    rows = []
    print(f"\n| model | test top-1 % (10k, OpenVINO) | vs FP32 | agreement with FP32 | OpenVINO p50 ms (median of "
          f"{args.passes}) | FPS | executed | IR MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (r, prec) in models.items():
        v = ov(r, prec)
        path = ir(r, prec)
        mb = (path.stat().st_size + path.with_suffix(".bin").stat().st_size) / 1e6
        p50 = statistics.median(lat[name])
        row = {"model": name, "test_top1": v["metric"], "delta": v["metric"] - fp32_top1,
               "agreement": v["top1_agreement"], "p50_ms": p50, "p50_passes": lat[name], "fps": 1000 / p50,
               "executed": v["executed_precision"], "ir_mb": mb, "onnx": None}
        if prec == "int8":
            onnx_v = next(m for m in r.results["verify"].to_json()["models"] if m["model"] == "onnx-int8")
            row["onnx"] = {"test_top1": onnx_v["metric"], "agreement": onnx_v["top1_agreement"]}
            row["quantize"] = {k: v for k, v in r.results["quantize"].to_json()[0].items() if k not in ("files",)}
        rows.append(row)
        print(f"| {name} | {v['metric']:.2f} | {row['delta']:+.2f} | {v['top1_agreement']:.4f} | {p50:.2f} | "
              f"{1000 / p50:.0f} | {v['executed_precision']} | {mb:.2f} |")
    print(f"\nwall: ptq run {walls['ptq']:.0f} s, qad run {walls['qad']:.0f} s (both after the shared FP32 student)")
    return rows


if __name__ == "__main__":
    main()
