"""Crack segmentation on CrackForest (../shared/data/crackforest): teacher(s), student from scratch, student by KD,
and the KD student after QAD int8, through the pipeline's own stages, over several training seeds.

One fixed split (split seed 0: 15 % test, 15 % val of the 118 pairs) for every run:
  teachers: --teachers K models of --teacher-arch, each trained by the pipeline (Dice + CE) with its own seed
           0..K-1; together they are the KD runs' teacher ensemble (the soft targets are their average)
  kd:      per training seed, the student by pixel-wise KD from the ensemble (T, alpha), then QAD int8 (NNCF QAT
           from PTQ, fine-tuned by the same KD from the FP32 teachers)
  scratch: per training seed, the same student, epochs and augmentation with Dice + CE only (the teachers are
           loaded to fill the teacher stage; they teach nothing)
Every row is scored here the same way on the test split: mIoU, crack IoU / Dice / precision / recall (OpenVINO on
this CPU, f32 pinned for the non-quantized parts; the teachers in torch), as the mean over training seeds with the
per-seed values. FPS: the seed-0 models, batch 1, 2 threads, timed in alternating passes, median of the pass
medians. The FPGA column is the FINN-style estimate of the int8 Q/DQ graph on the fpga-zu target (labelled
estimated) next to the seed paper's measured 398 FPS / 204.99 Frames/J.

    .venv/bin/python benchmarks/seg_crackforest.py [--seeds 0,1,2] [--teachers 1] [--epochs 40]

Prints a Markdown table and writes benchmarks/results/seg_crackforest{--tag}.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "crackforest"
SEED = {"fps": 398.0, "frames_per_j": 204.99, "miou": 71.92}
METRICS = ("miou", "crack_iou", "crack_dice", "crack_precision", "crack_recall")


def base(args) -> dict:
    return {"task": "segment", "data": str(DATA), "image_size": args.image_size, "val_fraction": 0.15,
            "split_seed": 0, "teacher_arch": args.teacher_arch, "teacher_epochs": args.teacher_epochs,
            "student": args.student, "epochs": args.epochs, "lr": args.lr, "batch_size": 8, "augment": True,
            "calib_samples": 82, "verify_samples": 200, "bench_iters": 50, "bench_warmup": 5,
            # docs/segmentation.md's numbers are from random starts; `auto` would pick ImageNet encoders with a hub
            "student_weights": "none", "teacher_arch_weights": "none",
            "seg_head_prior": getattr(args, "head_prior", True)}


def scores(outputs: np.ndarray, masks: np.ndarray, classes: list[str]) -> dict:
    from edgekd.distill.seg_metrics import confusion, seg_scores

    s = seg_scores(confusion(outputs.argmax(1), masks, len(classes)), classes)
    return {"miou": s["miou"], "crack_iou": s["fg_iou"], "crack_dice": s["fg_dice"],
            "crack_precision": s["fg_precision"], "crack_recall": s["fg_recall"]}


def torch_call(path: Path, threads: int):
    import torch

    from edgekd.models.factory import load_checkpoint

    net, _ = load_checkpoint(path)
    torch.set_num_threads(threads)

    def call(a, net=net):
        with torch.no_grad():
            return net(torch.from_numpy(a)).numpy()

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="training seeds of the student runs (the split is fixed)")
    ap.add_argument("--teachers", type=int, default=1, help="teachers (K > 1: an ensemble, trained with seeds 0..K-1)")
    ap.add_argument("--teacher-arch", default="unet_plain16")
    ap.add_argument("--teacher-epochs", type=int, default=40)
    ap.add_argument("--student", default="unet_plain8")
    ap.add_argument("--epochs", type=int, default=40, help="student epochs (scratch and KD alike)")
    ap.add_argument("--lr", type=float, default=2e-3, help="student learning rate (scratch and KD alike)")
    ap.add_argument("--temperature", type=float, default=1.0, help="pixel_kd temperature")
    ap.add_argument("--alpha", type=float, default=0.5, help="pixel_kd soft-target share")
    ap.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                    help="pixel_kd's KL averaged per ground-truth class (--no-balance: over all pixels)")
    ap.add_argument("--head-prior", action=argparse.BooleanOptionalAction, default=True,
                    help="new heads start at the class prior (seg_head_prior; --no-head-prior: random, as before)")
    ap.add_argument("--qad-epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=256, help="long side (320x480 images -> 160x256)")
    ap.add_argument("--passes", type=int, default=3, help="alternating latency passes")
    ap.add_argument("--iters", type=int, default=100, help="timed iterations per latency pass")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-seg")
    ap.add_argument("--only", default="", help="train one run up to distillation and stop: kd-s<seed> or "
                                                "scratch-s<seed> (run several at once, then once without it)")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit("../shared/data/crackforest is absent; this benchmark needs the shared data")
    seeds = [int(s) for s in args.seeds.split(",")]

    from edgekd.bench.fpga import fpga_estimate
    from edgekd.bench.latency import time_calls
    from edgekd.config import make_config
    from edgekd.device_runner import softmax
    from edgekd.pipeline import run
    from edgekd.runtimes import runtime_for
    from edgekd.targets import load_target

    cpu = load_target("cpu-x86")
    teacher_w = []
    for k in range(args.teachers):
        t = run(make_config(None, **base(args), seed=k, name=f"seg-teacher{k}"), cpu, args.work / f"teacher{k}",
                until="teacher")
        teacher_w.append(Path(t.results["teacher"].main["path"]))
    data = t.data
    teachers = [{"spec": f"timm:{args.teacher_arch}", "weights": str(w)} for w in teacher_w]
    kd_dirs = {s: args.work / f"kd-s{s}" for s in seeds}
    scratch_dirs = {s: args.work / f"scratch-s{s}" for s in seeds}

    def kd_run(s: int, until: str | None = None):
        kd = {"name": "pixel_kd", "temperature": args.temperature, "alpha": args.alpha, "balance": args.balance}
        run(make_config(None, **base(args), seed=s, name=f"seg-kd-s{s}", teachers=teachers, losses=[kd],
                        quantize_method="qad", qad_epochs=args.qad_epochs), cpu, kd_dirs[s], until=until)

    def scratch_run(s: int, until: str = "export"):
        run(make_config(None, **base(args), seed=s, name=f"seg-scratch-s{s}", teachers=teachers, loss="dice_ce"),
            cpu, scratch_dirs[s], until=until)

    if args.only:  # one run's training alone (several in parallel processes; a last plain call collects)
        kind, s = args.only.split("-s")
        (kd_run if kind == "kd" else scratch_run)(int(s), until="distill")
        return
    for s in seeds:
        kd_run(s)
        scratch_run(s)

    src = data.test
    x = data.preprocess.batch([src.image(i) for i in range(len(src))])
    masks = src.targets(data.preprocess)

    def outputs(fn) -> np.ndarray:
        return np.concatenate([fn(x[i:i + 4]) for i in range(0, len(x), 4)])

    # (row name, runtime kind, file per seed)
    models = [(f"teacher {k} {args.teacher_arch} (FP32, torch)", "torch", {k: w}) for k, w in enumerate(teacher_w)]
    models += [
        (f"student {args.student} scratch (FP32)", "openvino", {s: scratch_dirs[s] / "export" / "student-fp32.xml"
                                                                for s in seeds}),
        (f"student {args.student} KD (FP32)", "openvino", {s: kd_dirs[s] / "export" / "student-fp32.xml"
                                                           for s in seeds}),
        (f"student {args.student} KD + QAD (int8)", "openvino", {s: kd_dirs[s] / "export" / "student-int8.xml"
                                                                 for s in seeds}),
    ]
    rows, timed, opened = [], {}, []
    probs = []
    for name, kind, files in models:
        per_seed = {}
        for s, path in files.items():
            if kind == "torch":
                fn = torch_call(path, cpu.threads)
                out = outputs(fn)
                probs.append(softmax(out))
            else:
                rt = runtime_for(path, "openvino", cpu.threads, "f32").__enter__()
                opened.append(rt)
                fn, out = rt, outputs(rt)
            per_seed[s] = scores(out, masks, data.classes)
            if s == min(files):
                timed[name] = fn
        rows.append({"model": name, "runtime": "torch" if kind == "torch" else "openvino (f32 hint)",
                     "files": {str(s): str(p) for s, p in files.items()},
                     "per_seed": {str(s): v for s, v in per_seed.items()},
                     **{m: statistics.mean(v[m] for v in per_seed.values()) for m in METRICS}})
        if kind == "torch" and len(probs) == args.teachers > 1:
            ens = scores(np.mean(probs, 0), masks, data.classes)
            rows.append({"model": f"teacher ensemble: mean of the {args.teachers} softmaxes", "runtime": "torch",
                         "files": {}, "per_seed": {}, **ens})
    sample = x[:1]
    per_pass: dict[str, list[float]] = {name: [] for name in timed}
    for p in range(args.passes):
        for name, fn in timed.items():
            times = time_calls(fn, sample, 10, args.iters, f"pass {p + 1} {name}")
            per_pass[name].append(float(np.median(times)))
    for r in rows:
        if r["model"] in per_pass:
            r["p50_ms_passes"] = per_pass[r["model"]]
            r["p50_ms"] = statistics.median(per_pass[r["model"]])
            r["fps"] = 1000 / r["p50_ms"]
    for rt in opened:
        rt.__exit__(None, None, None)
    est = fpga_estimate(kd_dirs[seeds[0]] / "export" / "student-int8.onnx", load_target("fpga-zu"))
    rows[-1].update(fpga_fps=est.fps, fpga_frames_per_j=est.frames_per_j, fpga_estimated=est.estimated)
    kd_gain = [rows[-2]["per_seed"][str(s)]["miou"] - rows[-3]["per_seed"][str(s)]["miou"] for s in seeds]
    int8_delta = [rows[-1]["per_seed"][str(s)]["miou"] - rows[-2]["per_seed"][str(s)]["miou"] for s in seeds]
    h, w = data.preprocess.size
    from edgekd.bench.system import system_info

    result = {"data": str(DATA), "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
              "input": [h, w], "seeds": seeds, "seed_result": SEED, "rows": rows,
              "kd_minus_scratch_miou": kd_gain, "int8_minus_fp32_miou": int8_delta,
              "args": {k: str(v) for k, v in vars(args).items()},
              "quantize": {str(s): json.loads((kd_dirs[s] / "quantize.json").read_text()) for s in seeds},
              "machine": system_info()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"seg_crackforest{args.tag}.json").write_text(json.dumps(result, indent=2))
    print(f"\nCrackForest test split ({len(data.test)} images at {h}x{w}; train {len(data.train)}, "
          f"val {len(data.val)}); students: mean of seeds {args.seeds}\n")
    print("| model | mIoU % (per seed) | crack IoU % | crack Dice % | crack P / R % | CPU FPS (p50 ms) | FPGA FPS | "
          "Frames/J |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fpga = (f"{r['fpga_fps']:.0f} (estimated) | {r['fpga_frames_per_j']:.1f} (estimated)" if "fpga_fps" in r
                else "- | -")
        each = ", ".join(f"{v['miou']:.2f}" for v in r["per_seed"].values()) if len(r["per_seed"]) > 1 else ""
        fps = f"{r['fps']:.1f} ({r['p50_ms']:.2f}, {r['runtime']})" if "fps" in r else "-"
        print(f"| {r['model']} | {r['miou']:.2f}{f' ({each})' if each else ''} | {r['crack_iou']:.2f} | "
              f"{r['crack_dice']:.2f} | {r['crack_precision']:.1f} / {r['crack_recall']:.1f} | {fps} | {fpga} |")
    print(f"| seed paper (U-Net, KD + quantization, CrackVision12K, FPGA) | {SEED['miou']} | - | - | - | - | "
          f"{SEED['fps']:.0f} (measured) | {SEED['frames_per_j']} (measured) |")
    print(f"\nKD - scratch mIoU per seed: {', '.join(f'{d:+.2f}' for d in kd_gain)} "
          f"(mean {statistics.mean(kd_gain):+.2f}); int8 - FP32: {', '.join(f'{d:+.2f}' for d in int8_delta)}")


if __name__ == "__main__":
    main()
