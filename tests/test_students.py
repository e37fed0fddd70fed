"""Picking the student for a latency budget (issue 21): the selection on a fake latency table, the "nothing fits"
line, budgets in FPS, usage errors, `edgekd students` end to end on two tiny candidates (estimated and measured),
and a compress run's budget choosing its student before any training."""

import json
import subprocess
import sys

import pytest

from edgekd.errors import ConfigError
from edgekd.students import Row, candidate_list, choose, nothing_fits, order, plan_for, reason_line, resolve_budget
from edgekd.targets import load_target


def _table() -> list[Row]:
    """A fake latency table (ms): no export, no timing."""
    return [Row("tiny", 0.6, 0.02, 1.1, "measured", "fp32", "onnxruntime"),
            Row("small", 1.5, 0.06, 2.9, "measured", "fp32", "onnxruntime"),
            Row("mid", 4.2, 0.22, 6.0, "measured", "fp32", "openvino"),
            Row("big", 11.2, 1.8, 14.0, "measured", "fp32", "openvino"),
            Row("odd-op", 8.0, 0.5, 3.0, "measured", "fp32", "onnxruntime",
                preflight="TensorRT (op list check) cannot run Einsum")]


@pytest.mark.parametrize("budget,expected", [(2, "tiny"), (5, "small"), (10, "mid"), (20, "big"), (6.0, "mid")])
def test_the_largest_candidate_within_the_budget_is_chosen(budget, expected):
    assert choose(_table(), budget).name == expected


def test_a_candidate_that_fails_pre_flight_is_never_chosen():
    rows = _table()
    # odd-op (8 M parameters, 3 ms) would be the largest within 5 ms, but a runtime of the target refuses its op
    assert choose(rows, 5).name == "small"
    assert not rows[4].fits(5) and rows[4].latency_ms <= 5
    assert [r.name for r in order(rows, 5)] == ["small", "tiny", "mid", "big", "odd-op"]


def test_equal_capacity_goes_to_the_faster_candidate():
    rows = [Row("a-slow", 3.0, 0.3, 4.0, "estimated", "int8"), Row("b-fast", 3.0, 0.3, 2.0, "estimated", "int8"),
            Row("c-small", 1.0, 0.1, 1.0, "estimated", "int8")]
    assert choose(rows, 5).name == "b-fast"
    assert choose(list(reversed(rows)), 5).name == "b-fast"


def test_nothing_fits_names_the_fastest_candidate_and_its_latency():
    with pytest.raises(ConfigError) as exc:
        choose(_table(), 1.0, "cpu-x86")
    msg = str(exc.value)
    assert "no candidate student meets 1 ms on cpu-x86: the fastest is tiny at 1.10 ms (measured, onnxruntime fp32)" \
        in msg
    assert "\n" not in msg
    est = [Row("x", 1.0, 0.1, 3.456, "estimated", "int8"), Row("y", 2.0, 0.2, 9.0, "estimated", "int8")]
    assert "the fastest is x at 3.46 ms (estimated at int8)" in nothing_fits(est, 1.0, "jetson-orin-nano")


def test_nothing_passes_pre_flight():
    rows = [Row("a", 1.0, 0.1, None, "-", preflight="FPGA flow cannot run HardSwish")]
    with pytest.raises(ConfigError, match="none of the 1 passes pre-flight: a: FPGA flow cannot run HardSwish"):
        choose(rows, 100, "fpga-zu")


def test_the_reason_says_what_largest_means_and_how_latency_was_obtained():
    rows = [Row("mobilenetv3_large_100", 4.21, 0.22, 7.9, "estimated", "int8"),
            Row("resnet18", 11.2, 1.8, 12.0, "estimated", "int8"), Row("tiny", 0.5, 0.01, 1.0, "estimated", "int8")]
    line = reason_line(choose(rows, 10), rows, 10, "jetson-orin-nano")
    assert line == ("student mobilenetv3_large_100: the largest (4.21 M parameters) of the 2 of 3 candidates that "
                    "pass pre-flight and run within 10 ms on jetson-orin-nano (7.90 ms, estimated at int8)")


def test_budget_in_fps_and_defaults():
    cpu = load_target("cpu-x86")
    assert resolve_budget(None, 30, cpu)[0] == pytest.approx(1000 / 30)
    assert resolve_budget(None, 30, cpu)[1] == "33.3 ms (--budget-fps 30: 1000 / FPS)"
    assert resolve_budget(10, None, cpu) == (10.0, "10 ms (--budget-ms)")
    assert resolve_budget(None, None, cpu) == (30.0, "30 ms (cpu-x86's latency_budget_ms)")
    with pytest.raises(ConfigError, match="not both"):
        resolve_budget(10, 30, cpu)
    with pytest.raises(ConfigError, match="must be positive"):
        resolve_budget(None, 0, cpu)
    with pytest.raises(ConfigError, match="no latency budget"):
        resolve_budget(None, None, cpu, default_to_target=False)


