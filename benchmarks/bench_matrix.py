"""The issue-7 benchmark matrix: torch / ONNX Runtime / OpenVINO x FP32 / INT8 for four models, timed by
edgekd's own bench (`edgekd.bench.measure.bench_model`), with OpenVINO's `benchmark_app` run beside every
OpenVINO row under the same settings (latency, 2 threads, 1 stream, 1 request, sync API, f32 pinned, same
duration), passes alternating so that load from other users hits both alike.

    nice -n 0 .venv/bin/python benchmarks/bench_matrix.py --passes 3 --seconds 3

Random weights (latency does not depend on them); int8 is NNCF PTQ calibrated on random inputs. Prints the
Markdown tables (medians over passes, min-max range) and writes benchmarks/results/bench_matrix.json.
`--only-openvino` runs just the edgekd-vs-benchmark_app agreement check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {"mobilevit_xxs": 256, "mobilevit_s": 256, "efficientnet_b0": 224, "unet_mnv3s": 256}


def build(name: str):
    """A timm classifier, or a small U-Net: timm MobileNetV3-Small features_only encoder + a plain decoder."""
    import timm
    import torch
    from torch import nn

    if name != "unet_mnv3s":
        return timm.create_model(name, num_classes=1000)

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))

    class UNet(nn.Module):
        def __init__(self, classes: int = 2) -> None:
            super().__init__()
            self.enc = timm.create_model("mobilenetv3_small_100", features_only=True, pretrained=False)
            ch = self.enc.feature_info.channels()  # strides 2, 4, 8, 16, 32
            self.ups = nn.ModuleList()
            c = ch[-1]
            for skip, out in zip(reversed(ch[:-1]), (96, 48, 32, 16), strict=True):
                self.ups.append(block(c + skip, out))
                c = out
            self.head = nn.Sequential(block(c, 16), nn.Conv2d(16, classes, 1))

        def forward(self, x):
            feats = self.enc(x)
            y = feats[-1]
            for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
                y = nn.functional.interpolate(y, size=skip.shape[-2:], mode="nearest")
                y = up(torch.cat([y, skip], 1))
            return self.head(nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest"))

    return UNet()


def prepare(name: str, size: int, work: Path, calib: int) -> dict:
    """Checkpoint-free torch model + static-shape FP32 ONNX/IR and NNCF int8 of both (cached in ``work``)."""
    import torch

    from edgekd.artifacts import ExportedModel
    from edgekd.export.catalog import get_exporter
    from edgekd.export.onnx import export_torch
    from edgekd.quantize.ptq import quantize
    from edgekd.quantize.spec import QuantSpec, is_transformer

    torch.manual_seed(0)
    model = build(name).eval()
    d = work / name
    files = {"onnx-fp32": d / "m-fp32.onnx", "openvino-fp32": d / "m-fp32.xml", "onnx-int8": d / "m-int8.onnx",
             "openvino-int8": d / "m-int8.xml"}
    if not all(f.is_file() for f in files.values()):
        t = time.time()
        onnx_path = export_torch(model, torch.zeros(1, 3, size, size), files["onnx-fp32"], {}, dynamic_batch=False)
        fp32 = [ExportedModel("onnx", "fp32", str(onnx_path), (str(onnx_path),)),
                get_exporter("openvino").export(onnx_path, d, "m-fp32")]
        x = np.random.default_rng(0).standard_normal((calib, 3, size, size)).astype(np.float32)
        for m in fp32:
            quantize(m, x, d, "m-int8", QuantSpec(transformer=is_transformer(name)))
        print(f"prepared {name} in {time.time() - t:.0f} s", file=sys.stderr)
    return {"torch": model, **{k: v for k, v in files.items()}}


def benchmark_app(xml: Path, size: int, threads: int, seconds: float, out: Path) -> dict:
    """benchmark_app with edgekd's latency settings; numbers from its JSON report, not its stdout."""
    exe = Path(sys.executable).with_name("benchmark_app")
    rep = out / "ba"
    shutil.rmtree(rep, ignore_errors=True)
    rep.mkdir(parents=True)
    cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", "none", "-nthreads", str(threads), "-nstreams", "1",
           "-nireq", "1", "-api", "sync", "-infer_precision", "f32", "-t", str(seconds),
           "-shape", f"[1,3,{size},{size}]", "-report_type", "no_counters", "-report_folder", str(rep),
           "-json_stats"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark_app failed: {res.stdout[-500:]} {res.stderr[-500:]}")
    r = json.loads((rep / "benchmark_report.json").read_text())["execution_results"]
    return {"p50_ms": float(r["latency (ms)"]), "mean_ms": float(r["avg latency"]),
            "fps": float(r["throughput"]), "iterations": int(r["total number of iterations"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3, help="per measurement (benchmark_app -t takes whole seconds)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--only-openvino", action="store_true", help="edgekd vs benchmark_app only")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgekd-bench-matrix")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_matrix.json")
    args = ap.parse_args()

    from edgekd.bench.measure import BenchOptions, bench_model
    from edgekd.bench.system import system_info

    opts = BenchOptions(threads=args.threads, seconds=args.seconds, warmup=10, precision_hint="f32")
    names = args.models.split(",")
    prepared = {n: prepare(n, MODELS[n], args.work, args.calib) for n in names}
    configs = [("openvino", "fp32"), ("openvino", "int8")]
    if not args.only_openvino:
        configs = [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")] + configs
    runs: dict = {}
    t_start = time.time()
    for p in range(args.passes):
        for n in names:
            for rt, prec in configs:
                key = (n, rt, prec)
                if rt == "torch":
                    res = _torch(prepared[n]["torch"], MODELS[n], n, opts)
                else:
                    f = prepared[n][f"{'onnx' if rt == 'onnxruntime' else 'openvino'}-{prec}"]
                    res = bench_model(f, rt, opts, f"{n} {prec}", prec)
                runs.setdefault(key, {"edgekd": [], "benchmark_app": []})["edgekd"].append(res)
                if rt == "openvino":
                    ba = benchmark_app(prepared[n][f"openvino-{prec}"], MODELS[n], args.threads, args.seconds,
                                       args.work)
                    runs[key]["benchmark_app"].append(ba)
        print(f"pass {p + 1}/{args.passes} done at {time.time() - t_start:.0f} s", file=sys.stderr)
    rows = [_row(n, rt, prec, MODELS[n], r) for (n, rt, prec), r in runs.items()]
    _print(rows, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "system": system_info(), "wall_s": round(time.time() - t_start, 1),
                                    "machine_shared": True}, indent=2))
    print(f"\nwritten {args.out}")


