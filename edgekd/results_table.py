"""The results table (printed and written to report.md)."""

from __future__ import annotations

from typing import Any


def results_rows(results: dict[str, Any]) -> list[dict]:
    """Join verify scores with bench latencies: one row per model x runtime. ``score`` is in the run's metric
    (``metric``: top1 for classification, miou for segmentation)."""
    ver = results["verify"]
    passed = {m.model: m.passed for m in ver.models}
    student, teacher = results["distill"].arch, results["teacher"].arch
    rows = []
    for row in results["bench"]:
        b = row.latency
        key = b.model.split("@")[0]
        if key.startswith("teacher"):
            name, score, ok = f"teacher {teacher}", ver.teacher, None
        elif key == "student-torch":
            name, score, ok = f"student {student}", ver.student, None
        else:
            name, score, ok = f"student {student}", ver.score_of(key), passed.get(key)
        runtime = b.runtime + (f" on {b.model.split('@')[1]} (estimated)" if b.estimated else "")
        rows.append({"model": name, "format": key, "runtime": runtime, "precision": b.precision,
                     "executed": b.executed_precision, "score": score, "metric": ver.metric, "p50_ms": b.p50_ms,
                     "p90_ms": b.p90_ms, "p99_ms": b.p99_ms, "fps": b.fps, "size_mb": b.size_mb,
                     "parity": {None: "reference", True: "pass", False: "FAIL"}[ok]})
    return rows


HEADER = ["model", "runtime", "precision (executed)", "top-1 %", "p50 ms", "p90 ms", "p99 ms", "FPS", "MB",
          "parity"]


def row_cells(row: dict) -> list[str]:
    score = "-" if row["score"] is None else f"{row['score']:.2f}"
    return [row["model"], row["runtime"], f"{row['precision']} ({row['executed']})", score, f"{row['p50_ms']:.2f}",
            f"{row['p90_ms']:.2f}", f"{row['p99_ms']:.2f}", f"{row['fps']:.1f}", f"{row['size_mb']:.2f}",
            row["parity"]]


def header(rows: list[dict]) -> list[str]:
    """The column names; the metric column says mIoU for segmentation rows."""
    seg = bool(rows) and rows[0].get("metric") == "miou"
    return [("mIoU %" if seg and h == "top-1 %" else h) for h in HEADER]


def markdown_table(rows: list[dict]) -> str:
    head = header(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header(rows):
        table.add_column(h, justify="left" if h in ("model", "runtime", "precision (executed)") else "right")
    for r in rows:
        table.add_row(*row_cells(r))
    import sys

    # piped output (CI logs, `| tee`) would otherwise be wrapped at 80 columns
    Console(width=None if sys.stdout.isatty() else 180).print(table)
