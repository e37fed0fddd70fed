"""Markdown tables of bench results (the CLI prints them, `--md` writes them)."""

from __future__ import annotations

from edgekd.artifacts import LatencyResult

HEADER = ["model", "runtime", "precision (executed)", "mode", "batch", "threads/streams/requests", "p50 ms",
          "p90 ms", "p99 ms", "mean ms", "FPS", "peak RSS MB", "MB"]


def fps_of(r: LatencyResult) -> float:
    """Images per second: measured throughput in throughput mode, batch / mean latency in latency mode."""
    return r.throughput_fps if r.throughput_fps is not None else r.fps


def cells(r: LatencyResult) -> list[str]:
    est = " (estimated)" if r.estimated else ""
    rss = "-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}"
    return [r.model, r.runtime + est, f"{r.precision} ({r.executed_precision})", r.mode, str(r.batch),
            f"{r.threads}/{r.streams}/{r.requests}", f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}",
            f"{r.mean_ms:.2f}", f"{fps_of(r):.1f}", rss, f"{r.size_mb:.2f}"]


def markdown(results: list[LatencyResult], header: list[str] | None = None, extra: list[list[str]] | None = None,
             ) -> str:
    """One row per result; ``extra`` cells (one list per result) are appended after the standard ones."""
    head = HEADER + (header or [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(results):
        lines.append("| " + " | ".join(cells(r) + (extra[i] if extra else [])) + " |")
    return "\n".join(lines)
