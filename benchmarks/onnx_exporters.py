"""ONNX exporters side by side: torch's dynamo exporter (torch.export + onnxscript, edgekd's default) and the
legacy TorchScript one, on edgekd's students, through edgekd's own ``export_torch``.

    .venv/bin/python benchmarks/onnx_exporters.py --size 96 --repeats 3

Students have random weights (no training). For each student and exporter: ``export_torch`` timed ``--repeats``
times (median; both exporters are warmed up once on a tiny network first, so torch.export's one-off start-up cost
is not in any row), the exporter that actually wrote the graph (``edgekd.onnx_exporter``; a dynamo row that fell
back says so and why), opset, node count, file size, max |diff| against PyTorch on 4 random normal images (batch
4 through the dynamic batch axis) in ONNX Runtime and in OpenVINO (``openvino.convert_model`` of the ONNX file,
CPU), max |diff| between the two exporters' graphs in ONNX Runtime, how many of the graph's Conv, Gemm, MatMul
and activation node names the other exporter's graph has too (``quant_ignored_scope`` matches names), ONNX
Runtime's p50 latency at batch 1 on one thread, and edgekd's op pre-flight (``check_graph``) for cpu-x86,
jetson-orin-nano and fpga-zu. For ``--ptq`` (one student): NNCF PTQ of each exporter's graph (``quantize_onnx``,
symmetric ``performance`` preset, 16 random calibration images), the TensorRT rewrite + Q/DQ check and the QONNX
conversion of the int8 graph.

Prints a Markdown table and writes benchmarks/results/onnx_exporters.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

# (student, stem_stride): timm classifiers edgekd distils into, one with its stem at stride 1 (small inputs), and
# two U-Nets of edgekd.models.segmentation
STUDENTS = (("mobilenetv3_small_100", None), ("mobilenetv3_small_100", 1), ("efficientnet_b0", None),
            ("mobilevit_xxs", None), ("resnet18", None), ("unet_plain16", None), ("unet_mobilenetv3_large_100", None))
EXPORTERS = ("torchscript", "dynamo")
TARGETS = ("cpu-x86", "jetson-orin-nano", "fpga-zu")
# node types whose names quant_ignored_scope patterns usually match: the dynamo graph's must be the TorchScript one's
NAMED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "Add", "Mul", "HardSwish", "Sigmoid", "Softmax")


def _label(arch: str, stem: int | None) -> str:
    return arch if stem is None else f"{arch} (stem stride {stem})"


def _model(arch: str, stem: int | None, classes: int):
    from edgekd.models.factory import create_timm
    from edgekd.models.segmentation import create_seg, is_seg_model

    if is_seg_model(arch):
        return create_seg(arch, 2).eval()
    return create_timm(arch, classes, stem_stride=stem).eval()


def _ort(path: Path, x: np.ndarray, runs: int) -> tuple[np.ndarray, float]:
    """Outputs on ``x`` and the p50 ms of ``runs`` batch-1 runs on one thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x})[0]
    one = x[:1]
    sess.run(None, {"input": one})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": one})
        times.append((time.perf_counter() - t0) * 1e3)
    return out, statistics.median(times)


def _openvino(path: Path, x: np.ndarray) -> tuple[np.ndarray | None, str]:
    import openvino as ov

    try:
        compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU")
        return compiled(x)[0], "ok"
    except Exception as exc:  # noqa: BLE001
        from edgekd.errors import reason

        return None, reason(exc, 200)


def _preflight(path: Path) -> dict[str, str]:
    from edgekd.export.preflight import check_graph
    from edgekd.targets import load_target

    out = {}
    for name in TARGETS:
        probs = check_graph(path, load_target(name))
        out[name] = "ok" if not probs else "; ".join(f"{p.runtime}: {', '.join(p.ops)}" for p in probs)
    return out


