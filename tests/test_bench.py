"""`edgekd bench` on tiny exported models: JSON fields, throughput mode, bundles, checkpoints, --compare, and bad
input. Timings are only checked for being present and positive: performance lives in benchmarks/."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli import app

runner = CliRunner()
FIELDS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "fps", "size_mb", "peak_rss_mb", "executed_precision", "batch",
          "mode", "streams", "requests", "latencies_ms", "threads", "iterations")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from torch import nn

    from edgekd.export.catalog import get_exporter
    from edgekd.export.onnx import export_torch

    tmp = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).eval()
    onnx_path = export_torch(model, torch.zeros(1, 3, 32, 32), tmp / "m-fp32.onnx", {})
    ir = get_exporter("openvino").export(onnx_path, tmp, "m-fp32")
    return {"dir": tmp, "onnx": onnx_path, "xml": Path(ir.path)}


def _bench(*args: str):
    res = runner.invoke(app, ["bench", *map(str, args)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_json_has_every_field(tiny, tmp_path):
    out = tmp_path / "b.json"
    res = _bench(tiny["onnx"], "--iters", "20", "--warmup", "2", "--image-size", "32", "--json", out,
                 "--md", tmp_path / "b.md")
    doc = json.loads(out.read_text())
    r = doc["results"][0]
    for f in FIELDS:
        assert f in r, f
    assert r["runtime"] == "onnxruntime" and r["mode"] == "latency" and r["iterations"] == 20
    assert len(r["latencies_ms"]) == 20 and r["p99_ms"] >= r["p50_ms"] > 0 and r["peak_rss_mb"] > 0
    assert doc["system"]["cpu"] and doc["system"]["versions"]["onnxruntime"]
    assert doc["options"]["threads"] == 2 and doc["result"] == r
    assert "p50 ms" in res.output and (tmp_path / "b.md").read_text().startswith("edgekd bench")


@pytest.mark.parametrize("model", ["xml", "onnx"])
def test_throughput_mode_keeps_several_requests_in_flight(tiny, tmp_path, model):
    out = tmp_path / "t.json"
    _bench(tiny[model], "--mode", "throughput", "--streams", "2", "--requests", "3", "--iters", "30", "--warmup",
           "2", "--image-size", "32", "--batch-size", "2", "--json", out)
    r = json.loads(out.read_text())["results"][0]
    assert r["mode"] == "throughput" and r["requests"] == 3 and r["batch"] == 2
    assert r["iterations"] == 30 and r["throughput_fps"] > 0


def test_seconds_and_openvino_executed_precision(tiny, tmp_path):
    out = tmp_path / "s.json"
    _bench(tiny["xml"], "--seconds", "0.3", "--warmup", "1", "--image-size", "32", "--pin", "--json", out)
    r = json.loads(out.read_text())["results"][0]
    assert r["runtime"] == "openvino" and r["executed_precision"] == "f32" and r["iterations"] >= 1
    assert 0.2 < r["duration_s"] < 5


def test_bundle_folder_and_tarball_bench_each_model(tiny, tmp_path):
    import shutil

    import numpy as np

    from edgekd.bundle import SCHEMA_VERSION, seal

    b = tmp_path / "bundle"
    b.mkdir()
    for f in (tiny["onnx"], tiny["xml"], tiny["xml"].with_suffix(".bin")):
        shutil.copy2(f, b / f.name)
    models = [{"file": "m-fp32.onnx", "format": "onnx", "precision": "fp32", "runtime": "onnxruntime"},
              {"file": "m-fp32.xml", "format": "openvino", "precision": "fp32", "runtime": "openvino"},
              {"file": "m-fp32.onnx", "format": "onnx", "precision": "fp32", "runtime": "tensorrt"}]
    # the samples are only read (bench does not replay them), so zeros of the right shapes do
    np.savez(b / "samples.npz", input=np.zeros((1, 3, 32, 32), np.float32),
             **{f"output:{m['file']}": np.zeros((1, 3), np.float32) for m in models})
    seal(b, {"schema_version": SCHEMA_VERSION, "task": "classify", "target": "cpu-x86", "input": {}, "labels":
             ["a", "b", "c"], "output": {"shape": [1, 3]}, "preprocess": {}, "models": models,
             "recommended": "m-fp32.onnx", "samples": {"file": "samples.npz"}})
    with tarfile.open(tmp_path / "b.tar.gz", "w:gz") as tf:
        tf.add(b, arcname="b")
    for src in (b, tmp_path / "b.tar.gz"):
        out = tmp_path / "r.json"
        res = _bench(src, "--iters", "5", "--warmup", "1", "--image-size", "32", "--json", out)
        doc = json.loads(out.read_text())
        assert [r["runtime"] for r in doc["results"]] == ["onnxruntime", "openvino"]
        assert "tensorrt model skipped" in res.output and "tensorrt" in doc["notes"][0]


def test_checkpoint_runs_in_torch(tmp_path):
    from edgekd.models.factory import create_timm, save_checkpoint

    ck = tmp_path / "student.safetensors"
    save_checkpoint(create_timm("resnet10t", 3), ck, {"arch": "resnet10t", "classes": ["a", "b", "c"],
                                                      "preprocess": {"size": [32, 32]}})
    out = tmp_path / "c.json"
    _bench(ck, "--iters", "5", "--warmup", "1", "--json", out)
    r = json.loads(out.read_text())["results"][0]
    assert r["runtime"] == "torch" and r["precision"] == "fp32" and r["iterations"] == 5


@pytest.mark.slow
def test_compare_ranks_runtimes_and_states_the_choice(tiny, tmp_path):
    out = tmp_path / "cmp.json"
    res = _bench(tiny["onnx"], "--compare", "--iters", "10", "--warmup", "1", "--calib", "4", "--passes", "2",
                 "--json", out)
    doc = json.loads(out.read_text())
    p50 = [r["p50_ms"] for r in doc["results"]]
    # OpenVINO's default-precision run is dropped (with a note) where it executes f32 like the pinned one
    assert p50 == sorted(p50) and len(p50) == 5 - len(doc["notes"])
    assert all(r["iterations"] == 20 for r in doc["results"])  # two passes of 10, merged
    assert {(r["runtime"], r["precision"]) for r in doc["results"]} == {
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")}
    assert doc["decision"]["choice"]["model"] == doc["results"][0]["model"]
    assert set(doc["decision"]["int8_vs_fp32"]) == {"onnxruntime", "openvino"}
    assert "deploy " in res.output and "int8 runs at" in res.output
    assert {v["verdict"] for v in doc["decision"]["int8_vs_fp32"].values()} <= {"faster", "SLOWER",
                                                                               "no clear difference"}


def _edgekd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args,code,match", [
    (["bench", "{tmp}/none.onnx"], 2, "does not exist"),
    (["bench", "{onnx}", "--runtime", "tflite"], 2, "unknown runtime 'tflite'"),
    (["bench", "{onnx}", "--iters", "-3"], 2, "--iters must be positive"),
    (["bench", "{onnx}", "--mode", "burst"], 2, "unknown --mode 'burst'"),
    (["bench", "{onnx}", "--requests", "4"], 2, "needs --mode throughput"),
    (["bench", "{onnx}", "--passes", "3"], 2, "--passes is used by --compare only"),
    (["bench", "{onnx}", "--runtime", "tensorrt"], 5, "tensorrt"),
    (["bench", "{tmp}"], 2, "no .onnx, .xml or .safetensors"),
    (["report", "{tmp}"], 2, "not an edgekd run folder"),
])
def test_bad_input_gives_one_line(tiny, tmp_path, args, code, match):
    res = _edgekd(*[a.replace("{tmp}", str(tmp_path)).replace("{onnx}", str(tiny["onnx"])) for a in args])
    assert res.returncode == code, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert len(lines) == 1 and match in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_old_latency_records_still_load():
    from edgekd.artifacts import LatencyResult, from_json

    old = {"model": "m", "runtime": "openvino", "precision": "fp32", "executed_precision": "f32", "threads": 2,
           "iterations": 10, "p50_ms": 1.0, "p90_ms": 1.1, "p99_ms": 1.2, "mean_ms": 1.0, "fps": 1000.0,
           "size_mb": 1.0, "estimated": None}
    r = from_json(LatencyResult, old)
    assert r.mode == "latency" and r.batch == 1 and r.latencies_ms == () and r.peak_rss_mb is None


def test_energy_per_image_is_measured_or_labelled_estimated(tiny, tmp_path):
    """No meter can be read on this project's machines: the power-model estimate is used and says so, with why."""
    from edgekd.bench.energy import pick_meter
    from edgekd.targets import load_target

    out = tmp_path / "e.json"
    res = _bench(tiny["xml"], "--iters", "30", "--warmup", "2", "--energy", "auto", "--json", out)
    line = next(x for x in res.output.splitlines() if x.startswith("energy:"))
    e = json.loads(out.read_text())["energy"]
    assert e["j_per_frame"] > 0 and "mJ/image" in line
    if pick_meter(None, load_target("cpu-x86")).estimated:
        assert not e["measured"] and e["estimated"].startswith("estimated: power model of cpu-x86")
        assert line.endswith(e["estimated"]) and "no meter here" in line
    else:
        assert e["measured"] and e["estimated"] is None and line.endswith("measured")


