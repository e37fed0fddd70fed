"""The results table (printed and written to report.md)."""

from __future__ import annotations

from typing import Any


def results_rows(results: dict[str, Any]) -> list[dict]:
    """Join verify accuracies with bench latencies: one row per model x runtime."""
    ver = results["verify"]
    metric = ver.get("metric", "top1")  # top1 (classify) or miou (segment)
    acc = {m["model"]: m["metric"] for m in ver["models"]}
    passed = {m["model"]: m["passed"] for m in ver["models"]}
    rows = []
    for b in results["bench"]:
        key = b["model"].split("@")[0]
        if key.startswith("teacher"):
            name, top1, ok = f"teacher {results['teacher']['arch']}", ver[f"teacher_{metric}"], None
        elif key == "student-torch":
            name, top1, ok = f"student {results['distill']['arch']}", ver[f"student_{metric}"], None
        else:
            name, top1, ok = f"student {results['distill']['arch']}", acc.get(key), passed.get(key)
        runtime = b["runtime"] + (f" on {b['model'].split('@')[1]} (estimated)" if b.get("estimated") else "")
        rows.append({"model": name, "format": key, "runtime": runtime, "precision": b["precision"],
                     "executed": b["executed_precision"], "top1": top1, "metric": metric, "p50_ms": b["p50_ms"],
                     "p90_ms": b["p90_ms"], "p99_ms": b["p99_ms"], "fps": b["fps"], "size_mb": b["size_mb"],
                     "parity": {None: "reference", True: "pass", False: "FAIL"}[ok]})
    return rows


HEADER = ["model", "runtime", "precision (executed)", "top-1 %", "p50 ms", "p90 ms", "p99 ms", "FPS", "MB",
          "parity"]


def row_cells(row: dict) -> list[str]:
    top1 = "-" if row["top1"] is None else f"{row['top1']:.2f}"
    return [row["model"], row["runtime"], f"{row['precision']} ({row['executed']})", top1, f"{row['p50_ms']:.2f}",
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