def test_candidate_lists():
    assert "mobilevit_xxs" in candidate_list("classify", None) and "resnet18" in candidate_list("classify", None)
    assert all(n.startswith("unet_") for n in candidate_list("segment", None))
    assert candidate_list("classify", "resnet18, mobilenetv3_small_050") == ["resnet18", "mobilenetv3_small_050"]
    added = candidate_list("classify", "+convnext_atto,+resnet18")
    assert added[-1] == "convnext_atto" and added.count("resnet18") == 1
    with pytest.raises(ConfigError, match="either every name starts with"):
        candidate_list("classify", "a,+b")
    with pytest.raises(ConfigError, match="is a segmentation model"):
        candidate_list("classify", "unet_plain16")


def test_curated_candidates_exist_in_the_installed_timm():
    import timm

    from edgekd.models.segmentation import is_seg_model

    for name in candidate_list("classify", None):
        assert timm.is_model(name), name
    for name in candidate_list("segment", None):
        enc = name.removeprefix("unet_")
        assert is_seg_model(name) and (enc.startswith("plain") or timm.is_model(enc)), name


def test_measured_or_estimated_by_target():
    assert plan_for(load_target("cpu-x86")).kind == "measured"
    assert plan_for(load_target("cpu-x86"), int8=True).precisions == ("fp32", "int8")
    nano = plan_for(load_target("jetson-orin-nano"))
    assert (nano.kind, nano.precisions) == ("estimated", ("int8",))
    pi = plan_for(load_target("cpu-arm64"))  # int8 is not fitted there: fp32, and the plan says so
    assert (pi.kind, pi.precisions) == ("estimated", ("fp32",)) and "no parameters are fitted" in pi.note


def _edgekd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args,match", [
    (["--budget-ms", "5", "--budget-fps", "30"], "give --budget-ms or --budget-fps, not both"),
    (["--budget-fps", "-3"], "--budget-fps must be positive"),
    (["--task", "detect"], "--task 'detect': choose classify or segment"),
    (["--candidates", "resnet18,+mobilevit_xxs"], "either every name starts with +"),
    (["--target", "nope"], "unknown target 'nope'"),
    (["--image-size", "8"], "--image-size 8: at least 32"),
])
def test_students_usage_errors_are_one_line_exit_2(args, match):
    res = _edgekd("students", *args)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert len(lines) == 1 and match in lines[0], res.stderr
    assert "Traceback" not in res.stderr


TINY = "mobilenetv3_small_050,resnet10t"


def test_students_on_a_board_is_estimated_and_labelled():
    res = _edgekd("students", "--target", "jetson-orin-nano", "--budget-ms", "100", "--candidates", TINY,
                  "--image-size", "64", "--json")
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert rec["latency"] == "estimated" and rec["method"].startswith("estimated, not measured")
    assert [r["latency"] for r in rec["rows"]] == ["estimated", "estimated"]
    assert all(r["precision"] == "int8" and "per-node roofline" in r["note"] for r in rec["rows"])
    assert rec["choice"] == "resnet10t"  # 4.9 M parameters, both within 100 ms
    assert rec["rows"][0]["name"] == "resnet10t" and rec["rows"][0]["fits"] is True
    table = _edgekd("students", "--target", "jetson-orin-nano", "--budget-ms", "100", "--candidates", TINY,
                    "--image-size", "64")
    assert table.returncode == 0 and "estimated (int8)" in table.stdout and "estimated, not measured" in table.stdout
    assert "student resnet10t: the largest" in table.stdout


def test_students_nothing_fits_prints_the_table_then_one_line():
    res = _edgekd("students", "--target", "jetson-orin-nano", "--budget-ms", "0.01", "--candidates", TINY,
                  "--image-size", "64")
    assert res.returncode == 2
    assert "resnet10t" in res.stdout and "mobilenetv3_small_050" in res.stdout  # the table still shows
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert len(lines) == 1 and "no candidate student meets 0.01 ms on jetson-orin-nano: the fastest is" in lines[0]


def test_students_on_this_cpu_is_measured():
    res = _edgekd("students", "--target", "cpu-x86", "--budget-ms", "1000", "--candidates", TINY, "--image-size", "64",
                  "--passes", "2", "--seconds", "0.1", "--json")
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert rec["latency"] == "measured" and "2 alternating passes" in rec["method"] and "machine" in rec
    for r in rec["rows"]:
        assert r["latency"] == "measured" and r["latency_ms"] > 0 and r["runtime"] in ("onnxruntime", "openvino")
        assert set(r["configs"]) == {"onnxruntime fp32", "openvino fp32"}
        assert r["latency_ms"] == min(r["configs"].values())
    assert rec["choice"] == "resnet10t"


# --- compress: the budget chooses the student before any training -----------------------------------------------


def _run(tmp_path, **kw):
    from edgekd.config import make_config, resolve
    from edgekd.pipeline import Run

    cfg = resolve(make_config(None, data="builtin:shapes10", max_train_samples=40, max_eval_samples=20, **kw))
    return Run(cfg, load_target("jetson-orin-nano"), tmp_path)


