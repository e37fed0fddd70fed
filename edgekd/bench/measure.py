"""`edgekd bench`: one model file, an export folder or a bundle, each model in its runtime, with the options
that change the numbers (batch, threads, streams, mode, pinning) recorded beside them."""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekd.artifacts import LatencyResult
from edgekd.errors import ConfigError

MODES = ("latency", "throughput")


@dataclass(frozen=True)
class BenchOptions:
    """How to run. ``seconds`` (when given) replaces ``iters``; ``requests`` 0 lets the runtime choose."""

    batch: int = 1
    threads: int = 2
    streams: int = 1
    mode: str = "latency"
    requests: int = 0
    warmup: int = 20
    iters: int = 200
    seconds: float | None = None
    pin: bool = False
    precision_hint: str | None = "f32"
    image_size: int | None = None

    def check(self) -> BenchOptions:
        if self.mode not in MODES:
            raise ConfigError(f"unknown --mode {self.mode!r}; expected latency or throughput")
        if min(self.batch, self.threads, self.iters) < 1 or self.streams < 0 or self.requests < 0:
            raise ConfigError("--batch-size, --threads and --iters must be positive; --streams and --requests "
                              "non-negative")
        if self.warmup < 0 or (self.seconds is not None and self.seconds <= 0):
            raise ConfigError("--warmup must be non-negative and --seconds positive")
        if self.mode == "latency" and self.requests > 1:
            raise ConfigError("--requests > 1 needs --mode throughput (latency mode runs one request at a time)")
        if self.precision_hint not in (None, "f32", "bf16", "f16"):
            raise ConfigError(f"--precision-hint {self.precision_hint!r}: expected f32, bf16, f16 or none")
        return self


def file_size_mb(path: Path) -> float:
    """The model and its side files (OpenVINO's .bin)."""
    from edgekd.formats import files_of, format_of_path

    fmt = format_of_path(path)
    files = [Path(p) for p in files_of(fmt.name, path)] if fmt is not None else [path]
    return sum(p.stat().st_size for p in files if p.is_file()) / 1e6


def input_shape(rt, batch: int, image_size: int | None) -> list[int]:
    """``batch`` and the model's own static dims; dynamic spatial dims need --image-size."""
    shape = []
    for i, d in enumerate(rt.input_shape):
        if i == 0:
            if isinstance(d, int) and d > 0 and d != batch:
                raise ConfigError(f"the model's batch size is fixed at {d}; --batch-size {batch} cannot run")
            shape.append(batch)
        elif isinstance(d, int) and d > 0:
            shape.append(d)
        elif image_size is None:
            raise ConfigError("the model's input size is dynamic; pass --image-size")
        else:
            shape.append(image_size)
    return shape


