"""Students sized for their input: a CIFAR-sized (32 px) image through a stride-1 stem vs upsampled 2x to 64 px
for the stock stride-2 stem, and vs the stock stem at 32 px (issue 20).

Every row trains the same timm student with labels only (edgekd's engine with the `ce` loss, no teacher: the
comparison is about the input path) on the same CIFAR-10 JPEG subset, seeds and epochs; each (row, seed) runs
alternately. Per row: test top-1 (mean and per seed), seconds per training epoch (median over epochs and
seeds), the student's MACs at its input size (from the exported ONNX graph) and training wall time (train +
validation, test excluded).

    .venv/bin/python benchmarks/stem_small_input.py [--student mobilenetv3_small_100] [--epochs 5] [--seeds 0,1]
        [--max-train-samples 2000] [--max-eval-samples 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROWS = {"64 px, stock stride-2 stem (32 px images upsampled 2x)": {"image_size": 64, "stem_stride": None},
        "32 px, stride-1 stem (`stem_stride: 1`)": {"image_size": 32, "stem_stride": 1},
        "32 px, stock stride-2 stem (no upsampling: a quarter of the compute)": {"image_size": 32, "stem_stride": None}}


def run(args, row: dict, seed: int, out: Path) -> dict:
    """One labels-only training through edgekd's own engine (in this process: no teacher stage, no pre-flight),
    then the test report."""
    import torch

    from edgekd.config import RunConfig, resolve
    from edgekd.data import Loading, load_data
    from edgekd.data.torchdata import loader
    from edgekd.distill.engine import distill_student
    from edgekd.distill.trainer import test_report
    from edgekd.models.factory import create_timm

    cfg = resolve(RunConfig(data=str(args.data), student=args.student, image_size=row["image_size"],
                            epochs=args.epochs, loss="ce", seed=seed, patience=0, teacher_check=0,
                            stem_stride=row["stem_stride"], max_train_samples=args.max_train_samples,
                            max_eval_samples=args.max_eval_samples))
    data = load_data(cfg.data, cfg.image_size, cfg.val_fraction, seed, args.max_train_samples,
                     args.max_eval_samples, loading=Loading(cache_dir=out / "cache"))
    torch.manual_seed(seed)
    model = create_timm(args.student, len(data.classes), stem_stride=row["stem_stride"])
    t0 = time.perf_counter()
    res, _ = distill_student(model, data, cfg, [], out / "train")
    rep = test_report(model, loader(data.test, data.preprocess, data.eval_batch, shuffle=False), data.classes)
    return {"test_top1": rep["top1"], "epoch_seconds": [h["train_seconds"] for h in res.history],
            "data_wait_seconds": [h["data_wait_seconds"] for h in res.history], "wall_s": time.perf_counter() - t0,
            "stem_stride": row["stem_stride"], "input": row["image_size"]}


def macs(student: str, size: int, stem_stride: int | None, work: Path) -> float:
    import torch

    from edgekd.bench.estimate import graph_cost
    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm

    path = work / f"{student}-{size}-s{stem_stride}.onnx"
    export_torch(create_timm(student, 10, stem_stride=stem_stride).eval(), torch.zeros(1, 3, size, size), path, {})
    return graph_cost(path).macs / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpg")
    ap.add_argument("--student", default="mobilenetv3_small_100")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--max-train-samples", type=int, default=2000)
    ap.add_argument("--max-eval-samples", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-stem")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stem_small_input.json")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is absent; this benchmark needs the shared data")
    from edgekd.bench.system import system_info

    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[int, dict]] = {name: {} for name in ROWS}
    for seed in seeds:
        for name, row in ROWS.items():  # alternate the rows so load on the machine hits both alike
            r = run(args, row, seed, args.work / f"{row['image_size']}px-stem{row['stem_stride'] or 2}-s{seed}")
            runs[name][seed] = r
            print(f"[{name} seed {seed}] top-1 {r['test_top1']:.2f}, {statistics.median(r['epoch_seconds']):.1f} "
                  f"s/epoch, wall {r['wall_s']:.0f} s", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, row in ROWS.items():
        per = runs[name]
        rows.append({"row": name, **row, "mmacs": macs(args.student, row["image_size"], row["stem_stride"], args.work),
                     "top1_mean": statistics.mean(per[s]["test_top1"] for s in seeds),
                     "top1_per_seed": [per[s]["test_top1"] for s in seeds],
                     "epoch_seconds_median": statistics.median(x for s in seeds for x in per[s]["epoch_seconds"]),
                     "wall_s_mean": statistics.mean(per[s]["wall_s"] for s in seeds), "runs": per})
    print(f"\n{args.student}, labels only, {args.epochs} epochs, CIFAR-10 JPEG {args.max_train_samples} train / "
          f"{args.max_eval_samples} test images, seeds {args.seeds}\n")
    print("| input path | MMACs | test top-1 % mean (per seed) | s/epoch (median) | wall s (mean) |")
    print("|---|---|---|---|---|")
    for r in rows:
        per = ", ".join(f"{x:.2f}" for x in r["top1_per_seed"])
        print(f"| {r['row']} | {r['mmacs']:.1f} | {r['top1_mean']:.2f} ({per}) | {r['epoch_seconds_median']:.1f} | "
              f"{r['wall_s_mean']:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "stem_small_input", "args": {k: str(v) for k, v in vars(args).items()},
                                    "rows": rows, "machine": system_info()}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
