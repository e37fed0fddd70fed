"""`edgekd bench --compare`: one model in every runtime x precision available here, ranked, with the deploy
choice stated ("is int8 actually faster here?").

Given an FP32 ONNX (or a checkpoint, exported first): ONNX Runtime FP32, OpenVINO FP32 with f32 pinned and
with the plugin's default precision (bf16 where the CPU has it), and int8 from NNCF post-training
quantization of both graphs (random or ``--data`` calibration images). Given a bundle or an export folder:
its files as they are (plus the default-precision run of each FP32 IR).
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekd.artifacts import LatencyResult
from edgekd.bench.measure import BenchOptions, bench_model, models_in
from edgekd.bench.tables import fps_of
from edgekd.errors import ConfigError
from edgekd.formats import FORMATS, format_of_path


@dataclass(frozen=True)
class Variant:
    label: str
    path: Path
    runtime: str
    precision: str
    hint: str | None  # OpenVINO INFERENCE_PRECISION_HINT; None: the plugin's default


def _is_qdq(path: Path) -> bool:
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


def _has_attention(path: Path) -> bool:
    import onnx

    return any(n.op_type == "Softmax" for n in onnx.load(str(path), load_external_data=False).graph.node)


def _calibration(onnx_path: Path, data: str | None, n: int, opts: BenchOptions) -> tuple[np.ndarray, str]:
    if data is not None:
        from edgekd.data.calibration import calibration, preprocess_for

        return calibration(data, preprocess_for(onnx_path, None), n), f"{n} images from {data}"
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else (opts.image_size or 0) for d in dims][1:]
    if 0 in shape:
        raise ConfigError("the model's input size is dynamic; pass --image-size")
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32), f"{n} random inputs (latency only: no accuracy)"


def from_fp32_onnx(onnx_path: Path, work: Path, data: str | None, calib: int, opts: BenchOptions,
                   ) -> tuple[list[Variant], str]:
    """The FP32 ONNX, its OpenVINO IR, and NNCF int8 of both."""
    from edgekd.artifacts import ExportedModel
    from edgekd.export.catalog import get_exporter
    from edgekd.quantize.ptq import quantize
    from edgekd.quantize.spec import QuantSpec

    stem = onnx_path.stem.replace("-fp32", "")
    fp32_onnx = ExportedModel("onnx", "fp32", str(onnx_path), (str(onnx_path),))
    fp32_ir = get_exporter("openvino").export(onnx_path, work, f"{stem}-fp32")
    x, how = _calibration(onnx_path, data, calib, opts)
    spec = QuantSpec(transformer=_has_attention(onnx_path))  # a file: the graph, not an arch name, says so
    q_onnx = quantize(fp32_onnx, x, work, f"{stem}-int8", spec)
    q_ir = quantize(fp32_ir, x, work, f"{stem}-int8", spec)
    return [Variant("ONNX FP32", onnx_path, "onnxruntime", "fp32", None),
            Variant("IR FP32 (f32 pinned)", Path(fp32_ir.path), "openvino", "fp32", "f32"),
            Variant("IR FP32 (plugin default)", Path(fp32_ir.path), "openvino", "fp32", None),
            Variant("ONNX INT8 (NNCF Q/DQ)", Path(q_onnx.path), "onnxruntime", "int8", None),
            Variant("IR INT8 (NNCF)", Path(q_ir.path), "openvino", "int8", "f32")], how


def variants_for(path: Path, stack: ExitStack, data: str | None, calib: int, opts: BenchOptions,
                 ) -> tuple[list[Variant], str]:
    """What to compare for a checkpoint, an ONNX/IR file, an export folder or a bundle."""
    if not path.exists():
        raise ConfigError(f"model file {path} does not exist")
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgekd-compare-")))
    fmt = format_of_path(path) if path.is_file() else None
    if fmt is FORMATS["torch"]:
        import torch

        from edgekd.export.onnx import export_torch
        from edgekd.models.factory import load_checkpoint

        model, card = load_checkpoint(path)
        h, w = card["preprocess"]["size"]
        meta = {"edgekd.preprocess": card["preprocess"], "edgekd.classes": card["classes"], "edgekd.arch": card["arch"]}
        onnx_path = export_torch(model, torch.zeros(1, 3, h, w), work / f"{path.stem}-fp32.onnx", meta)
        found, how = from_fp32_onnx(onnx_path, work, data, calib, opts)
        return [Variant("PyTorch eager FP32", path, "torch", "fp32", None), *found], how
    if fmt is FORMATS["onnx"] and not _is_qdq(path):
        return from_fp32_onnx(path, work, data, calib, opts)
    out = []
    timed = {f.runtime for f in FORMATS.values() if f.bench}
    for f, rt, prec in models_in(path, stack):
        fmt = format_of_path(f)
        rt = rt or (fmt.runtime if fmt is not None else None)
        # a bundle's TensorRT entries (ONNX files for the device's engine) and QONNX (FINN) run on the device
        if fmt is None or not fmt.bench or rt not in timed:
            continue
        if prec is None:
            prec = "int8" if (fmt.name == "onnx" and _is_qdq(f)) or "int8" in f.stem else "fp32"
        if rt == "openvino":
            out.append(Variant(f"{f.name} (f32 pinned)", f, rt, prec, "f32"))
            if prec == "fp32":
                out.append(Variant(f"{f.name} (plugin default)", f, rt, prec, None))
        else:
            out.append(Variant(f.name, f, rt, prec, None))
    if not out:
        raise ConfigError(f"{path}: nothing to compare (no ONNX, IR or checkpoint runnable here)")
    return out, "as found"


def rank(results: list[LatencyResult], mode: str) -> list[LatencyResult]:
    """Fastest first: lowest median latency (latency mode) or highest throughput (throughput mode)."""
    if mode == "throughput":
        return sorted(results, key=lambda r: -fps_of(r))
    return sorted(results, key=lambda r: r.p50_ms)


TIE = 1.10  # closer than this is within what a shared machine's noise moves a median between passes


def _speedup(fast: LatencyResult, slow: LatencyResult, mode: str) -> float:
    return fps_of(fast) / fps_of(slow) if mode == "throughput" else slow.p50_ms / fast.p50_ms


def decide(ranked: list[LatencyResult], mode: str) -> dict:
    """The deploy choice and, per runtime, whether its int8 model beats its best FP32 configuration; gaps under
    10 % are called ties rather than wins."""
    best = ranked[0]
    unit = f"{fps_of(best):.1f} img/s" if mode == "throughput" else f"p50 {best.p50_ms:.2f} ms"
    tied = [r.model for r in ranked[1:] if _speedup(best, r, mode) < TIE]
    lines = [f"deploy {best.model} in {best.runtime} ({unit}): the fastest of {len(ranked)} configurations here"
             + (f"; within 10 % of it (a tie on this machine): {', '.join(tied)}" if tied else "")]
    int8: dict = {}
    for rt in sorted({r.runtime for r in ranked}):
        fp = [r for r in ranked if r.runtime == rt and r.precision == "fp32"]
        q = [r for r in ranked if r.runtime == rt and r.precision == "int8"]
        if not fp or not q:
            continue
        f, i = fp[0], q[0]  # ranked: the best of each
        speedup = _speedup(f, i, mode) ** -1
        verdict = "faster" if speedup >= TIE else "SLOWER" if speedup <= 1 / TIE else "no clear difference"
        int8[rt] = {"int8": i.model, "fp32": f.model, "speedup": round(speedup, 3), "verdict": verdict}
        lines.append(f"{rt}: int8 runs at {speedup:.2f}x the speed of its best FP32 -> {verdict}"
                     + (": int8 does not pay off in this runtime on this CPU" if verdict == "SLOWER" else ""))
    return {"choice": {"model": best.model, "runtime": best.runtime, "precision": best.precision,
                       "executed": best.executed_precision}, "ties": tied, "int8_vs_fp32": int8,
            "statement": lines}


def _merge(parts: list[LatencyResult]) -> LatencyResult:
    """Passes of one configuration as one result over all their timed calls."""
    from edgekd.bench.latency import summarize

    if len(parts) == 1:
        return parts[0]
    r = parts[0]
    times = np.concatenate([np.asarray(p.latencies_ms) for p in parts])
    extra = {"mode": r.mode, "streams": r.streams, "requests": r.requests, "warmup": r.warmup,
             "duration_s": sum(p.duration_s for p in parts), "peak_rss_mb": max(p.peak_rss_mb or 0 for p in parts)}
    if r.throughput_fps is not None:
        extra["throughput_fps"] = float(np.median([p.throughput_fps for p in parts]))
    return summarize(times, r.model, r.runtime, r.precision, r.executed_precision, r.threads, r.size_mb, r.batch,
                     **extra)


def _same_as_pinned(v: Variant, opts: BenchOptions) -> bool:
    """True when OpenVINO's default precision on this CPU is f32 anyway (no bf16/f16 hardware): timing it again
    would only rank noise."""
    from edgekd.runtimes import runtime_for

    with runtime_for(v.path, "openvino", opts.threads, None) as rt:
        return rt.executed_precision.endswith("f32")


def compare_variants(path: Path, opts: BenchOptions, data: str | None = None, calib: int = 64, passes: int = 1,
            ) -> tuple[list[LatencyResult], dict]:
    """Bench every variant of ``path`` in ``passes`` alternating rounds; returns the ranked results and the
    decision."""
    if passes < 1:
        raise ConfigError("--passes must be positive")
    notes = []
    with ExitStack() as stack:
        found, how = variants_for(path, stack, data, calib, opts)
        keep = []
        for v in found:
            if v.runtime == "openvino" and v.hint is None and v.precision == "fp32" and _same_as_pinned(v, opts):
                notes.append(f"{v.label}: OpenVINO's default precision here is f32, the same as the pinned run; "
                             f"not timed twice")
                continue
            keep.append(v)
        runs: dict[str, list[LatencyResult]] = {}
        for _ in range(passes):
            for v in keep:
                o = replace(opts, precision_hint=v.hint)
                if v.runtime == "torch" and opts.mode == "throughput":
                    o = replace(o, mode="latency", requests=0)
                runs.setdefault(v.label, []).append(bench_model(v.path, v.runtime, o, v.label, v.precision))
    ranked = rank([_merge(parts) for parts in runs.values()], opts.mode)
    decision = decide(ranked, opts.mode)
    decision.update(calibration=how, passes=passes, notes=notes,
                    caveat="latency only: accuracy of the int8 models is not measured here; run `edgekd verify` "
                           "on the chosen model before deploying")
    return ranked, decision
