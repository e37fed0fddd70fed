"""What does the teacher cost per epoch? CIFAR-10 recipe (models/cifar10-resnet56.yaml), side by side in one
process: labels only, KD with the ONNX teacher run online on every batch (fully random augmentation), and KD
with teacher logits cached for 8 fixed views. Each runs ``--epochs`` epochs; the table shows the median
training seconds per epoch (validation excluded) and the one-off caching cost.

    .venv/bin/python benchmarks/kd_epoch_cost.py [--epochs 2] [--rounds 2]

Prints a Markdown table and writes benchmarks/results/kd_epoch_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = {"ce": ("labels only (CE)", {"loss": "ce", "teacher_cache_views": 0}),
         "online": ("kd, teacher online every batch", {"loss": "kd", "teacher_cache_views": 0}),
         "cached": ("kd, teacher cached for 8 views", {"loss": "kd", "teacher_cache_views": 8})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="repeat the three modes, interleaved")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-epoch-cost")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    from edgekd._deps import tool_versions
    from edgekd.bench.system import system_info
    from edgekd.config import load_recipe, make_config
    from edgekd.pipeline import run
    from edgekd.targets import load_target

    os.chdir(ROOT)
    rows = []
    for rnd in range(args.rounds):
        for mode, (_, over) in MODES.items():
            work = args.work / f"{mode}-{rnd}"
            shutil.rmtree(work, ignore_errors=True)
            cfg = make_config(None, **{**load_recipe(ROOT / "models" / "cifar10-resnet56.yaml"), **over,
                                       "epochs": args.epochs, "name": f"{mode}-{rnd}"})
            run(cfg, load_target("cpu-x86"), work, until="teacher")
            t0 = time.time()
            r = run(cfg, load_target("cpu-x86"), work, until="distill")
            total = time.time() - t0
            card = json.loads(Path(r.results["distill"].path).with_suffix(".json").read_text())
            epochs = [h["train_seconds"] for h in card["stages"][-1]["history"]]
            rows.append({"mode": mode, "round": rnd, "epoch_s": epochs, "distill_stage_s": total})
    print(f"\n| run | s/epoch (median of {args.rounds} x {args.epochs}) | ratio to CE | distill stage s (median) |")
    print("|---|---|---|---|")
    ce = statistics.median(e for r in rows if r["mode"] == "ce" for e in r["epoch_s"])
    for mode, (name, _) in MODES.items():
        ep = statistics.median(e for r in rows if r["mode"] == mode for e in r["epoch_s"])
        st = statistics.median(r["distill_stage_s"] for r in rows if r["mode"] == mode)
        print(f"| {name} | {ep:.1f} | {ep / ce:.2f} | {st:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "kd_epoch_cost.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                               "versions": tool_versions(), "machine": system_info()}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
