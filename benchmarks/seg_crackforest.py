"""Crack segmentation on CrackForest (../shared/data/crackforest): teacher, student from scratch, student by KD,
and the KD student after QAD int8, through the pipeline's own stages.

Two runs of `edgekd compress --task segment` share one fixed split (seed 0, 15 % test, 15 % val of the 118 pairs):
  kd:      the teacher (unet_plain32, trained by the pipeline with Dice + CE), then the student (unet_plain8,
           the FPGA-style plain U-Net) by pixel-wise KD (T=1, alpha 0.5 with Dice + CE), then QAD int8 (NNCF QAT
           from PTQ, fine-tuned by the same KD from the FP32 teacher)
  scratch: the same student, the same epochs and augmentation, Dice + CE only (the kd run's teacher is loaded only
           to fill the teacher stage; it teaches nothing)
Every row is scored here the same way on the test split: mIoU, crack IoU / Dice / precision / recall (OpenVINO on
this CPU, f32 pinned for the non-quantized parts; the teacher in torch). FPS: batch 1, 2 threads, models timed
in alternating passes, median of the pass medians. The FPGA column is the FINN-style estimate of the int8 Q/DQ
graph on the fpga-zu target (labelled estimated) next to the seed's measured 398 FPS / 204.99 Frames/J.

    .venv/bin/python benchmarks/seg_crackforest.py [--epochs 50] [--teacher-epochs 50] [--passes 3]

Prints a Markdown table and writes benchmarks/results/seg_crackforest.json.
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


def base(args) -> dict:
    return {"task": "segment", "data": str(DATA), "image_size": args.image_size, "val_fraction": 0.15, "seed": 0,
            "teacher_arch": args.teacher_arch, "teacher_epochs": args.teacher_epochs, "student": args.student,
            "epochs": args.epochs, "batch_size": 8, "augment": True, "teacher_cache_views": args.views,
            "calib_samples": 82, "verify_samples": 200,
            "bench_iters": 50, "bench_warmup": 5}


def scores(outputs: np.ndarray, masks: np.ndarray, classes: list[str]) -> dict:
    from edgekd.distill.seg_metrics import confusion, seg_scores

    s = seg_scores(confusion(outputs.argmax(1), masks, len(classes)), classes)
    return {"miou": s["miou"], "crack_iou": s["fg_iou"], "crack_dice": s["fg_dice"],
            "crack_precision": s["fg_precision"], "crack_recall": s["fg_recall"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50, help="student epochs (scratch and KD alike)")
    ap.add_argument("--teacher-epochs", type=int, default=50)
    ap.add_argument("--qad-epochs", type=int, default=4)
    ap.add_argument("--student", default="unet_plain8")
    ap.add_argument("--teacher-arch", default="unet_plain32")
    ap.add_argument("--views", type=int, default=0, help="augmentation from K fixed views, teacher logits cached "
                                                         "once per view (0: fully random, teacher online)")
    ap.add_argument("--image-size", type=int, default=256, help="long side (320x480 images -> 160x256)")
    ap.add_argument("--passes", type=int, default=3, help="alternating latency passes")
    ap.add_argument("--iters", type=int, default=100, help="timed iterations per latency pass")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-seg")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit("../shared/data/crackforest is absent; this benchmark needs the shared data")

    import torch

    from edgekd.bench.fpga import fpga_estimate
    from edgekd.bench.latency import time_calls
    from edgekd.config import make_config
    from edgekd.models.factory import load_checkpoint
    from edgekd.pipeline import run
    from edgekd.runtimes import runtime_for
    from edgekd.targets import load_target

    cpu = load_target("cpu-x86")
    kd_dir, scratch_dir = args.work / "kd", args.work / "scratch"
    kd = run(make_config(None, **base(args), name="seg-kd", quantize_method="qad", qad_epochs=args.qad_epochs),
             cpu, kd_dir)
    teacher_w = Path(kd.results["teacher"]["teachers"][0]["path"])
    run(make_config(None, **base(args), name="seg-scratch", loss="dice_ce",
        teachers=[{"spec": f"timm:{args.teacher_arch}", "weights": str(teacher_w)}]),
        cpu, scratch_dir)

    data = kd.data
    src = data.test
    x = data.preprocess.batch([src.image(i) for i in range(len(src))])
    masks = src.targets(data.preprocess)
    models = {
        f"teacher {args.teacher_arch} (FP32, torch)": ("torch", teacher_w),
        f"student {args.student} scratch (FP32)": ("openvino", scratch_dir / "export" / "student-fp32.xml"),
        f"student {args.student} KD (FP32)": ("openvino", kd_dir / "export" / "student-fp32.xml"),
        f"student {args.student} KD + QAD (int8)": ("openvino", kd_dir / "export" / "student-int8.xml"),
    }
    rows, runners = [], {}
    for name, (kind, path) in models.items():
        if kind == "torch":
            net, _ = load_checkpoint(path)
            torch.set_num_threads(cpu.threads)

            def call(a, net=net):
                with torch.no_grad():
                    return net(torch.from_numpy(a)).numpy()

            runners[name] = (call, None)
        else:
            rt = runtime_for(path, "openvino", cpu.threads, "f32").__enter__()
            runners[name] = (rt, rt)
        fn = runners[name][0]
        out = np.concatenate([fn(x[i:i + 4]) for i in range(0, len(x), 4)])
        rows.append({"model": name, "runtime": "torch" if kind == "torch" else "openvino (f32 hint)",
                     "file": str(path), **scores(out, masks, data.classes)})
    sample = x[:1]
    per_pass: dict[str, list[float]] = {r["model"]: [] for r in rows}
    for p in range(args.passes):
        for r in rows:
            times = time_calls(runners[r["model"]][0], sample, 10, args.iters, f"pass {p + 1} {r['model']}")
            per_pass[r["model"]].append(float(np.median(times)))
    for r in rows:
        r["p50_ms_passes"] = per_pass[r["model"]]
        r["p50_ms"] = statistics.median(per_pass[r["model"]])
        r["fps"] = 1000 / r["p50_ms"]
    for _, rt in runners.values():
        if rt is not None:
            rt.__exit__(None, None, None)
    est = fpga_estimate(kd_dir / "export" / "student-int8.onnx", load_target("fpga-zu"))
    rows[-1].update(fpga_fps=est.fps, fpga_frames_per_j=est.frames_per_j, fpga_estimated=est.estimated)
    h, w = data.preprocess.size
    result = {"data": str(DATA), "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
              "input": [h, w], "seed_result": SEED, "rows": rows, "args": {k: str(v) for k, v in vars(args).items()},
              "kd_run": str(kd_dir), "scratch_run": str(scratch_dir),
              "quantize": json.loads((kd_dir / "quantize.json").read_text())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"seg_crackforest{args.tag}.json").write_text(json.dumps(result, indent=2))
    print(f"\nCrackForest test split ({len(data.test)} images at {h}x{w}; train {len(data.train)}, "
          f"val {len(data.val)})\n")
    print("| model | mIoU % | crack IoU % | crack Dice % | crack P / R % | CPU FPS (p50 ms) | FPGA FPS | Frames/J |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fpga = (f"{r['fpga_fps']:.0f} (estimated) | {r['fpga_frames_per_j']:.1f} (estimated)" if "fpga_fps" in r
                else "- | -")
        print(f"| {r['model']} | {r['miou']:.2f} | {r['crack_iou']:.2f} | {r['crack_dice']:.2f} | "
              f"{r['crack_precision']:.1f} / {r['crack_recall']:.1f} | {r['fps']:.1f} ({r['p50_ms']:.2f}, "
              f"{r['runtime']}) | {fpga} |")
    print(f"| seed (U-Net, KD + quantization, CrackVision12K, FPGA) | {SEED['miou']} | - | - | - | - | "
          f"{SEED['fps']:.0f} (measured) | {SEED['frames_per_j']} (measured) |")


if __name__ == "__main__":
    main()
