"""Throughput mode: several inference requests in flight at once.

OpenVINO: an ``AsyncInferQueue`` of N requests on a model compiled with the THROUGHPUT hint and NUM_STREAMS
streams (each request's own latency comes from ``InferRequest.latency``). ONNX Runtime has no async API for
the CPU provider: N Python threads call ``run`` on one session concurrently (ORT releases the GIL and its
``run`` is thread-safe), each with ``threads // streams`` intra-op threads. Torch is latency-only here.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from edgekd._deps import require
from edgekd.errors import ConfigError


def run_throughput(rt, x: np.ndarray, requests: int, streams: int, warmup: int, iters: int,
                   seconds: float | None) -> tuple[np.ndarray, int, float, int]:
    """Per-request latencies (ms), completed requests, elapsed seconds and the number of requests used."""
    if rt.name == "openvino":
        return _openvino(rt, x, requests, warmup, iters, seconds)
    if rt.name == "onnxruntime":
        return _threads(rt, x, requests or streams, warmup, iters, seconds)
    raise ConfigError(f"{rt.name} is benchmarked in latency mode only; drop --mode throughput")


def _openvino(rt, x, requests, warmup, iters, seconds):
    ov = require("openvino")
    rt.for_batch(len(x))  # an int8 model is compiled per batch size (see runtimes/openvino.py)
    n = requests or int(rt.prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(rt.compiled, n)
    lat: list[float] = []
    queue.set_callback(lambda req, _: lat.append(req.latency))
    feeds = {rt.input_name: x}
    for _ in range(max(warmup, n)):
        queue.start_async(feeds)
    queue.wait_all()
    lat.clear()
    t0 = time.perf_counter()
    end = None if seconds is None else t0 + seconds
    count = 0
    # start_async blocks until a request is idle, so this loop keeps exactly n requests busy
    while (count < iters) if end is None else (count == 0 or time.perf_counter() < end):
        queue.start_async(feeds)
        count += 1
    queue.wait_all()
    return np.asarray(lat), count, time.perf_counter() - t0, n


def _threads(rt, x, n, warmup, iters, seconds):
    for _ in range(warmup):
        rt(x)
    lock = threading.Lock()
    lat: list[float] = []
    state = {"left": iters}
    end = None if seconds is None else time.perf_counter() + seconds

    def worker() -> None:
        while True:
            with lock:
                if end is None:
                    if state["left"] <= 0:
                        return
                    state["left"] -= 1
                elif time.perf_counter() >= end and lat:
                    return
            t = time.perf_counter()
            rt(x)
            with lock:
                lat.append((time.perf_counter() - t) * 1e3)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return np.asarray(lat), len(lat), time.perf_counter() - t0, n
