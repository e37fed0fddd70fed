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

    meter = {"measured": True, "estimated": None, "method": "RAPL package counters", "meter": "rapl"}
    model = {"measured": False, "estimated": "estimated: power model of cpu-x86 at 1250 FPS measured on this machine",
             "method": "power model", "meter": "estimate"}
    board = {"measured": False, "estimated": "estimated: power model of jetson-orin-nano at an estimated 3333 FPS",
             "method": "power model", "meter": "estimate"}
    bench = [entry("student-torch", "torch", "fp32", 5 * scale, energy_mj_per_frame=9.0),  # no record of how
             entry("onnx-fp32", "onnxruntime", "fp32", 1 * scale, energy_mj_per_frame=4.0, energy=meter),
             entry("openvino-int8", "openvino", "int8", 0.8 * scale, energy_mj_per_frame=3.0, energy=model),
             entry("onnx-int8@jetson-orin-nano", "tensorrt", "int8", 0.3, estimated="roofline on jetson",
                   latencies_ms=[], energy_mj_per_frame=1.5, energy=board)]
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
    def row(run, model):
        lines = [ln for ln in md.splitlines() if f"| {run} | {model} |" in ln]
        assert len(lines) == 1, (run, model, md)
        return [c.strip() for c in lines[0].strip("|").split("|")]

    header = [c.strip() for c in md.splitlines()[4].strip("|").split("|")]
    lat, en = header.index("latency: measured?"), header.index("energy: measured?")
    for run in ("a", "b"):  # each figure carries its own label: latency and energy are labelled apart
        jet = row(run, "onnx-int8@jetson-orin-nano")
        assert jet[lat] == "estimated: roofline on jetson" and jet[en].startswith("estimated: power model of jetson")
        ov = row(run, "openvino-int8")  # latency measured here, energy from a power model: not "measured"
        assert ov[lat] == "measured" and ov[en].startswith("estimated: power model of cpu-x86")
        assert row(run, "onnx-fp32")[en] == "measured"
        assert row(run, "student-torch")[en] == "estimated: no record of how this energy figure was obtained"


def test_energy_points_carry_their_own_label(tmp_path):
    from edgekd.report import load_points

    pts = {p.model: p for p in load_points(_run(tmp_path, "a", 1.0))}
    assert pts["onnx-fp32"].energy_estimated is None and pts["onnx-fp32"].estimated is None
    assert pts["openvino-int8"].energy_estimated.startswith("estimated: power model of cpu-x86")
    assert pts["openvino-int8"].estimated is None  # its latency was measured
    assert pts["student-torch"].energy_estimated.startswith("estimated")


def test_pareto_keeps_only_undominated_points():
    from edgekd.report import Point, pareto

    pts = [Point("r", "fast", "x", "int8", 1, 1000, 90.0, None),
           Point("r", "accurate", "x", "fp32", 2, 500, 91.0, None),
           Point("r", "dominated", "x", "fp32", 3, 300, 89.0, None)]
    assert [p.model for p in pareto(pts)] == ["fast", "accurate"]
