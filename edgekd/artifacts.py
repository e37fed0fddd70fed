"""Frozen records passed between pipeline stages; each round-trips through JSON for the stage cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ExportedModel:
    """One exported model file (plus its side files, e.g. the IR's .bin)."""

    format: str  # onnx | openvino
    precision: str  # fp32 | int8
    path: str
    files: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.format}-{self.precision}"

    def size_mb(self) -> float:
        return sum(Path(f).stat().st_size for f in self.files) / 1e6


@dataclass(frozen=True)
class ParityResult:
    """An exported model compared with its PyTorch reference on held-out samples."""

    model: str
    runtime: str
    precision: str
    executed_precision: str
    samples: int
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    metric: float
    reference_metric: float
    metric_delta: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class LatencyResult:
    """Batch-1 latency of one model in one runtime: measured on this machine, or, for a device that is not
    attached, ``estimated`` (the method, e.g. "roofline on jetson-orin-nano"; never presented as measured)."""

    model: str
    runtime: str
    precision: str
    executed_precision: str
    threads: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    fps: float
    size_mb: float
    estimated: str | None = None
    # added for `edgekd bench` (defaults keep older stage caches and constructors valid)
    batch: int = 1
    mode: str = "latency"  # latency: one request at a time | throughput: several requests in flight
    streams: int = 1
    requests: int = 1
    warmup: int = 0
    duration_s: float = 0.0
    throughput_fps: float | None = None  # images/s over the timed window (throughput mode)
    peak_rss_mb: float | None = None  # process RSS high-water mark over load + run
    latencies_ms: tuple[float, ...] = ()  # every timed call, for distribution plots


def to_json(obj: Any) -> Any:
    """Dataclasses (possibly nested in lists/dicts) -> plain JSON values."""
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: to_json(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_json(cls: type, d: dict) -> Any:
    kw = dict(d)
    if cls is ExportedModel:
        kw["files"] = tuple(kw["files"])
    return cls(**kw)


__all__ = ["ExportedModel", "ParityResult", "LatencyResult", "to_json", "from_json", "asdict"]
