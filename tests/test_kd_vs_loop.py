"""benchmarks/kd_vs_loop.py's summary on fake cells: per-seed means and spread, and epoch-cost ratios to (a)
taken only between cells of the same seed measured on the same machine. No training."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "kd_vs_loop.py"


@pytest.fixture(scope="module")
def kv():
    spec = importlib.util.spec_from_file_location("kd_vs_loop", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kd_vs_loop"] = mod
    spec.loader.exec_module(mod)
    return mod


def cell(run, seed, top1, stage=None, cpu="X"):
    c = {"run": run, "seed": seed, "test_top1": top1, "test_macro_f1": top1 - 1, "s_per_epoch": 10.0,
         "wall_s": 100.0, "machine": {"cpu": cpu, "isa": ["avx2"], "usable_cpus": 2}}
    if stage is not None:
        c["stage_s_per_epoch"] = stage
    return c


def test_means_spread_and_goals(kv):
    cells = [cell("a", 0, 66.0, 10.0), cell("a", 1, 68.0, 12.0), cell("b", 0, 72.0), cell("b", 1, 76.0),
             cell("d", 0, 77.0, 11.0), cell("d", 1, 79.0, 14.4)]
    s = kv.summarise(cells)
    rows = {r["run"]: r for r in s["rows"]}
    assert rows["b"]["mean"] == 74.0 and rows["b"]["spread"] == 4.0 and rows["b"]["per_seed"] == [72.0, 76.0]
    assert rows["d"]["epoch_cost_vs_a"] == pytest.approx((1.1 + 1.2) / 2) and rows["b"]["epoch_cost_vs_a"] is None
    assert s["goals"] == {"d_minus_b": 4.0, "d_beats_b_by_2": True, "d_minus_b_per_seed": {"0": 5.0, "1": 3.0},
                          "d_epoch_cost_le_1.2x_a": True}
    md = kv.table_md(s)
    assert "| (d) " in md and "77.00, 79.00 (2.00)" in md and "1.15x" in md
    assert "(d) - (b): +4.00 points (mean against mean; goal +2.00), per seed: seed 0 +5.00, seed 1 +3.00." in md


def test_the_per_seed_gap_pairs_only_seeds_both_runs_finished(kv):
    s = kv.summarise([cell("b", 0, 72.0), cell("d", 0, 75.0), cell("d", 1, 73.0)])
    assert s["goals"]["d_minus_b_per_seed"] == {"0": 3.0}
    assert s["goals"]["d_minus_b"] == pytest.approx(2.0)


def test_epoch_cost_ratio_needs_the_same_machine(kv):
    s = kv.summarise([cell("a", 0, 66.0, 10.0, cpu="X"), cell("d", 0, 70.0, 11.0, cpu="Y")])
    assert next(r for r in s["rows"] if r["run"] == "d")["epoch_cost_vs_a"] is None
    assert "d_epoch_cost_le_1.2x_a" not in s["goals"]


def robust(models):
    return {"samples": 1000, "models": [{"model": name, "runtime": "onnxruntime", "precision": prec, "clean": clean,
                                         "mca": mca, "relative": mca / clean} for name, prec, clean, mca in models]}


def test_robustness_rows_mean_over_seeds_with_the_teacher_once(kv):
    cells = []
    for seed, (a_mca, d_mca) in enumerate([(40.0, 50.0), (44.0, 54.0)]):
        teacher = ("teacher resnet56", "fp32", 83.0, 60.0)
        ca = cell("a", seed, 66.0)
        ca["robustness"] = robust([teacher, ("student onnx-fp32", "fp32", 66.0, a_mca)])
        cd = cell("d", seed, 70.0)
        cd["robustness"] = robust([teacher, ("student onnx-fp32", "fp32", 70.0, d_mca),
                                   ("student onnx-int8", "int8", 69.0, d_mca - 1)])
        cells += [ca, cd]
    cells.append(cell("b", 0, 72.0))  # the plain loop is not scored
    rows = {(r["run"], r["precision"]): r for r in kv.summarise(cells)["robustness"]}
    assert set(rows) == {("teacher", "fp32"), ("a", "fp32"), ("d", "fp32"), ("d", "int8")}
    assert rows["teacher", "fp32"]["mca_per_seed"] == [60.0, 60.0]  # once per seed, not once per cell
    assert rows["a", "fp32"]["mca"] == 42.0 and rows["d", "fp32"]["mca"] == 52.0
    assert rows["d", "int8"]["mca_per_seed"] == [49.0, 53.0] and rows["d", "int8"]["seeds"] == [0, 1]
    assert rows["d", "fp32"]["relative"] == pytest.approx(52.0 / 70.0)
    md = kv.robustness_md(kv.summarise(cells))
    assert "| (d) " in md and "onnxruntime int8 | 2 | 69.00 | 51.00 (49.00, 53.00) |" in md
