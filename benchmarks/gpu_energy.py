"""GPU images/s and energy per image through edgekd's NVML meter, for the model a user starts from and the student.

Needs an NVIDIA GPU (run it where the ``device`` tool lends one). Side by side in one process, batch ``--batch`` at
``--size`` px: the big model a user brings (``--big``, FP32 eager: what they run today) and the student
(``--student``) in FP32 and in bf16 autocast (the precision edgekd trains in on a GPU). Weights are random (no
hub here); speed and energy do not depend on them.

Each row's energy is measured twice through ``edgekd.bench.energy.measure_energy``: with NVML's total-energy
counter and with NVML power sampled every 50 ms, idle subtracted in both, so the two methods cross-check each
other. Both cover the GPU board only (not the host). Medians over ``--rounds`` interleaved rounds.

    python3 benchmarks/gpu_energy.py --out $OUT/gpu_energy.json

Prints a Markdown table and writes benchmarks/results/gpu_energy.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", default="resnet50")
    ap.add_argument("--student", default="mobilevit_xxs")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each active window")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu_energy.json")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark measures a GPU through NVML; nothing measured")
        sys.exit(1)

    from edgekd.bench.energy import measure_energy
    from edgekd.bench.meter_nvml import NvmlMeter
    from edgekd.bench.system import system_info
    from edgekd.models.factory import create_timm

    dev = torch.device("cuda")
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    rows = {f"{args.big} FP32 (what the user runs)": (args.big, False),
            f"{args.student} FP32": (args.student, False),
            f"{args.student} bf16 autocast (edgekd's GPU precision)": (args.student, True)}
    models = {name: create_timm(name, 1000).to(dev).eval() for name in {args.big, args.student}}

    def step_of(arch: str, bf16: bool):
        @torch.no_grad()
        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                models[arch](x)
            torch.cuda.synchronize()  # the meter reads the board after the work, not after the launch

        return step

    res: dict = {label: {"images_s": [], "counter_j_per_image": [], "power_j_per_image": [], "method": {}}
                 for label in rows}
    for _ in range(args.rounds):
        for label, (arch, bf16) in rows.items():
            step = step_of(arch, bf16)
            for _ in range(5):
                step()
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < 1.0:
                step()
                n += 1
            per_s = n / (time.perf_counter() - t0)
            batches = max(10, int(per_s * args.seconds))
            res[label]["images_s"].append(per_s * args.batch)
            for source in ("counter", "power"):
                e = measure_energy(step, batches, meter=NvmlMeter(source=source), idle_s=2.0, model=label)
                res[label][f"{source}_j_per_image"].append(e.j_per_frame / args.batch)
                res[label]["method"][source] = e.method
                res[label].setdefault(f"{source}_active_w", []).append(e.active_w)
                res[label].setdefault("idle_w", []).append(e.idle_w)

    gpu = torch.cuda.get_device_name(0)
    info = system_info()
    print(f"\n{gpu}; host {info['cpu']}; batch {args.batch} at {args.size} px, random weights; "
          f"medians over {args.rounds} rounds; energy: GPU board only, idle subtracted\n")
    print("| model | images/s | J/image (NVML energy counter) | J/image (NVML power, 50 ms samples) | "
          "board W active |")
    print("|---|---|---|---|---|")
    summary = {}
    for label, r in res.items():
        s = {k: statistics.median(r[k]) for k in ("images_s", "counter_j_per_image", "power_j_per_image",
                                                   "counter_active_w", "idle_w")}
        summary[label] = s
        print(f"| {label} | {s['images_s']:.0f} | {s['counter_j_per_image'] * 1e3:.2f} mJ | "
              f"{s['power_j_per_image'] * 1e3:.2f} mJ | {s['counter_active_w']:.0f} (idle {s['idle_w']:.0f}) |")
    out = {"machine": info | {"gpu": gpu, "torch": torch.__version__}, "settings": vars(args) | {"out": str(args.out)},
           "rows": res, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
