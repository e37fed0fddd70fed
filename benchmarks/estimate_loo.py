"""Fit the per-node latency model to published figures and report each figure's leave-one-out error.

The figures are the ones cited in the targets' YAML (``estimate.figures``: model, input, precision, latency,
board, software, clocks, timing, source); none is measured here. For every figure the script builds the model's
graph (timm, torchvision or Ultralytics, random weights: only shapes matter), exports it to ONNX (cached under
``runs/estimate_onnx``, gitignored), computes the per-node roofline at full peak (edgekd.bench.estimate.raw_ms)
with the board's peaks (a figure's ``device_overrides`` where it was timed at other clocks), and fits the two
parameters (efficiency, per-layer overhead) per group and precision by least squares on the log error. Groups:
the three Jetson boards together, cpu-arm64, fpga-zu. Leave-one-out: each figure is predicted by the parameters
fitted to the others of its group and precision (with 1 figure left the overhead is fixed at 0). The error of a
fit to all figures is printed too, but only the leave-one-out column is evidence.

int8 figures are estimated from the FP32 graph at 1 byte per element and the int8 peak (a Q/DQ graph has the same
layers; its Q/DQ nodes are skipped by the cost model), so no calibration runs here.

Ultralytics models need ``ultralytics`` and ``opencv-python-headless`` importable (``pip install --no-deps
--target runs/ul ultralytics opencv-python-headless`` and ``PYTHONPATH=runs/ul``); without them those rows are
skipped and the reason printed.

    PYTHONPATH=.:runs/ul python benchmarks/estimate_loo.py [--md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GROUPS = {"jetson": ["jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin"], "cpu-arm64": ["cpu-arm64"],
          "fpga-zu": ["fpga-zu"]}
SMALL_GMACS = 5.0  # figures below this many GMACs count as "small" in the summary


def build(builder: str):
    import torch

    class _FirstOutput(torch.nn.Module):
        """Ultralytics' Detect head returns (decoded boxes, raw maps) in eval mode; its ONNX export keeps the
        first."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            return out[0] if isinstance(out, (tuple, list)) else out

    kind, name = builder.split(":", 1)
    if kind == "timm":
        from edgekd.models.factory import create_timm

        return create_timm(name, 1000).eval()
    if kind == "torchvision":  # torchvision's own definitions where timm has none (GoogLeNet, SqueezeNet, ShuffleNetV2)
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=1000).eval()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO  # ImportError -> the rows are skipped with the reason

    model = YOLO(name).model.eval()  # from the shipped yaml: random weights, nothing downloaded
    model = model.fuse(verbose=False) if hasattr(model, "fuse") else model  # as Ultralytics' own export does
    return _FirstOutput(model).eval()


def onnx_for(builder: str, hw: str, cache: Path, exporter: str) -> Path:
    """The figure's graph as edgekd's export writes it (``exporter``: the default one unless told), cached per
    exporter: the layer counts the fit sees are those of the graphs users estimate."""
    import torch

    from edgekd.export.onnx import export_torch

    h, w = (int(x) for x in hw.split("x"))
    out = cache / exporter / f"{builder.replace(':', '_').replace('.yaml', '')}-{hw}.onnx"
    if not out.is_file():
        with torch.no_grad():
            export_torch(build(builder), torch.zeros(1, 3, h, w), out, {}, exporter=exporter)
    return out


