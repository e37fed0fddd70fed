"""Batch-1 CPU latency of one timm model through edgekd's own export -> PTQ -> runtime path, side by side
with eager PyTorch, so the numbers compare with ../shared/REFERENCE.md section 1 (random weights).

    .venv/bin/python benchmarks/runtime_latency.py --model mobilevit_xxs --size 256 --passes 3

Prints a Markdown table (median p50 over passes, and the range) and writes benchmarks/results/<model>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilevit_xxs")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    import torch

    from edgekd._deps import tool_versions
    from edgekd.bench.latency import bench_runtime, bench_torch
    from edgekd.export.catalog import get_exporter
    from edgekd.export.onnx import export_torch
    from edgekd.formats import runtime_of
    from edgekd.models.factory import create_timm
    from edgekd.quantize.ptq import quantize
    from edgekd.quantize.spec import QuantSpec, is_transformer
    from edgekd.runtimes import runtime_for

    torch.manual_seed(0)
    model = create_timm(args.model, 1000).eval()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((args.calib, 3, args.size, args.size)).astype(np.float32)
    x = calib[:1]
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-bench-"))
    onnx_path = export_torch(model, torch.zeros(1, 3, args.size, args.size), tmp / "m-fp32.onnx", {})
    fp32 = [get_exporter(f).export(onnx_path, tmp, "m-fp32") for f in ("onnx", "openvino")]
    int8 = [quantize(m, calib, tmp, "m-int8", QuantSpec(transformer=is_transformer(args.model))) for m in fp32]
    runs: dict[str, list] = {}
    for _ in range(args.passes):
        r = bench_torch(model, x, "torch-fp32", args.threads, 0.0, 10, max(20, args.iters // 4))
        runs.setdefault("torch eager FP32", []).append(r)
        for m in fp32 + int8:
            with runtime_for(m.path, runtime_of(m.format), args.threads, "f32") as rt:
                label = f"{rt.name} {m.precision.upper()} ({rt.executed_precision})"
                runs.setdefault(label, []).append(bench_runtime(rt, x, m.key, m.precision, args.threads,
                                                                m.size_mb(), 20, args.iters))
    rows = []
    for label, rs in runs.items():
        p50s = [r.p50_ms for r in rs]
        rows.append({"config": label, "p50_median_ms": float(np.median(p50s)), "p50_min_ms": min(p50s),
                     "p50_max_ms": max(p50s), "fps_median": float(np.median([r.fps for r in rs])),
                     "size_mb": rs[0].size_mb, "passes": len(rs)})
    print(f"\n{args.model} ({args.size}px), batch 1, {args.threads} threads, {args.iters} iterations x "
          f"{args.passes} passes (random weights)\n")
    print("| runtime / precision (executed) | p50 ms, median of passes | range | FPS | MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['p50_median_ms']:.2f} | {r['p50_min_ms']:.2f}-{r['p50_max_ms']:.2f} | "
              f"{r['fps_median']:.1f} | {r['size_mb']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"runtime_latency_{args.model}_{args.size}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                               "versions": tool_versions()}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