def _torch(model, size: int, name: str, opts):
    """Eager torch in the same timing loop as the runtimes (fresh load is not needed: nothing to compile)."""
    import torch

    from edgekd.bench.latency import summarize, time_calls
    from edgekd.bench.system import peak_rss_mb

    prev = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32))
    try:
        with torch.inference_mode():
            times = time_calls(model, x, opts.warmup, opts.iters, name, opts.seconds)
    finally:
        torch.set_num_threads(prev)
    return summarize(times, f"{name} fp32", "torch", "fp32", "fp32", opts.threads, 0.0, peak_rss_mb=peak_rss_mb())


def _row(n, rt, prec, size, r) -> dict:
    ed = r["edgekd"]
    p50 = [x.p50_ms for x in ed]
    row = {"model": n, "input": size, "runtime": rt, "precision": prec, "executed": ed[0].executed_precision,
           "p50_ms": float(np.median(p50)), "p50_min": min(p50), "p50_max": max(p50),
           "p90_ms": float(np.median([x.p90_ms for x in ed])), "p99_ms": float(np.median([x.p99_ms for x in ed])),
           "fps": float(np.median([x.fps for x in ed])), "size_mb": ed[0].size_mb,
           "peak_rss_mb": float(np.median([x.peak_rss_mb or 0 for x in ed])), "passes": len(ed),
           "p50_per_pass": p50}
    if r["benchmark_app"]:
        ba = [x["p50_ms"] for x in r["benchmark_app"]]
        ratios = [a / b for a, b in zip(p50, ba, strict=True)]
        row.update(ba_p50_ms=float(np.median(ba)), ba_p50_min=min(ba), ba_p50_max=max(ba),
                   ba_fps=float(np.median([x["fps"] for x in r["benchmark_app"]])), ba_p50_per_pass=ba,
                   ratio_median=float(np.median(ratios)), ratio_per_pass=ratios)
    return row


def _print(rows: list[dict], args) -> None:
    print(f"\nbatch 1, {args.threads} threads, 1 stream, {args.seconds:g} s per measurement, median over "
          f"{args.passes} alternating passes (min-max in brackets); random weights; shared 2-core machine\n")
    print("| model (px) | runtime | precision (executed) | p50 ms | p90 ms | p99 ms | FPS | peak RSS MB | MB | "
          "benchmark_app p50 ms | edgekd / benchmark_app |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ba = (f"{r['ba_p50_ms']:.2f} [{r['ba_p50_min']:.2f}-{r['ba_p50_max']:.2f}] | {r['ratio_median']:.2f}"
              if "ba_p50_ms" in r else "- | -")
        size = f"{r['size_mb']:.2f}" if r["runtime"] != "torch" else "-"
        print(f"| {r['model']} ({r['input']}) | {r['runtime']} | {r['precision']} ({r['executed']}) | "
              f"{r['p50_ms']:.2f} [{r['p50_min']:.2f}-{r['p50_max']:.2f}] | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['fps']:.1f} | {r['peak_rss_mb']:.0f} | {size} | {ba} |")
    ratios = [r["ratio_median"] for r in rows if "ratio_median" in r]
    if ratios:
        within = sum(abs(x - 1) <= 0.10 for x in ratios)
        print(f"\nedgekd vs benchmark_app: {within}/{len(ratios)} OpenVINO rows within 10 % "
              f"(ratios {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