def _ptq(path: Path, x: np.ndarray, ref: np.ndarray, tmp: Path, stem: str) -> dict:
    """NNCF PTQ of one FP32 graph, then the TensorRT rewrite + check and the QONNX conversion of the int8 one."""
    from edgekd.artifacts import ExportedModel
    from edgekd.export.qonnx import QonnxExporter, quant_summary
    from edgekd.export.tensorrt import check_onnx, to_symmetric_int8
    from edgekd.quantize.ptq import quantize_onnx
    from edgekd.quantize.spec import QuantSpec

    calib = np.random.default_rng(1).standard_normal((16, *x.shape[1:])).astype(np.float32)
    t0 = time.perf_counter()
    q = quantize_onnx(ExportedModel("onnx", "fp32", str(path), (str(path),)), calib, tmp / f"{stem}-int8.onnx",
                      QuantSpec("performance"))
    row: dict = {"ptq_s": time.perf_counter() - t0}
    out, _ = _ort(Path(q.path), x, 1)
    a, b = out.reshape(len(x), -1), ref.reshape(len(x), -1)
    row["int8_cosine"] = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    row["int8_max_abs_diff"] = float(np.abs(out - ref).max())
    import onnx

    row["quantize_nodes"] = sum(n.op_type == "QuantizeLinear" for n in onnx.load(q.path).graph.node)
    trt = tmp / f"{stem}-int8-trt.onnx"
    to_symmetric_int8(Path(q.path), trt)
    rep = check_onnx(trt)
    row["tensorrt_check"] = "ok" if rep.ok else "; ".join(rep.problems)
    try:
        qo = QonnxExporter(8).export(Path(q.path), tmp, f"{stem}-qonnx")
        row["qonnx"] = f"ok ({sum(quant_summary(Path(qo.path)).values())} Quant)"
    except Exception as exc:  # noqa: BLE001
        from edgekd.errors import reason

        row["qonnx"] = f"failed: {reason(exc, 200)}"
    return row


