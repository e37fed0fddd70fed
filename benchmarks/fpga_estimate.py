"""FPGA dataflow estimate of a plain U-Net (the seed's crack segmenter class) on targets/fpga-zu.yaml.

Builds U-Nets in torch (conv3x3-ReLU x2 per level, max-pool down, nearest upsample + concat up, 1x1 head: only
ops a FINN-style dataflow maps), exports each to ONNX (opset 17), runs edgekd.bench.fpga.fpga_estimate at 8 and
4 bit, prints a table and writes benchmarks/results/fpga_estimate.json. Every number is an estimate; the seed's
result (398 FPS, 204.99 Frames/J on FPGA) is printed beside it for comparison.

    python benchmarks/fpga_estimate.py [--target fpga-zu]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_FPS, SEED_FPJ = 398.0, 204.99


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class PlainUNet(nn.Module):
    """``levels`` encoder levels of width base, 2*base, ... and a bottleneck; the decoder mirrors them."""

    def __init__(self, base: int = 16, levels: int = 4, in_ch: int = 3, classes: int = 1) -> None:
        super().__init__()
        widths = [base * 2 ** i for i in range(levels + 1)]
        self.down = nn.ModuleList([_block(in_ch if i == 0 else widths[i - 1], widths[i]) for i in range(levels)])
        self.bottom = _block(widths[levels - 1], widths[levels])
        self.up = nn.ModuleList([_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels))])
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for blk, skip in zip(self.up, reversed(skips), strict=True):
            x = blk(torch.cat([self.upsample(x), skip], dim=1))
        return self.head(x)


def export_unet(path: Path, base: int, levels: int, hw: tuple[int, int]) -> Path:
    model = PlainUNet(base, levels).eval()
    torch.onnx.export(model, torch.zeros(1, 3, *hw), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["mask"])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="fpga-zu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fpga_estimate.json")
    args = ap.parse_args()

    from edgekd.artifacts import to_json
    from edgekd.bench.fpga import fpga_estimate
    from edgekd.targets import load_target

    target = load_target(args.target)
    configs = [(8, 4, (256, 256)), (16, 4, (256, 256)), (16, 4, (320, 480)), (32, 4, (256, 256))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for base, levels, hw in configs:
            onnx_path = export_unet(Path(tmp) / f"unet{base}x{levels}-{hw[0]}x{hw[1]}.onnx", base, levels, hw)
            for bits in (8, 4):
                est = fpga_estimate(onnx_path, target, weight_bits=bits, activation_bits=bits)
                d = to_json(est)
                d.pop("layers")
                d.update(unet=f"U-Net base {base}, {levels} levels", input=f"{hw[0]}x{hw[1]}",
                         fps_vs_seed=est.fps / SEED_FPS, frames_per_j_vs_seed=est.frames_per_j / SEED_FPJ)
                rows.append(d)
    print(f"{'model':28s} {'input':8s} {'bits':>4s} {'GMACs':>6s} {'weights MB':>10s} {'on-chip Mbit':>13s} "
          f"{'fits':>4s} {'FPS (est.)':>10s} {'Frames/J (est.)':>15s} {'vs seed FPS':>11s} {'vs seed F/J':>11s}")
    for r in rows:
        need = r["weight_mbit"] + r["line_buffer_mbit"] + r["skip_buffer_mbit"]
        fits = "yes" if r["fits_onchip"] else "NO"
        print(f"{r['unet']:28s} {r['input']:8s} {r['weight_bits']:>4d} {r['macs'] / 1e9:6.2f} "
              f"{r['weight_mbit'] / 8:10.2f} {need:6.1f}/{r['onchip_mbit']:<6.0f} {fits:>4s} {r['fps']:10.1f} "
              f"{r['frames_per_j']:15.1f} {r['fps_vs_seed']:10.2f}x {r['frames_per_j_vs_seed']:10.2f}x")
    print(f"seed: {SEED_FPS:.0f} FPS, {SEED_FPJ} Frames/J (U-Net crack segmenter on FPGA). "
          f"All rows: {rows[0]['estimated']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"target": args.target, "seed": {"fps": SEED_FPS, "frames_per_j": SEED_FPJ},
                                    "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
