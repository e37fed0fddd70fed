"""`edgekd report` on a small fake run folder: the Markdown exists, references real PNG plots, and every
estimated point is labelled as estimated."""

import json
from pathlib import Path

from typer.testing import CliRunner

from edgekd.cli import app


def _run(root: Path, name: str, scale: float) -> Path:
    run = root / name
    (run / "stages").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"name": name}, "target": "cpu-x86"}))

    def entry(model, runtime, prec, ms, **kw):
        lat = [ms * (1 + 0.01 * i) for i in range(20)]
        return {"model": model, "runtime": runtime, "precision": prec, "executed_precision": prec, "threads": 2,
                "iterations": 20, "p50_ms": ms, "p90_ms": ms * 1.1, "p99_ms": ms * 1.2, "mean_ms": ms,
                "fps": 1000 / ms, "size_mb": 1.0, "latencies_ms": lat, **kw}

    bench = [entry("student-torch", "torch", "fp32", 5 * scale),
             entry("onnx-fp32", "onnxruntime", "fp32", 1 * scale, energy_mj_per_frame=4.0),
             entry("openvino-int8", "openvino", "int8", 0.8 * scale),
             entry("onnx-int8@jetson-orin-nano", "tensorrt", "int8", 0.3, estimated="roofline on jetson",
                   latencies_ms=[], energy_mj_per_frame=1.5)]
    (run / "stages" / "bench.json").write_text(json.dumps({"hash": "x", "result": bench}))
    (run / "verify.json").write_text(json.dumps({
        "samples": 100, "teacher_top1": 95.0, "student_top1": 91.0,
        "models": [{"model": "onnx-fp32", "metric": 91.0, "passed": True},
                   {"model": "openvino-int8", "metric": 90.5, "passed": True},
                   {"model": "onnx-int8", "metric": 89.8, "passed": True}]}))
    return run


def test_report_writes_markdown_with_plots(tmp_path):
    runs = [_run(tmp_path, "a", 1.0), _run(tmp_path, "b", 2.0)]
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    md = (out / "report.md").read_text()
    for png in ("latency_distribution.png", "pareto.png", "energy.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in md
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    est_rows = [ln for ln in md.splitlines() if "@jetson-orin-nano" in ln]
    assert len(est_rows) == 2 and all("estimated: roofline on jetson" in ln for ln in est_rows)
    measured = [ln for ln in md.splitlines() if "| a | openvino-int8 |" in ln]
    assert measured and "| measured |" in measured[0]


def test_pareto_keeps_only_undominated_points():
    from edgekd.run_report import Point, pareto

    pts = [Point("r", "fast", "x", "int8", 1, 1000, 90.0, None),
           Point("r", "accurate", "x", "fp32", 2, 500, 91.0, None),
           Point("r", "dominated", "x", "fp32", 3, 300, 89.0, None)]
    assert [p.model for p in pareto(pts)] == ["fast", "accurate"]