def test_energy_of_a_board_that_is_not_attached_comes_from_its_estimated_latency(tiny, tmp_path):
    """This machine's meters and wall time say nothing about a Jetson: the board's power model is applied at the
    board's own (roofline) FPS, labelled so; an IR file (no graph to estimate from) is refused in one line."""
    out = tmp_path / "e.json"
    _bench(tiny["onnx"], "--iters", "20", "--warmup", "2", "--image-size", "32", "--json", out)
    res = _bench(tiny["onnx"], "--iters", "20", "--warmup", "2", "--image-size", "32", "--energy", "auto",
                 "--target", "jetson-orin-nano", "--json", out)
    line = next(x for x in res.output.splitlines() if x.startswith("energy:"))
    e = json.loads(out.read_text())["energy"]
    assert not e["measured"] and e["estimated"].startswith("estimated: power model of jetson-orin-nano")
    assert "at an estimated" in e["estimated"]
    assert "latency estimated on jetson-orin-nano at fp16" in e["estimated"] and "per-node roofline" in e["estimated"]
    assert line.endswith(e["estimated"])
    assert "measured on this machine" not in line
    bad = runner.invoke(app, ["bench", str(tiny["xml"]), "--energy", "auto", "--target", "jetson-orin-nano"])
    from edgekd.errors import ConfigError  # main() turns it into one line and exit 2

    assert isinstance(bad.exception, ConfigError) and "needs the .onnx file (got m-fp32.xml)" in str(bad.exception)