def load_group(names: list[str]) -> list[dict]:
    """Every figure of the group's targets with its board's peaks (raw YAML: the fit may not exist yet)."""
    from edgekd.targets import PublishedFigure

    rows = []
    for name in names:
        est = yaml.safe_load((ROOT / "targets" / f"{name}.yaml").read_text())["estimate"]
        for raw in est.get("figures", []):
            fig = PublishedFigure.model_validate(raw)
            dev = {k: est.get(k) for k in ("peak_int8_tops", "peak_fp16_tflops", "peak_fp32_tflops",
                                            "memory_bandwidth_gbs")} | fig.device_overrides
            rows.append({"target": name, "fig": fig, "dev": dev, "fuse": est.get("fuse_pointwise", True)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "estimate_loo.json")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "estimate_onnx")
    ap.add_argument("--md", action="store_true", help="also print the Markdown tables of docs/targets.md")
    ap.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None,
                    help="the ONNX exporter of the graphs (default: edgekd's, edgekd.export.onnx.EXPORTER)")
    args = ap.parse_args()

    from edgekd.export.onnx import EXPORTER

    exporter = args.exporter or EXPORTER
    from edgekd.bench.estimate import fit_params, graph_terms, load_shaped, node_costs, node_model_ms, raw_ms

    args.cache.mkdir(parents=True, exist_ok=True)
    terms_cache: dict = {}
    result: dict = {"exporter": exporter, "groups": {}, "skipped": []}
    for group, names in GROUPS.items():
        rows = []
        for r in load_group(names):
            fig = r["fig"]
            key = (fig.builder, fig.input, r["fuse"])
            try:
                if key not in terms_cache:
                    terms_cache[key] = graph_terms(node_costs(load_shaped(onnx_for(fig.builder, fig.input,
                                                                                    args.cache, exporter))), r["fuse"])
            except ImportError as exc:
                result["skipped"].append({"target": r["target"], "model": fig.model, "why": f"cannot import: {exc}"})
                continue
            t = terms_cache[key]
            peak = r["dev"][{"int8": "peak_int8_tops", "fp16": "peak_fp16_tflops", "fp32": "peak_fp32_tflops"}[
                fig.precision]] * 1e12
            rows.append({"target": r["target"], **fig.model_dump(exclude={"device_overrides"}),
                         "device": r["dev"], "gmacs": t.macs / 1e9, "layers": t.layers,
                         "raw_ms": raw_ms(t, peak, r["dev"]["memory_bandwidth_gbs"], fig.precision)})
        fits = {}
        for prec in sorted({x["precision"] for x in rows}):
            sub = [x for x in rows if x["precision"] == prec]
            eff, ovh = fit_params([x["raw_ms"] for x in sub], [x["layers"] for x in sub],
                                  [x["latency_ms"] for x in sub])
            for i, x in enumerate(sub):
                x["fit_all_ms"] = node_model_ms(x["raw_ms"], x["layers"], eff, ovh)
                x["fit_all_error"] = x["fit_all_ms"] / x["latency_ms"] - 1
                rest = [y for j, y in enumerate(sub) if j != i]
                if not rest:
                    x["loo_ms"] = x["loo_error"] = None
                    continue
                e, o = fit_params([y["raw_ms"] for y in rest], [y["layers"] for y in rest],
                                  [y["latency_ms"] for y in rest])
                x["loo_params"] = {"efficiency": e, "layer_overhead_us": o}
                x["loo_ms"] = node_model_ms(x["raw_ms"], x["layers"], e, o)
                x["loo_error"] = x["loo_ms"] / x["latency_ms"] - 1
            errs = [abs(x["loo_error"]) for x in sub if x["loo_error"] is not None]
            fits[prec] = {"efficiency": eff, "layer_overhead_us": ovh, "figures": len(sub),
                          "boards": sorted({x["board"] for x in sub}),
                          "median_abs_loo_error": statistics.median(errs) if errs else None,
                          "within_25pct": sum(e <= 0.25 for e in errs), "loo_n": len(errs)}
        all_errs = [abs(x["loo_error"]) for x in rows if x.get("loo_error") is not None]
        result["groups"][group] = {"targets": names, "fits": fits, "rows": rows,
                                   "median_abs_loo_error": statistics.median(all_errs) if all_errs else None,
                                   "within_25pct": sum(e <= 0.25 for e in all_errs), "loo_n": len(all_errs)}

    for group, g in result["groups"].items():
        print(f"\n## {group} ({', '.join(g['targets'])})")
        for prec, f in g["fits"].items():
            med = "n/a" if f["median_abs_loo_error"] is None else f"{f['median_abs_loo_error']:.0%}"
            print(f"- {prec}: efficiency {f['efficiency']:.4f}, layer overhead {f['layer_overhead_us']:.2f} us "
                  f"({f['figures']} figures); median |LOO error| {med}, within 25%: {f['within_25pct']}/{f['loo_n']}")
        print("| target | model | input | prec | timing | GMACs | layers | published ms | fit-all ms | "
              "LOO ms | LOO error |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in g["rows"]:
            loo = "n/a" if x["loo_ms"] is None else f"{x['loo_ms']:.2f} | {x['loo_error']:+.0%}"
            print(f"| {x['target']} | {x['model']} | {x['input']} | {x['precision'].upper()} | {x['timing']} | "
                  f"{x['gmacs']:.2f} | {x['layers']} | {x['latency_ms']:.3g} | {x['fit_all_ms']:.2f} | {loo} |")
    for s in result["skipped"]:
        print(f"- skipped {s['target']} {s['model']}: {s['why']}")
    print("\nYAML `fit:` values:")
    for group, g in result["groups"].items():
        for prec, f in g["fits"].items():
            med = None if f["median_abs_loo_error"] is None else round(f["median_abs_loo_error"], 3)
            print(f"  {group} {prec}: efficiency: {f['efficiency']:.4g}, layer_overhead_us: "
                  f"{f['layer_overhead_us']:.4g}, figures {f['figures']}, median_loo_error: {med}")
    if args.md:
        print_md(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for g in result["groups"].values():  # keep the JSON readable: sources once per row are enough
        for x in g["rows"]:
            x["raw_ms"] = round(x["raw_ms"], 5)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")


def print_md(result: dict) -> None:
    """The two tables of docs/targets.md (also rendered there by benchmarks/readme_tables.py)."""
    figures, summary = md_tables(result)
    print("\n" + figures + "\n\n" + summary)


def md_tables(result: dict) -> tuple[str, str]:
    """(one row per figure with its leave-one-out error, the summary per group and precision) as Markdown."""
    fig = ["| group | board | model | input | precision | timing | GMACs | published ms | LOO estimate ms | "
           "LOO error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for group, g in result["groups"].items():
        for x in g["rows"]:
            loo = "n/a (only figure) | n/a" if x["loo_ms"] is None else f"{x['loo_ms']:.2f} | {x['loo_error']:+.0%}"
            fig.append(f"| {group} | {x['board']} | {x['model']} | {x['input']} | {x['precision'].upper()} | "
                       f"{x['timing']} | {x['gmacs']:.2f} | {x['latency_ms']:.3g} | {loo} |")
    summ = ["| group | precision | figures | efficiency | overhead us/layer | median LOO error | within 25% | "
            "small (<5 GMACs) LOO | large LOO |", "|---|---|---|---|---|---|---|---|---|"]
    for group, g in result["groups"].items():
        for prec, f in g["fits"].items():
            sub = [x for x in g["rows"] if x["precision"] == prec and x["loo_error"] is not None]
            small = [x["loo_error"] for x in sub if x["gmacs"] < SMALL_GMACS]
            large = [x["loo_error"] for x in sub if x["gmacs"] >= SMALL_GMACS]
            med = "n/a" if f["median_abs_loo_error"] is None else f"{f['median_abs_loo_error']:.0%}"
            summ.append(f"| {group} | {prec.upper()} | {f['figures']} | {f['efficiency']:.3g} | "
                        f"{f['layer_overhead_us']:.3g} | {med} | {f['within_25pct']}/{f['loo_n']} | {_range(small)} | "
                        f"{_range(large)} |")
    return "\n".join(fig), "\n".join(summ)


def _range(v: list[float]) -> str:
    return f"{min(v):+.0%} to {max(v):+.0%}" if v else "none"


if __name__ == "__main__":
    main()