def run_student(arch: str, stem: int | None, size: int, repeats: int, ort_runs: int, ptq: bool,
                tmp: Path) -> list[dict]:
    import onnx
    import torch

    from edgekd.export import onnx as onnx_mod

    torch.manual_seed(0)
    model = _model(arch, stem, 10)
    x = np.random.default_rng(0).standard_normal((4, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sample = torch.zeros(1, 3, size, size)
    rows, outs, names = [], {}, {}
    for exporter in EXPORTERS:
        path = tmp / f"{arch}-{stem}-{exporter}.onnx"
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            onnx_mod.export_torch(model, sample, path, {}, exporter=exporter)
            times.append(time.perf_counter() - t0)
        g = onnx.load(str(path))
        used = {p.key: p.value for p in g.metadata_props}[onnx_mod.EXPORTER_KEY]
        row = {"student": _label(arch, stem), "arch": arch, "stem_stride": stem, "size": size, "exporter": exporter,
               "written_by": used, "export_s": times, "export_s_median": statistics.median(times),
               "opset": next(o.version for o in g.opset_import if o.domain in ("", "ai.onnx")),
               "nodes": len(g.graph.node), "ops": dict(Counter(n.op_type for n in g.graph.node).most_common()),
               "size_mb": path.stat().st_size / 1e6,
               "dims": {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                        for v in (*g.graph.input, *g.graph.output)}}
        if exporter == "dynamo" and used != "dynamo":  # the reason export_torch printed, once more for the JSON
            try:
                onnx_mod._export_dynamo(model, sample, None, onnx_mod.DYNAMO_MIN_OPSET, True)
            except Exception as exc:  # noqa: BLE001
                row["fallback_reason"] = onnx_mod._root_reason(exc)
        names[exporter] = {n.name for n in g.graph.node if n.op_type in NAMED_OPS}
        out, row["ort_ms_p50"] = _ort(path, x, ort_runs)
        outs[exporter] = out
        row["max_abs_diff_torch"] = float(np.abs(out - ref).max())
        ov_out, row["openvino"] = _openvino(path, x)
        row["openvino_max_abs_diff_torch"] = None if ov_out is None else float(np.abs(ov_out - ref).max())
        row["preflight"] = _preflight(path)
        row["ref_max_abs"] = float(np.abs(ref).max())
        if ptq:
            row.update(_ptq(path, x, ref, tmp, f"{arch}-{stem}-{exporter}"))
        rows.append(row)
        print(f"  {row['student']} {exporter}: written by {used}, {row['export_s_median']:.2f} s, "
              f"opset {row['opset']}, {row['nodes']} nodes, max|d| {row['max_abs_diff_torch']:.2g}, "
              f"OpenVINO {row['openvino']}, "
              f"ORT {row['ort_ms_p50']:.2f} ms", flush=True)
    diff = float(np.abs(outs["dynamo"] - outs["torchscript"]).max())
    for r in rows:
        r["max_abs_diff_other_exporter"] = diff
        mine, other = names[r["exporter"]], names[next(e for e in EXPORTERS if e != r["exporter"])]
        r["named_nodes"], r["named_nodes_in_other"] = len(mine), len(mine & other)
    return rows


def _warm_up() -> None:
    import torch

    from edgekd.export.onnx import export_torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    with tempfile.TemporaryDirectory() as d:
        for exporter in EXPORTERS:
            t0 = time.perf_counter()
            export_torch(net, torch.zeros(1, 3, 16, 16), Path(d) / "w.onnx", {}, exporter=exporter)
            print(f"  warm-up {exporter}: {time.perf_counter() - t0:.2f} s (first export in this process)")


def table(rows: list[dict]) -> str:
    lines = ["| student | exporter | export s (median) | opset | nodes | max \\|diff\\| vs torch (ORT / OpenVINO) | "
             "vs other exporter | names also in other graph | ORT ms p50 | pre-flight | int8 (PTQ) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        who = r["exporter"]
        if r["written_by"] != who:
            who += f" (fell back to {r['written_by']})"
        ov = "n/a" if r["openvino_max_abs_diff_torch"] is None else f"{r['openvino_max_abs_diff_torch']:.2g}"
        pre = "ok" if all(v == "ok" for v in r["preflight"].values()) else "; ".join(
            f"{t}: {v}" for t, v in r["preflight"].items() if v != "ok")
        q = "-" if "ptq_s" not in r else (f"cos {r['int8_cosine']:.4f}, {r['quantize_nodes']} Q, TensorRT check "
                                          f"{r['tensorrt_check']}, QONNX {r['qonnx']}")
        same = f"{r['named_nodes_in_other']}/{r['named_nodes']}" if "named_nodes" in r else "-"
        lines.append(f"| {r['student']} | {who} | {r['export_s_median']:.2f} | {r['opset']} | {r['nodes']} | "
                     f"{r['max_abs_diff_torch']:.2g} / {ov} (max \\|out\\| {r['ref_max_abs']:.2g}) | "
                     f"{r['max_abs_diff_other_exporter']:.2g} | {same} | {r['ort_ms_p50']:.2f} | {pre} | {q} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", default=",".join(f"{a}{'' if s is None else f'@{s}'}" for a, s in STUDENTS),
                    help="comma-separated; NAME@S sets the stem stride S")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ort-runs", type=int, default=20)
    ap.add_argument("--ptq", default="mobilenetv3_small_100", help="the student whose graphs go through NNCF PTQ")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    import torch

    from edgekd._deps import tool_versions
    from edgekd.bench.system import system_info

    torch.set_num_threads(1)  # one thread for torch: the timings say what the exporters cost, not the BLAS
    rows: list[dict] = []
    t0 = time.perf_counter()
    _warm_up()
    with tempfile.TemporaryDirectory(prefix="edgekd-exporters-") as tmp:
        for spec in args.students.split(","):
            arch, _, stem = spec.partition("@")
            rows += run_student(arch, int(stem) if stem else None, args.size, args.repeats, args.ort_runs,
                                spec == args.ptq, Path(tmp))
    print(f"\nONNX exporters, {args.size} px, random weights, {args.repeats} exports each "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "onnx_exporters.json"
    versions = tool_versions()
    import onnxscript

    versions["onnxscript"] = onnxscript.__version__
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                               "versions": versions, "machine": system_info()}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
