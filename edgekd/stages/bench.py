"""The bench stage: batch-1 latency here, estimates for boards that are not attached, energy (estimated)."""

from __future__ import annotations

from pathlib import Path

from edgekd.artifacts import LatencyResult, to_json
from edgekd.progress import console
from edgekd.results import BenchResult, BenchRow
from edgekd.run_context import Run
from edgekd.stages.common import inputs as _inputs


def bench(r: Run) -> BenchResult:
    """Batch-1 latency on this machine: teacher and student in torch, every export in its runtime."""
    from edgekd.bench.latency import bench_runtime, bench_torch
    from edgekd.formats import timed_runtime
    from edgekd.models.factory import load_checkpoint
    from edgekd.runtimes import runtime_for

    x, _ = _inputs(r, "test", 1)
    th, cfg = r.target.threads, r.cfg
    out = []
    import torch

    from edgekd.distill.teachers import View, to_view

    t_card = r.results["teacher"].main  # the first (main) teacher, in its own view
    tx = to_view(torch.from_numpy(x), View.of(r.data.preprocess), View.from_dict(t_card["view"])).numpy()
    warm, iters = max(5, cfg.bench_warmup // 2), max(10, cfg.bench_iters // 2)
    if t_card["kind"] == "onnx":
        path = Path(t_card["path"])
        with runtime_for(path, "onnxruntime", th, None) as rt:
            res = bench_runtime(rt, tx, "teacher-onnxruntime", "fp32", th, path.stat().st_size / 1e6, warm, iters)
    else:
        path = Path(t_card["path"])
        model, _ = load_checkpoint(path)
        res = bench_torch(model, tx, "teacher-torch", th, path.stat().st_size / 1e6, warm, iters)
    out.append(res)
    path = Path(r.results["distill"].path)
    model, _ = load_checkpoint(path)
    out.append(bench_torch(model, x, "student-torch", th, path.stat().st_size / 1e6, warm, iters))
    for exp in r.results["export"] + r.results["quantize"]:
        runtime = timed_runtime(exp.format)
        if runtime is None:  # not timed here (QONNX: the dataflow estimate below; TensorRT: on the device)
            continue
        with runtime_for(exp.path, runtime, th, r.target.openvino_inference_precision) as rt:
            res = bench_runtime(rt, x, exp.key, exp.precision, th, exp.size_mb(), cfg.bench_warmup, cfg.bench_iters)
        out.append(res)
    if r.target.estimate is not None and r.target.fpga is None:  # an FPGA's rows: the dataflow below
        out += _estimates(r)
    if r.target.fpga is not None:
        out += _fpga_estimates(r)
    return BenchResult([BenchRow(lat, _energy(r, lat)) for lat in out])


def _energy(r: Run, row: LatencyResult) -> dict | None:
    """Energy per frame from the target's power model at the row's FPS: always labelled estimated (no meter is
    read in the pipeline; `edgekd.bench.energy.measure_energy` reads RAPL / NVML / Jetson rails where present)."""
    from edgekd.bench.energy import estimate_energy

    # a row measured here is the target only when the target is this kind of machine (a CPU)
    if r.target.power is None or not row.fps or not (row.estimated or r.target.device == "cpu"):
        return None
    how = row.estimated or "FPS measured on this machine"
    return to_json(estimate_energy(row.fps, r.target, row.model, how))


def _fpga_estimates(r: Run) -> list[LatencyResult]:
    """FINN-style dataflow FPS / latency of each QONNX model on the FPGA target (labelled estimated)."""
    from edgekd.bench.fpga import fpga_estimate

    out = []
    for exp in r.results["quantize"]:
        if exp.format != "qonnx":
            continue
        # the same graph as Q/DQ ONNX: ONNX's shape inference does not know QONNX's Quant op
        qdq = next(p for p in (Path(exp.path).with_name(n) for n in ("student-int8-qdq.onnx", "student-int8.onnx"))
                   if p.is_file())
        est = fpga_estimate(qdq, r.target)
        ms = est.latency_ms
        res = LatencyResult(f"{exp.key}@{r.target.name}", "finn", exp.precision, f"w{est.weight_bits}a"
                            f"{est.activation_bits}", 0, 0, ms, ms, ms, ms, est.fps, exp.size_mb(),
                            estimated=est.estimated)
        console.print(f"{res.model}: {est.fps:.0f} FPS, {est.frames_per_j:.1f} Frames/J, [yellow]{est.estimated}[/]")
        out.append(res)
    return out


def _estimates(r: Run) -> list[LatencyResult]:
    """Per-node latency estimate on the target device for each ONNX export (fp32 runs as fp16 in TensorRT)."""
    from edgekd.bench.estimate import estimate_latency

    fit = r.target.estimate.fit
    out = []
    for exp in r.results["export"] + r.results["quantize"]:
        if exp.format != "onnx":
            continue
        prec = exp.precision if exp.precision in fit else "fp16" if exp.precision == "fp32" and "fp16" in fit else None
        if prec is None:
            console.print(f"no estimate for {exp.key}@{r.target.name}: no parameters fitted at {exp.precision}")
            continue
        est = estimate_latency(exp.path, r.target, prec)
        ms = est.latency_ms
        res = LatencyResult(f"{exp.key}@{r.target.name}", r.target.runtimes[0], exp.precision, prec, 0, 0, ms, ms, ms,
                            ms, 1000 / ms, exp.size_mb(), estimated=est.method)
        console.print(f"estimated {res.model}: {ms:.2f} ms ({1000 / ms:.0f} FPS) at {prec} [yellow]estimated[/]: "
                      f"per-node roofline fitted to published figures, not measured")
        out.append(res)
    return out
