"""The distillation engine on real data: CIFAR-10 (../shared/data/cifar10-jpg) with the pretrained ResNet-56
teacher (83.2%, run as an ONNX black box), through the pipeline's own teacher and distill stages.

Runs, same student, epochs, optimiser and seed (recipe models/cifar10-resnet56.yaml):
  (a) labels only (cross-entropy), fully random pad-crop + flip augmentation
  (b) Hinton KD, T=4, alpha=0.9, teacher logits cached for 8 fixed views (4 crops x 2 flips)
  (c) DKD (alpha=1, beta=8, T=4; its weight ramped up over 5 epochs, as DKD's authors warm it up) + CE
  (d) two teachers: ResNet-56 (ONNX) + the labels-only student of (a) as a second, weaker PyTorch teacher,
      multi_teacher with per-sample entropy weighting
  (e) as (d), with label weighting: each teacher weighted per sample by its probability of the true class, so
      the weak teacher counts where it is right and not where it is confidently wrong
  (f) as (c) without an explicit beta: edgekd's class-count rule sets it (config.dkd_beta: 4 for 10 classes)

    .venv/bin/python benchmarks/distill_cifar10.py [--epochs 30] [--seeds 0] [--runs a,b,c,d,e,f]

Prints a Markdown table and writes benchmarks/results/distill_cifar10.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "models" / "cifar10-resnet56.yaml"
NAMES = {"a": "labels only (CE)", "b": "kd (T=4, alpha=0.9)", "c": "dkd (alpha=1, beta=8, 5-epoch ramp) + CE",
         "d": "multi_teacher: ResNet-56 + CE student, entropy-weighted",
         "e": "multi_teacher: ResNet-56 + CE student, label-weighted",
         "f": "dkd (alpha=1, beta by class count: 4, 5-epoch ramp) + CE"}


def overrides(run: str, work: Path, seed: int) -> dict:
    if run == "a":
        return {"loss": "ce", "teacher_cache_views": 0}
    if run == "b":
        return {"loss": "kd"}
    if run in ("c", "f"):  # (f): no beta, so the run's class-count rule sets it
        beta = {"beta": 8.0} if run == "c" else {}
        return {"losses": [{"name": "dkd", "alpha": 1.0, **beta, "temperature": 4.0, "ce_weight": 1.0,
                            "ramp_epochs": 5}]}
    second = work / f"a-s{seed}" / "student" / "student.safetensors"
    if not second.is_file():
        raise SystemExit(f"run ({run}) needs run (a) of seed {seed} first ({second})")
    teachers = [{"spec": "onnx:" + str(ROOT.parent / "shared/data/teachers/cifar10_resnet56.onnx")},
                {"spec": "timm:mobilenetv3_small_100", "weights": str(second), "image_size": 64}]
    # label is multi_teacher's default since run (e) measured it; (d) names entropy so it keeps measuring it
    weighting = "entropy" if run == "d" else "label"
    return {"teachers": teachers, "losses": [{"name": "multi_teacher", "temperature": 4.0, "alpha": 0.9,
                                              "weighting": weighting}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--runs", default="a,b,c,d,e,f")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-cifar10")
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
    out_json = args.out / "distill_cifar10.json"
    rows = json.loads(out_json.read_text())["rows"] if out_json.is_file() else []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for key in args.runs.split(","):
            values = {**load_recipe(RECIPE), "epochs": args.epochs, "seed": seed, "name": f"{key}-s{seed}",
                      **overrides(key, args.work, seed)}
            cfg = make_config(None, **values)
            t0 = time.time()
            r = run(cfg, load_target("cpu-x86"), args.work / f"{key}-s{seed}", until="distill")
            card = json.loads((Path(r.results["distill"].path).with_suffix(".json")).read_text())
            hist = card["stages"][-1]["history"]
            rows = [x for x in rows if not (x["run"] == key and x["seed"] == seed)]
            rows.append({"run": key, "name": NAMES[key], "seed": seed, "epochs": args.epochs,
                         "test_top1": card["test_top1"], "test_macro_f1": card["test_macro_f1"],
                         "teachers": [(t["arch"], t["test_top1"]) for t in r.results["teacher"].teachers],
                         "s_per_epoch": statistics.median(h["train_seconds"] for h in hist),
                         "wall_s": time.time() - t0, "machine": system_info()})
            args.out.mkdir(parents=True, exist_ok=True)
            # each row keeps the machine that measured it: an invocation with --runs / --seeds adds rows to those
            # of earlier ones, which may have run elsewhere
            out_json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                            "versions": tool_versions(),
                                            **row_machines(rows, lambda x: f"{x['run']}-s{x['seed']}")}, indent=2))
    print_table(rows)
    print(f"\nwritten {out_json}")


def print_table(rows: list[dict]) -> None:
    print("\n" + table_md(rows))


def table_md(rows: list[dict]) -> str:
    """The table of docs/distillation.md (also rendered there by benchmarks/readme_tables.py). Timings are shown
    only for a run whose seeds were all measured on one machine (a median across machines means nothing)."""
    from edgekd.bench.system import machine_key

    base = [r["test_top1"] for r in rows if r["run"] == "a"]
    ref = statistics.mean(base) if base else None
    lines = ["| run | seeds | test top-1 % (mean) | vs (a) | per seed | macro-F1 | s/epoch (median) | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for key in "abcdef":
        rs = [r for r in rows if r["run"] == key]
        if not rs:
            continue
        m = statistics.mean(r["test_top1"] for r in rs)
        delta = f"{m - ref:+.2f}" if ref is not None else "-"
        per_seed = ", ".join(f"{r['test_top1']:.2f}" for r in sorted(rs, key=lambda r: r["seed"]))
        f1 = statistics.mean(r["test_macro_f1"] for r in rs)
        if len({machine_key(r.get("machine")) for r in rs}) == 1:
            spe = f"{statistics.median(r['s_per_epoch'] for r in rs):.1f}"
            wall = f"{statistics.mean(r['wall_s'] for r in rs):.0f}"
        else:
            spe = wall = "n/a"  # the prose under the table says why
        lines.append(f"| ({key}) {NAMES[key]} | {len(rs)} | {m:.2f} | {delta} | {per_seed} | {f1:.2f} | {spe} | "
                     f"{wall} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
