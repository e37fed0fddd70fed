"""Does the loss sweep pay for itself? Hinton KD at the recipe's values against the same run with a validation
sweep, on a class-balanced CIFAR-10 subset (../shared/data/cifar10-jpg) with the pretrained ResNet-56 teacher
(ONNX), through the pipeline's own teacher and distill stages, side by side in one script.

Runs, same student, epochs, optimiser, data and seed (recipe models/cifar10-resnet56.yaml):
  (a) labels only (cross-entropy), for scale
  (b) Hinton KD at the recipe's T=4, alpha=0.9 (what a run without `sweep:` does)
  (g) as (b) with `sweep: {temperature: [1, 2, 4], alpha: [0.5, 0.9]}`: six short runs of `sweep_epochs` (a fifth
      of the epochs, at most 3) from the untrained student, the best validation top-1 wins, then the full run
  (h) as (g) with sweep runs of a third of the epochs (`sweep_epochs`): is a short run's pick the long run's?

    .venv/bin/python benchmarks/sweep_effect.py [--epochs 30] [--seeds 0,1] [--train 3000] [--runs a,b,g,h]

The validation split (1,000 images held out of the 10k train split) and the 10k test split are the full ones; only
training uses --train images. Prints a Markdown table and writes benchmarks/results/sweep_effect.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "models" / "cifar10-resnet56.yaml"
GRID = {"temperature": [1.0, 2.0, 4.0], "alpha": [0.5, 0.9]}
NAMES = {"a": "labels only (CE)", "b": "kd at the recipe's T=4, alpha=0.9",
         "g": "kd + sweep temperature=1,2,4 alpha=0.5,0.9",
         "h": "as (g), sweep runs of a third of the epochs"}


def overrides(run: str, epochs: int) -> dict:
    if run == "a":
        return {"loss": "ce", "teacher_cache_views": 0}
    if run == "b":
        return {"loss": "kd"}
    if run == "g":
        return {"loss": "kd", "sweep": GRID}
    return {"loss": "kd", "sweep": GRID, "sweep_epochs": max(1, epochs // 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    ap.add_argument("--train", type=int, default=3000, help="class-balanced training images")
    ap.add_argument("--runs", default="a,b,g")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-sweep")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    import os

    from edgekd._deps import tool_versions
    from edgekd.bench.system import row_machines, system_info
    from edgekd.config import load_recipe, make_config
    from edgekd.pipeline import run
    from edgekd.targets import load_target

    os.chdir(ROOT)  # the recipe's data paths are relative to the project root
    if not (ROOT.parent / "shared" / "data" / "cifar10-jpg").is_dir():
        raise SystemExit("../shared/data/cifar10-jpg is absent; this benchmark needs the shared data")
    out_json = args.out / "sweep_effect.json"
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    same = old.get("epochs") == args.epochs and old.get("train") == args.train
    rows = old.get("rows", []) if same else []  # rows of another setting are not comparable: start over
    for seed in [int(s) for s in args.seeds.split(",")]:
        for key in args.runs.split(","):
            name = f"{key}-s{seed}"
            values = {**load_recipe(RECIPE), "epochs": args.epochs, "seed": seed, "name": name,
                      "max_train_samples": args.train, **overrides(key, args.epochs)}
            cfg = make_config(None, **values)
            t0 = time.time()
            r = run(cfg, load_target("cpu-x86"), args.work / f"n{args.train}-e{args.epochs}" / name, until="distill")
            card = json.loads((Path(r.results["distill"].path).with_suffix(".json")).read_text())
            hist = card["stages"][-1]["history"]
            sweep = r.results["distill"].get("sweep") or card.get("sweep")
            rows = [x for x in rows if not (x["run"] == key and x["seed"] == seed)]
            rows.append({"run": key, "name": NAMES[key], "seed": seed, "epochs": args.epochs,
                         "test_top1": card["test_top1"], "val_top1": max(h["val_top1"] for h in hist),
                         "winner": sweep["winner"] if sweep else None,
                         "sweep": [{"params": s["params"], "val": s["val"]} for s in sweep["results"]] if sweep
                         else None,
                         "sweep_epochs": sweep["epochs"] if sweep else 0,
                         "s_per_epoch": statistics.median(h["train_seconds"] for h in hist),
                         "wall_s": time.time() - t0, "machine": system_info()})
            args.out.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps({"epochs": args.epochs, "train": args.train, "grid": GRID, "rows": rows,
                                            "versions": tool_versions(),
                                            **row_machines(rows, lambda x: f"{x['run']}-s{x['seed']}")}, indent=2))
    print("\n" + table_md(rows))
    print(f"\nwritten {out_json}")


def table_md(rows: list[dict]) -> str:
    """Top-1 per run and seed, the sweep's pick, and wall time against (b)'s on the same seed (one machine)."""
    from edgekd.bench.system import machine_key

    lines = ["| run | seeds | test top-1 % (mean) | per seed | vs (b) per seed | sweep's pick per seed | "
             "wall s (mean) | wall vs (b) |", "|---|---|---|---|---|---|---|---|"]
    by = {(r["run"], r["seed"]): r for r in rows}
    for key in "abgh":
        rs = sorted((r for r in rows if r["run"] == key), key=lambda r: r["seed"])
        if not rs:
            continue
        per_seed = ", ".join(f"{r['test_top1']:.2f}" for r in rs)
        base = [by.get(("b", r["seed"])) for r in rs]
        vs = ", ".join(f"{r['test_top1'] - b['test_top1']:+.2f}" if b else "-" for r, b in zip(rs, base, strict=True))
        picks = ", ".join(f"T={r['winner']['temperature']:g} a={r['winner']['alpha']:g}" for r in rs
                          if r.get("winner")) or "-"
        ratios = [r["wall_s"] / b["wall_s"] for r, b in zip(rs, base, strict=True)
                  if b and machine_key(r.get("machine")) == machine_key(b.get("machine"))]
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        lines.append(f"| ({key}) {NAMES[key]} | {len(rs)} | {statistics.mean(r['test_top1'] for r in rs):.2f} | "
                     f"{per_seed} | {vs if key != 'b' else '-'} | {picks} | "
                     f"{statistics.mean(r['wall_s'] for r in rs):.0f} | {ratio if key != 'b' else '1.00x'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
