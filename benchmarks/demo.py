"""The demo benchmark: run what `make demo` runs, time it, then re-time its models in alternating passes.

1. `edgekd compress --target cpu-x86 --recipe models/shapes10-demo.yaml --out RUN --overwrite`, as a subprocess
   of this Python (`python -m edgekd`, with this checkout first on PYTHONPATH): wall time and the peak RSS of the
   largest process (getrusage of the children).
2. Every model the run benchmarks (teacher and student in torch, each export in its runtime) is timed again with
   `edgekd bench`'s own code (edgekd.bench.measure.bench_model: batch 1, the target's threads, OpenVINO with the
   f32 hint, random input) in ``--passes`` alternating passes (A B C D .. A B C D ..), so one noisy pass cannot
   decide a ratio: each model gets its p50 per pass, the median and the min-max over passes.
3. Accuracy and parity come from the run's verify.json; the deploy choice and its statement from the bundle's
   manifest.json (`deploy`: the bundle times the passing models in its own alternating passes).

    PYTHONPATH=. .venv/bin/python benchmarks/demo.py [--passes 5] [--reuse]

Writes benchmarks/results/demo.json; `python benchmarks/readme_tables.py` puts its table into README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RECIPE = "models/shapes10-demo.yaml"
TARGET = "cpu-x86"


def compress(out: Path, reuse: bool) -> dict:
    """Run the demo's compress in a subprocess; wall seconds and the largest child's peak RSS."""
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out  # the command as a reader would type it
    cmd = [sys.executable, "-m", "edgekd", "compress", "--target", TARGET, "--recipe", RECIPE, "--out", str(where)]
    if not reuse:
        cmd.append("--overwrite")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"edgekd compress failed (exit {proc.returncode})")
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"command": ["edgekd", *cmd[3:]], "wall_s": round(wall, 1), "peak_rss_mb": round(rss_mb),
            "reused_stages": reuse}


def stage(run: Path, name: str):
    from edgekd.pipeline import _load_record

    saved = _load_record(run / "stages" / f"{name}.json", run)
    if saved is None:
        raise SystemExit(f"{run}: no readable record of the {name} stage")
    return saved["result"]


def models_of(run: Path) -> list[dict]:
    """The models the run's bench stage times, in its order, with accuracy and parity from verify.json."""
    verify = json.loads((run / "verify.json").read_text())
    teacher, distill = stage(run, "teacher"), stage(run, "distill")
    t_card = teacher["teachers"][0]
    models = [{"key": "teacher-torch", "model": f"teacher {t_card.get('arch', teacher.get('arch'))}",
               "runtime": "torch", "precision": "fp32", "path": t_card["path"],
               "top1": verify[f"teacher_{verify['metric']}"], "parity": "reference"},
              {"key": "student-torch", "model": f"student {distill['arch']}", "runtime": "torch", "precision": "fp32",
               "path": distill["path"], "top1": verify[f"student_{verify['metric']}"], "parity": "reference"}]
    checks = {m["model"]: m for m in verify["models"]}
    from edgekd.formats import timed_runtime

    for d in stage(run, "export") + stage(run, "quantize"):
        if timed_runtime(d["format"]) is None:
            continue
        key = f"{d['format']}-{d['precision']}"
        v = checks[key]
        models.append({"key": key, "model": f"student {distill['arch']}", "runtime": timed_runtime(d["format"]),
                       "precision": d["precision"], "path": d["path"], "top1": v["metric"],
                       "parity": "pass" if v["passed"] else f"fail: {v['reason']}",
                       "verify": {k: v.get(k) for k in ("top1_agreement", "max_abs_diff", "mean_abs_diff", "cosine",
                                                       "metric_delta")}})
    return models


def retime(models: list[dict], passes: int, threads: int, iters: int, warmup: int) -> None:
    """Each model's p50 in ``passes`` alternating passes, with edgekd bench's own timing code."""
    from edgekd.bench.measure import BenchOptions, bench_model

    opts = BenchOptions(threads=threads, iters=iters, warmup=warmup, precision_hint="f32")
    for m in models:
        m["p50_ms_per_pass"], m["p90_ms_per_pass"] = [], []
    for p in range(passes):
        for m in models:
            res = bench_model(Path(m["path"]), m["runtime"], opts, m["key"], m["precision"])
            m["p50_ms_per_pass"].append(round(res.p50_ms, 4))
            m["p90_ms_per_pass"].append(round(res.p90_ms, 4))
            m["executed"], m["size_mb"] = res.executed_precision, round(res.size_mb, 3)
            print(f"pass {p + 1}/{passes} {m['key']}: p50 {res.p50_ms:.2f} ms", flush=True)
    for m in models:
        v = m["p50_ms_per_pass"]
        m.update(p50_ms=statistics.median(v), p50_min_ms=min(v), p50_max_ms=max(v),
                 fps=1000 / statistics.median(v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-run", type=Path, default=ROOT / "runs" / "bench-demo", help="the compress run folder")
    ap.add_argument("--passes", type=int, default=5, help="alternating re-timing passes")
    ap.add_argument("--iters", type=int, default=200, help="timed calls per model per pass (the demo's bench_iters)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--reuse", action="store_true", help="reuse the run's finished stages (no --overwrite); the "
                                                         "wall time then is not the demo's")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo.json")
    args = ap.parse_args()

    from edgekd.bench.system import system_info
    from edgekd.targets import load_target

    run = args.out_run.resolve()
    load = {"start": os.getloadavg()[0]}  # 1-minute load average: was the machine shared while it ran?
    timing = compress(run, args.reuse)
    load["after_compress"] = os.getloadavg()[0]
    target = load_target(TARGET)
    models = models_of(run)
    retime(models, args.passes, target.threads, args.iters, args.warmup)
    load["after_retime"] = os.getloadavg()[0]
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    verify = json.loads((run / "verify.json").read_text())
    for m in models:
        m["path"] = str(Path(m["path"]).relative_to(run)) if Path(m["path"]).is_relative_to(run) else m["path"]
    result = {
        "benchmark": "demo", "compress": timing, "recipe": RECIPE, "target": TARGET,
        "retime": {"passes": args.passes, "iters": args.iters, "warmup": args.warmup, "threads": target.threads,
                   "batch": 1, "method": "edgekd.bench.measure.bench_model (edgekd bench), models in alternating "
                                         "passes, random input, OpenVINO INFERENCE_PRECISION_HINT f32"},
        "metric": verify["metric"], "test_samples": verify["samples"],
        "teacher_top1": verify[f"teacher_{verify['metric']}"], "student_top1": verify[f"student_{verify['metric']}"],
        "models": models,
        "deploy": manifest["deploy"],
        "bundle_models": [{k: m.get(k) for k in ("file", "format", "precision", "runtime", "role", "deploy_p50_ms")}
                          for m in manifest["models"]],
        "machine": system_info(),
        "load_average_1min": {k: round(v, 2) for k, v in load.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
