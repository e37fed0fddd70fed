"""Latency of a runtime on this machine: warm-up, then timed calls (wall clock, perf_counter), one at a time."""

from __future__ import annotations

import time

import numpy as np

from edgekd.artifacts import LatencyResult
from edgekd.progress import track


def time_calls(fn, sample: np.ndarray, warmup: int, iters: int, desc: str,
               seconds: float | None = None) -> np.ndarray:
    """Per-call latencies in ms of ``fn(sample)`` after ``warmup`` untimed calls: ``iters`` calls, or as many as
    fit in ``seconds`` (at least one) when it is given."""
    for _ in range(warmup):
        fn(sample)
    if seconds is not None:
        times, end = [], time.perf_counter() + seconds
        while not times or time.perf_counter() < end:
            t0 = time.perf_counter()
            fn(sample)
            times.append((time.perf_counter() - t0) * 1e3)
        return np.asarray(times)
    times = np.empty(iters)
    for i in track(range(iters), iters, desc):
        t0 = time.perf_counter()
        fn(sample)
        times[i] = (time.perf_counter() - t0) * 1e3
    return times


def summarize(times_ms: np.ndarray, model: str, runtime: str, precision: str, executed: str, threads: int,
              size_mb: float, batch: int = 1, **extra) -> LatencyResult:
    """Percentiles of per-call latencies; FPS is images per second of one request at a time."""
    times_ms = np.asarray(times_ms, dtype=float)
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    return LatencyResult(model=model, runtime=runtime, precision=precision, executed_precision=executed,
                         threads=threads, iterations=len(times_ms), p50_ms=float(p50), p90_ms=float(p90),
                         p99_ms=float(p99), mean_ms=float(times_ms.mean()),
                         fps=float(batch * 1e3 / times_ms.mean()), size_mb=size_mb, batch=batch,
                         latencies_ms=tuple(round(float(t), 4) for t in times_ms), **extra)


def bench_runtime(rt, sample: np.ndarray, model: str, precision: str, threads: int, size_mb: float,
                  warmup: int = 20, iters: int = 200) -> LatencyResult:
    """Latency of an opened :class:`~edgekd.runtimes.base.Runtime` at the sample's batch size."""
    times = time_calls(rt, sample, warmup, iters, f"bench {model} ({rt.name})")
    return summarize(times, model, rt.name, precision, rt.executed_precision, threads, size_mb, len(sample),
                     warmup=warmup)


def bench_torch(model, sample: np.ndarray, name: str, threads: int, size_mb: float, warmup: int = 10,
                iters: int = 100) -> LatencyResult:
    """Eager PyTorch latency (the reference the exported models are compared with)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.from_numpy(sample)
    try:
        with torch.inference_mode():
            times = time_calls(model, x, warmup, iters, f"bench {name} (torch)")
    finally:
        torch.set_num_threads(prev)
    return summarize(times, name, "torch", "fp32", "fp32", threads, size_mb, len(sample), warmup=warmup)