def bench_model(path: Path, runtime: str | None = None, opts: BenchOptions | None = None, label: str | None = None,
                precision: str | None = None) -> LatencyResult:
    """Load ``path`` in ``runtime`` and time it; peak RSS covers the load and the run."""
    from edgekd.bench.latency import summarize, time_calls
    from edgekd.bench.system import peak_rss_mb, pinned, reset_peak_rss
    from edgekd.bench.throughput import run_throughput
    from edgekd.formats import runtime_of_path
    from edgekd.runtimes import runtime_for

    opts = (opts or BenchOptions()).check()
    path = Path(path)
    name = runtime or runtime_of_path(path)
    if opts.mode == "throughput" and name == "torch":
        raise ConfigError("torch is benchmarked in latency mode only; drop --mode throughput")
    threads = opts.threads
    backend: dict = {}
    if name == "openvino":
        backend = {"mode": opts.mode, "streams": opts.streams or None, "pin": True if opts.pin else None}
    elif name == "onnxruntime" and opts.mode == "throughput":
        threads = max(1, opts.threads // max(1, opts.streams))
    with pinned(opts.threads, opts.pin):
        reset_peak_rss()
        with runtime_for(path, name, threads, opts.precision_hint, **backend) as rt:
            x = np.random.default_rng(0).standard_normal(input_shape(rt, opts.batch, opts.image_size))
            x = x.astype(np.float32)
            executed = rt.executed_precision
            desc = f"bench {label or path.name} ({rt.name})"
            if opts.mode == "latency":
                times = time_calls(rt, x, opts.warmup, opts.iters, desc, opts.seconds)
                extra = {"duration_s": float(times.sum() / 1e3), "streams": _streams(rt, 1), "requests": 1}
            else:
                times, done, elapsed, n = run_throughput(rt, x, opts.requests, opts.streams, opts.warmup,
                                                         opts.iters, opts.seconds)
                extra = {"duration_s": elapsed, "throughput_fps": done * opts.batch / elapsed,
                         "streams": _streams(rt, opts.streams or 1), "requests": n}
            peak = peak_rss_mb()
    prec = precision or ("int8" if "int8" in executed else "fp32")
    return summarize(times, label or path.name, rt.name, prec, executed, opts.threads, file_size_mb(path),
                     opts.batch, mode=opts.mode, warmup=opts.warmup, peak_rss_mb=peak, **extra)


def _streams(rt, default: int) -> int:
    if rt.name == "openvino":
        try:
            return int(rt.prop("NUM_STREAMS"))
        except (TypeError, ValueError):
            return default
    return default


def models_in(path: Path, stack: ExitStack) -> list[tuple[Path, str | None, str | None]]:
    """(file, runtime, precision) for a model file, an export folder, or a bundle (folder or .tar.gz).

    A bundle's manifest names each model's runtime; TensorRT entries are timed as their ONNX file in ONNX
    Runtime only if asked explicitly, otherwise skipped by the caller (they run on the device).
    """
    from edgekd.bundle import MANIFEST, safe_extract, verify_bundle_dir
    from edgekd.formats import format_of_path

    if not path.exists():
        raise ConfigError(f"model file {path} does not exist")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgekd-bench-")))
        path = safe_extract(path, tmp)
    if path.is_file():
        return [(path, None, None)]
    if (path / MANIFEST).is_file():
        manifest = verify_bundle_dir(path)
        return [(path / m["file"], m["runtime"], m["precision"]) for m in manifest["models"]]
    # the formats bench times here (formats.py: not QONNX's reference executor, not TensorRT engines);
    # a checkpoint only with its card
    fmts = {p: format_of_path(p) for p in path.iterdir()}
    found = sorted(p for p, f in fmts.items() if f is not None and f.bench
                   and (f.name != "torch" or p.with_suffix(".json").is_file()))
    if not found:
        raise ConfigError(f"{path}: no .onnx, .xml or .safetensors (+ .json card) models, and no bundle manifest")
    return [(p, None, "int8" if "int8" in p.stem else None) for p in found]


def bench_path(path: Path, runtime: str | None, opts: BenchOptions) -> tuple[list[LatencyResult], list[str]]:
    """Every model under ``path``; returns the results and one note per model that was skipped."""
    results, notes = [], []
    with ExitStack() as stack:
        entries = models_in(path, stack)
        for f, rt_name, prec in entries:
            rt_name = runtime or rt_name
            if rt_name == "tensorrt" and runtime is None:
                notes.append(f"{f.name}: tensorrt model skipped (benchmark it on the device with trtexec)")
                continue
            o = opts
            if opts.mode == "throughput" and f.suffix == ".safetensors" and len(entries) > 1:
                notes.append(f"{f.name}: torch runs in latency mode only")
                o = replace(opts, mode="latency", requests=0)
            results.append(bench_model(f, rt_name, o, f.name, prec))
    return results, notes


def payload(results: list[LatencyResult], opts: BenchOptions, notes: list[str], **extra) -> dict:
    """The JSON document `--json` writes: options, results (with per-call latencies), machine and versions."""
    from dataclasses import asdict

    from edgekd.artifacts import to_json
    from edgekd.bench.system import system_info

    return {"options": asdict(opts), "results": to_json(results), "notes": notes, "system": system_info(),
            "peak_rss": "process RSS high-water mark (VmHWM) over load + run, reset before each model",
            **extra}


def write_json(doc: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
