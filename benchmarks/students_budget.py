"""Pick the student for the budget (issue 21): the student `edgekd students` chooses at each budget vs the fixed
default student (mobilevit_xxs), on cpu-x86 (measured here) and jetson-orin-nano (estimated, labelled so).

For each target the curated classification candidates are exported at 224 px and timed (cpu-x86: ONNX Runtime
and OpenVINO FP32, alternating passes, median) or estimated (jetson-orin-nano: per-node model at int8). For each
budget the chosen student is the largest that passes pre-flight and fits. Every distinct student (the choices and
the default) is then trained once, with the same short labels-only schedule (edgekd train-teacher: cross-entropy,
light augmentation, random start: no model hub here) on --data (default ../shared/data/hymenoptera), and its test
top-1 reused for every budget and target that chose it. Accuracies of such a short run from random weights are low
and noisy: they rank students only roughly (on hymenoptera's ~240 images a 3-epoch run predicts one class; a
CIFAR-10 subset separates them better).

    .venv/bin/python benchmarks/students_budget.py [--epochs 4] [--budgets 2,5,10,20] [--image-size 224]
    .venv/bin/python benchmarks/students_budget.py --data ../shared/data/cifar10-jpg --train-size 64 --epochs 10 \
        --max-train-samples 2000 --max-eval-samples 1000

Prints a Markdown table and writes benchmarks/results/students_budget.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "hymenoptera"
DEFAULT = "mobilevit_xxs"
TARGETS = ("cpu-x86", "jetson-orin-nano")


def candidates_table(target: str, size: int, passes: int, seconds: float, names: list[str]) -> dict:
    """Every candidate's row on ``target`` (2 classes, as the data)."""
    from edgekd.students import evaluate, method_line, plan_for
    from edgekd.targets import load_target

    tgt = load_target(target)
    plan = plan_for(tgt)
    t0 = time.time()
    rows = evaluate(names, tgt, size, 2, plan, passes, seconds)
    return {"target": target, "latency": plan.kind, "method": method_line(plan, tgt, passes, seconds),
            "rows": rows, "seconds": round(time.time() - t0, 1)}


def train(arch: str, args, work: Path) -> dict:
    """The fixed short labels-only schedule through `edgekd train-teacher` (its own process)."""
    out = work / arch / "model.safetensors"
    card = out.with_suffix(".json")
    if not card.is_file():
        t0 = time.time()
        cmd = [sys.executable, "-m", "edgekd", "train-teacher", "--data", str(args.data), "--arch", arch,
               "--weights", "none", "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size",
               str(args.batch_size), "--image-size", str(args.train_size or args.image_size), "--patience", "0",
               "--seed", "0", "--out", str(out)]
        cmd += ["--max-train-samples", str(args.max_train_samples)] if args.max_train_samples else []
        cmd += ["--max-eval-samples", str(args.max_eval_samples)] if args.max_eval_samples else []
        subprocess.run(cmd, check=True, cwd=ROOT)
        info = json.loads(card.read_text())
        info["train_seconds"] = round(time.time() - t0, 1)
        card.write_text(json.dumps(info, indent=2))
    info = json.loads(card.read_text())
    return {"test_top1": info["test_top1"], "best_val": info.get("best_val"), "seconds": info.get("train_seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--budgets", default="2,5,10,20", help="comma-separated ms")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--train-size", type=int, default=None, help="input side of the training runs (default: "
                    "--image-size; smaller keeps the run short on 2 cores, latency stays at --image-size)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-train-samples", type=int, default=None, help="class-balanced training subset")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="at most this many val and test images")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.3, help="timed seconds per candidate and pass (measured)")
    ap.add_argument("--candidates", default=None, help="comma-separated (default: the curated classify list)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-students")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    from edgekd._deps import tool_versions
    from edgekd.bench.system import system_info
    from edgekd.errors import ConfigError
    from edgekd.students import CAPACITY, candidate_list, choose, describe, fastest

    budgets = [float(b) for b in args.budgets.split(",")]
    names = candidate_list("classify", args.candidates)
    if DEFAULT not in names:
        names.append(DEFAULT)
    t_start = time.time()
    tables = {t: candidates_table(t, args.image_size, args.passes, args.seconds, names) for t in TARGETS}
    picks = []
    for t, tab in tables.items():
        rows = tab["rows"]
        default = next(r for r in rows if r.name == DEFAULT)
        for b in budgets:
            try:
                c = choose(rows, b, t)
                note = None
            except ConfigError as exc:
                c, note = None, str(exc)
            picks.append({"target": t, "latency": tab["latency"], "budget_ms": b,
                          "chosen": c.name if c else None, "chosen_ms": c.latency_ms if c else None,
                          "chosen_params_m": c.params_m if c else None, "chosen_how": describe(c) if c else None,
                          "nothing_fits": note, "fastest": fastest(rows).name if not c else None,
                          "default": DEFAULT, "default_ms": default.latency_ms, "default_fits": default.fits(b)})
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    distinct = sorted({p["chosen"] for p in picks if p["chosen"]} | {DEFAULT})
    acc = {n: train(n, args, work) for n in distinct}
    for p in picks:
        p["chosen_top1"] = acc[p["chosen"]]["test_top1"] if p["chosen"] else None
        p["default_top1"] = acc[DEFAULT]["test_top1"]
        meets = p["chosen"] is not None
        as_good = (not p["default_fits"]) or (meets and p["chosen_top1"] >= p["default_top1"])
        p["goal"] = {"meets_budget": meets, "at_least_default_accuracy": as_good}

    print(f"\n{args.data.name}: latency at {args.image_size} px; training {args.train_size or args.image_size} px, "
          f"{args.epochs} epochs labels-only from random weights "
          f"(batch {args.batch_size}, lr {args.lr:g}); capacity = {CAPACITY}\n")
    print("| target | budget ms | chosen student | params M | latency ms | test top-1 % | default "
          f"{DEFAULT} ms | default fits | default top-1 % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in picks:
        lat = "measured" if p["latency"] == "measured" else "estimated"
        if p["chosen"]:
            chosen = (f"{p['chosen']} | {p['chosen_params_m']:.2f} | {p['chosen_ms']:.2f} ({lat}) | "
                      f"{p['chosen_top1']:.1f}")
        else:
            chosen = f"nothing fits (fastest: {p['fastest']}) | - | - | -"
        print(f"| {p['target']} | {p['budget_ms']:g} | {chosen} | {p['default_ms']:.2f} ({lat}) | "
              f"{'yes' if p['default_fits'] else 'no'} | {p['default_top1']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "students_budget.json"
    doc = {"args": {k: str(v) for k, v in vars(args).items()}, "default": DEFAULT, "capacity": CAPACITY,
           "caveat": f"random start (no model hub), {args.epochs}-epoch labels-only training on {args.data.name}: "
                     "accuracies are low and noisy; jetson-orin-nano latencies are estimates (per-node roofline), "
                     "not measurements",
           "tables": {t: {**{k: v for k, v in tab.items() if k != "rows"},
                          "rows": [r.to_json() for r in tab["rows"]]} for t, tab in tables.items()},
           "picks": picks, "training": acc, "seconds": round(time.time() - t_start, 1),
           "versions": tool_versions(), "machine": system_info()}
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwritten {out} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
