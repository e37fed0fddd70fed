"""Quantization-aware distillation: the accuracy guard's search, the torch QAT route end to end (Q/DQ ONNX that
onnxruntime loads, OpenVINO INT8 IR), a kill mid-QAD that resumes, and a bound that cannot be met."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, TINY

QAD = TINY + "quantize_method: qad\nqad_epochs: 2\n"


class FakeQuantizer:
    def __init__(self) -> None:
        self.on = True

    def disable_quantization(self) -> None:
        self.on = False

    def enable_quantization(self) -> None:
        self.on = True


def _fake_model(monkeypatch, n: int, cost: list[float]):
    """n layers; layer i costs cost[i] points of accuracy while it is quantized."""
    from edgekd.quantize import guard

    groups = {f"layer{i}": [FakeQuantizer()] for i in range(n)}
    monkeypatch.setattr(guard, "layer_groups", lambda model: groups)

    def evaluate() -> float:
        return 90.0 - sum(c for (_, qs), c in zip(groups.items(), cost, strict=True) if qs[0].on)

    ranking = sorted(((f"layer{i}", c) for i, c in enumerate(cost)), key=lambda s: -s[1])
    return groups, evaluate, ranking


def test_layer_names_group_the_quantizers_of_one_op():
    from edgekd.quantize.guard import layer_of

    assert layer_of("pre_hooks.stages/1/0/conv1_1x1/conv/conv2d/0__1.0") == "stages/1/0/conv1_1x1/conv/conv2d/0"
    assert layer_of("pre_hooks.stages/1/0/conv1_1x1/conv/conv2d/0__0.0") == "stages/1/0/conv1_1x1/conv/conv2d/0"
    assert layer_of("post_hooks.stages/4/1/norm/layer_norm/0__0.0") == "stages/4/1/norm/layer_norm/0"


def test_guard_keeps_the_fewest_most_sensitive_layers_in_fp32(monkeypatch):
    from edgekd.quantize.guard import search

    cost = [0.1, 2.0, 0.05, 1.0, 0.3, 0.02, 0.01, 0.4]
    groups, evaluate, ranking = _fake_model(monkeypatch, len(cost), cost)
    res = search(object(), ranking, evaluate, 90.0, max_drop=0.5, max_layers=8)
    # int8 costs 3.88 points; layers 1 (2.0), 3 (1.0) and 7 (0.4) must go back to FP32: 0.48 left
    assert res.met and res.kept == ["layer1", "layer3", "layer7"]
    assert res.drop == pytest.approx(0.48)
    assert [q[0].on for q in groups.values()] == [True, False, True, False, True, True, True, False]
    assert {t["fp32_layers"] for t in res.tried} >= {0, 1, 2, 4, 3}


def test_guard_that_cannot_meet_the_bound_leaves_the_best_state(monkeypatch):
    from edgekd.quantize.guard import search

    cost = [1.0, 1.0, 1.0, 1.0]
    groups, evaluate, ranking = _fake_model(monkeypatch, 4, cost)
    res = search(object(), ranking, evaluate, 90.0, max_drop=0.5, max_layers=2)
    assert not res.met and len(res.kept) == 2 and res.drop == pytest.approx(2.0)
    assert sum(not q[0].on for q in groups.values()) == 2


def test_guard_with_nothing_to_do_keeps_everything_int8(monkeypatch):
    from edgekd.quantize.guard import search

    groups, evaluate, ranking = _fake_model(monkeypatch, 3, [0.1, 0.1, 0.1])
    res = search(object(), ranking, evaluate, 90.0, max_drop=0.5, max_layers=3)
    assert res.met and res.kept == [] and all(q[0].on for q in groups.values())


def _target(tmp_path: Path, formats: list[str] | None = None) -> Path:
    raw = yaml.safe_load((ROOT / "targets" / "cpu-x86.yaml").read_text())
    raw["parity"]["int8"] = {"min_top1_agreement": 0.0, "max_metric_drop": 100.0}
    if formats:
        raw["formats"] = formats
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _compress(tmp_path: Path, recipe: str, *extra: str, formats: list[str] | None = None) -> list[str]:
    (tmp_path / "r.yaml").write_text(recipe)
    return [sys.executable, "-m", "edgekd", "compress", "--target", str(_target(tmp_path, formats)), "--recipe",
            str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), *extra]


@pytest.mark.slow
def test_qad_end_to_end_exports_standard_qdq_onnx_and_an_int8_ir(tmp_path):
    import onnx

    res = subprocess.run(_compress(tmp_path, QAD + "max_accuracy_drop: 100\n"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    rep = json.loads((run / "quantize.json").read_text())
    assert rep["method"] == "qad" and len(rep["qad"]["history"]) == 2 and rep["guard"]["met"]
    assert rep["qad"]["kept"].startswith(("qad", "ptq"))
    # the exported files compute what the torch QAT model computes
    for key in ("onnx-int8", "openvino-int8"):
        assert rep["export_vs_torch_qat"][key]["top1_agreement"] >= 0.95, rep["export_vs_torch_qat"]
    m = onnx.load(str(run / "export" / "student-int8.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "FakeQuantize" not in ops
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    props = {p.key: p.value for p in m.metadata_props}
    assert props["edgekd.quantization"] == "qad" and "edgekd.preprocess" in props
    import openvino as ov

    xml = ov.Core().read_model(str(run / "export" / "student-int8.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in xml.get_ops())
    verify = json.loads((run / "verify.json").read_text())
    assert {m["model"] for m in verify["models"]} == {"onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8"}
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    assert manifest["quantization"]["method"] == "qad"


@pytest.mark.slow
def test_qad_killed_mid_way_resumes_after_its_last_epoch(tmp_path):
    cmd = _compress(tmp_path, QAD.replace("qad_epochs: 2", "qad_epochs: 5"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    pattern = "quantize/qad-*/train/*/last.pt"
    while time.time() < deadline and not list(tmp_path.joinpath("run").glob(pattern)) and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import torch

    last = list(tmp_path.joinpath("run").glob(pattern))
    assert last, "no QAD epoch checkpoint appeared before the deadline"
    done = torch.load(last[0], weights_only=True)["epoch"] + 1
    assert done < 5, "QAD finished before it could be killed"
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "distill: reused" in res.stderr and "resuming after epoch" in res.stderr
    rep = json.loads((tmp_path / "run" / "quantize.json").read_text())
    assert [h["epoch"] for h in rep["qad"]["history"]] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_bound_that_cannot_be_met_names_the_best_drop_and_keeps_the_model(tmp_path, monkeypatch):
    """2-bit quantizers wreck the model; with at most one layer allowed in FP32 the bound cannot hold."""
    from edgekd.config import make_config
    from edgekd.errors import AccuracyError
    from edgekd.pipeline import run
    from edgekd.quantize import qad
    from edgekd.targets import load_target

    real_start = qad.start

    def two_bit(*a, **k):
        model = real_start(*a, **k)
        for q in qad.quantizers(model).values():
            q.num_bits = 2
            q.set_levels()
        return model

    monkeypatch.setattr(qad, "start", two_bit)
    values = {**yaml.safe_load(TINY), "quantize_method": "ptq", "max_accuracy_drop": 0.5, "max_fp32_layers": 1,
              "epochs": 3, "max_train_samples": 256}
    target = load_target(str(_target(tmp_path, ["openvino"])))  # 2-bit has no ONNX Q/DQ form; the IR has one
    with pytest.raises(AccuracyError) as err:
        run(make_config(None, **values), target, tmp_path / "run")
    msg = str(err.value)
    assert "cannot meet --max-accuracy-drop 0.5" in msg and "best drop reached is" in msg
    assert (tmp_path / "run" / "export" / "student-int8.xml").is_file()
    rep = json.loads((tmp_path / "run" / "quantize.json").read_text())
    assert not rep["guard"]["met"] and len(rep["guard"]["fp32_layers"]) == 1
    best = min(t["drop"] for t in rep["guard"]["tried"])
    assert f"{best:.2f}" in msg and rep["guard"]["drop"] == pytest.approx(best)


def test_qad_options_are_validated():
    from edgekd.config import make_config
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="quantize_method"):
        make_config(None, quantize_method="awq")
    with pytest.raises(ConfigError, match="max_accuracy_drop"):
        make_config(None, max_accuracy_drop=-1)
    assert np.isclose(make_config(None, quantize_method="qad").qad_epochs, 3)
