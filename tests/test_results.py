"""Typed stage results (edgekd/results.py): each round-trips the record layout the stage caches always had, so
older run folders stay reusable; a score is named by its metric (segmentation's mIoU never travels as top1); and
no module outside results.py builds a score key from a metric name. No training."""

import re
from pathlib import Path

from edgekd.artifacts import ExportedModel, LatencyResult, ParityResult
from edgekd.results import (
    BenchResult,
    BenchRow,
    BundleResult,
    ModelsResult,
    RobustnessResult,
    Scores,
    StudentResult,
    TeacherResult,
    VerifyReport,
    card_scores,
)

PKG = Path(__file__).resolve().parent.parent / "edgekd"


def test_teacher_and_student_round_trip_their_records():
    rec = {"teachers": [{"arch": "resnet56", "kind": "onnx", "test_top1": 83.2}], "arch": "resnet56",
           "how": "ONNX file", "metric": "top1", "test_top1": 83.2}
    t = TeacherResult.from_json(rec)
    assert t.score == 83.2 and t.main["kind"] == "onnx" and t.to_json() == rec
    card = {"path": "s.safetensors", "arch": "mobilenetv3_small_100", "role": "student", "metric": "top1",
            "test_top1": 70.5, "test_macro_f1": 70.1, "best_epoch": 3, "sweep": {"winner": {"alpha": 0.5}}}
    s = StudentResult.from_json(card)
    assert s.score == 70.5 and s.test.values == {"top1": 70.5, "macro_f1": 70.1} and s.get("best_epoch") == 3
    assert s.get("teacher_check") is None and s.to_json() == card


def test_segmentation_scores_are_named_miou():
    rep = {"metric": "miou", "miou": 71.9, "fg_iou": 60.0, "per_class": []}
    keys = card_scores(rep)
    assert keys == {"metric": "miou", "test_miou": 71.9, "test_fg_iou": 60.0}
    assert Scores.read(keys, "test").main == 71.9
    ver = VerifyReport(20, "miou", 74.0, 71.9, [])
    assert ver.to_json()["student_miou"] == 71.9 and "student_top1" not in ver.to_json()
    assert ver.manifest_metrics() == {"metric": "miou", "teacher_miou": 74.0, "student_fp32_miou": 71.9,
                                      "samples": 20}


def test_models_verify_and_bench_round_trip():
    m = ModelsResult([ExportedModel("onnx", "int8", "/r/a.onnx", ("/r/a.onnx",))])
    assert ModelsResult.from_json(m.to_json()) == m and m.formats() == ["onnx"]
    p = ParityResult("onnx-int8", "onnxruntime", "int8", "int8", 10, 0.9, 0.1, 0.01, 0.99, 70.0, 71.0, -1.0, False,
                     "agreement 0.9 < 0.95")
    v = VerifyReport.from_json(VerifyReport(10, "top1", 83.2, 71.0, [p]).to_json())
    assert v.failed() == [p] and v.passed() == set() and v.score_of("onnx-int8") == 70.0
    lat = LatencyResult("onnx-int8", "onnxruntime", "int8", "int8", 2, 10, 1.0, 1.1, 1.2, 1.0, 1000.0, 1.0,
                        latencies_ms=(1.0, 1.1))
    energy = {"j_per_frame": 0.002, "estimated": "power model"}
    b = BenchResult([BenchRow(lat, energy), BenchRow(lat)])
    js = b.to_json()
    assert js[0]["energy_mj_per_frame"] == 2.0 and "energy" not in js[1]
    assert BenchResult.from_json(js) == b and b.by_model()["onnx-int8"]["p50_ms"] == 1.0


def test_bundle_rows_of_older_records_are_read_under_score():
    old = {"path": "b", "tarball": "b.tar.gz", "manifest": {}, "digest": "0" * 64,
           "rows": [{"model": "student x", "top1": 90.0, "metric": "top1"}]}
    assert BundleResult.from_json(old).rows[0]["score"] == 90.0
    assert RobustnessResult.from_json({"models": []}).models == []


def test_no_module_but_results_builds_score_keys_from_a_metric():
    pattern = re.compile(r"""f["'](test|teacher|student)_\{""")
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "results.py" and pattern.search(p.read_text())]
    assert offenders == []