def test_a_compress_budget_chooses_the_student_from_the_candidates(tmp_path, monkeypatch):
    from edgekd import students

    seen = {}

    def fake(names, target, size, num_classes, plan, passes, seconds):
        seen.update(names=names, size=size, num_classes=num_classes, kind=plan.kind)
        lat = {"mobilevit_xxs": 4.0, "resnet10t": 9.0, "resnet18": 15.0}
        par = {"mobilevit_xxs": 0.95, "resnet10t": 4.9, "resnet18": 11.2}
        return [Row(n, par[n], 0.1, lat[n], "estimated", "int8") for n in names]

    monkeypatch.setattr(students, "evaluate", fake)
    r = _run(tmp_path, budget_ms=10, candidates=["mobilevit_xxs", "resnet10t", "resnet18"])
    assert r.cfg.student == "mobilevit_xxs"  # resolve's default, before the choice
    rec = students.for_run(r, explicit_student=False)
    assert r.cfg.student == "resnet10t"
    assert seen == {"names": ["mobilevit_xxs", "resnet10t", "resnet18"], "size": (64, 64), "num_classes": 10,
                    "kind": "estimated"}
    assert rec["choice"] == "resnet10t" and rec["budget_ms"] == 10 and "estimated" in rec["method"]
    assert rec["reason"].startswith("student resnet10t: the largest (4.90 M parameters) of the 2 of 3")
    # a rerun of the same folder reuses the recorded choice instead of timing again
    (tmp_path / "run.json").write_text(json.dumps({"student_choice": rec}))
    monkeypatch.setattr(students, "evaluate", lambda *a, **k: pytest.fail("timed again"))
    r2 = _run(tmp_path, budget_ms=10, candidates=["mobilevit_xxs", "resnet10t", "resnet18"])
    assert students.for_run(r2, explicit_student=False)["choice"] == "resnet10t" and r2.cfg.student == "resnet10t"


def test_a_compress_budget_nothing_fits_and_a_given_student_that_misses(tmp_path, monkeypatch):
    from edgekd import students

    monkeypatch.setattr(students, "evaluate", lambda names, *a: [Row(n, 1.0, 0.1, 50.0, "estimated", "int8")
                                                                 for n in names])
    r = _run(tmp_path, budget_fps=100, candidates=["resnet10t"])
    with pytest.raises(ConfigError, match="no candidate student meets 10 ms on jetson-orin-nano: the fastest is "
                                          "resnet10t at 50.00 ms"):
        students.for_run(r, explicit_student=False)
    r = _run(tmp_path, budget_ms=10, student="resnet18")
    rec = students.for_run(r, explicit_student=True)
    assert r.cfg.student == "resnet18" and rec["misses"] is True
    assert "student resnet18 (given with --student, kept) misses the 10 ms budget" in rec["reason"]


def test_budget_config_errors():
    from edgekd.config import make_config, resolve

    with pytest.raises(ConfigError, match="budget_ms or budget_fps, not both"):
        resolve(make_config(None, budget_ms=5, budget_fps=30))
    with pytest.raises(ConfigError, match="add budget_ms or budget_fps"):
        resolve(make_config(None, candidates=["resnet18"]))
    res = _edgekd("compress", "--budget-ms", "5", "--budget-fps", "30")
    assert res.returncode == 2 and "give --budget-ms or --budget-fps, not both" in res.stderr


def _bench(*rows):
    """A bench stage result with one latency row per (model, p50 ms)."""
    from edgekd.artifacts import LatencyResult
    from edgekd.results import BenchResult, BenchRow

    return BenchResult([BenchRow(LatencyResult(m, "x", "int8", "int8", 2, 10, ms, ms, ms, ms, 1000 / ms, 1.0))
                        for m, ms in rows])


def test_int8_over_budget_with_fp32_layers_says_so(tmp_path):
    from types import SimpleNamespace

    from edgekd.students import int8_budget_line

    (tmp_path / "quantize.json").write_text(json.dumps({"guard": {"fp32_layers": ["stem.conv", "blocks.0"]}}))
    cpu = load_target("cpu-x86")
    bench = _bench(("onnx-fp32", 6.0), ("onnx-int8", 12.0), ("openvino-int8", 11.0))
    r = SimpleNamespace(target=cpu, root=tmp_path, results={"bench": bench})
    out = int8_budget_line(r, 10)
    assert out["meets"] is False and out["model"] == "openvino-int8" and out["latency"] == "measured"
    assert "over the 10 ms budget: the accuracy guard kept 2 layer(s) in FP32 (stem.conv, blocks.0)" in \
        out["statement"]
    assert int8_budget_line(r, 20)["meets"] is True
    (tmp_path / "quantize.json").unlink()
    assert "no layer was kept in FP32" in int8_budget_line(r, 10)["statement"]
    nano = SimpleNamespace(target=load_target("jetson-orin-nano"), root=tmp_path,
                           results={"bench": _bench(("onnx-int8@jetson-orin-nano", 3.0))})
    assert int8_budget_line(nano, 5)["latency"] == "estimated"
