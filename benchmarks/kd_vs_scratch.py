"""Does the teacher help? The demo's student trained with Hinton KD vs with labels only (same seed, data,
epochs and batch order), through the pipeline's own teacher and distill stages.

    .venv/bin/python benchmarks/kd_vs_scratch.py [--data builtin:shapes10] [--epochs 8] [--seeds 0]

Prints a Markdown table and writes benchmarks/results/kd_vs_scratch.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="builtin:shapes10")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-kd"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    from edgekd._deps import tool_versions
    from edgekd.bench.system import system_info
    from edgekd.config import make_config
    from edgekd.pipeline import run
    from edgekd.targets import load_target

    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for loss in ("ce", "kd"):
            cfg = make_config(None, data=args.data, epochs=args.epochs, loss=loss, seed=seed,
                              name=f"{loss}-s{seed}", student_weights="none", teacher_arch_weights="none")
            t0 = time.time()
            r = run(cfg, load_target("cpu-x86"), args.work / f"{loss}-s{seed}", until="distill")
            d = r.results["distill"]
            rows.append({"loss": loss, "seed": seed, "test_top1": d.score, "best_val_top1": d.get("best_val"),
                         "teacher_test_top1": r.results["teacher"].score, "seconds": time.time() - t0})
    print(f"\n{args.data}: student {cfg.student}, {args.epochs} epochs, teacher {rows[0]['teacher_test_top1']:.2f}%\n")
    print("| student loss | seeds | test top-1 % (mean) | per seed | wall s (mean) |")
    print("|---|---|---|---|---|")
    for loss in ("ce", "kd"):
        rs = [r for r in rows if r["loss"] == loss]
        name = "labels only (CE)" if loss == "ce" else "Hinton KD (T=4, alpha=0.9)"
        per_seed = ", ".join(f"{r['test_top1']:.2f}" for r in rs)
        print(f"| {name} | {len(rs)} | {statistics.mean(r['test_top1'] for r in rs):.2f} | {per_seed} | "
              f"{statistics.mean(r['seconds'] for r in rs):.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "kd_vs_scratch.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                               "versions": tool_versions(), "machine": system_info()}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
