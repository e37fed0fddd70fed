"""benchmarks/plain_vs_edgekd.py without training: its metric, the table and goal checks from fake per-seed results,
and the edgekd command line (seed and a user recipe merged into one recipe)."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("plain_vs_edgekd", ROOT / "benchmarks" / "plain_vs_edgekd.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rec(fp32: float, int8: float, wall: float) -> dict:
    return {"fp32": {"top1": fp32, "macro_f1": fp32 - 1}, "int8": {"top1": int8, "macro_f1": int8 - 1},
            "wall_s": wall, "best_epoch": 3}


def test_score_matches_edgekd_metrics(bench):
    from edgekd.distill.metrics import macro_f1, top1

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)  # class 3 never true, sometimes predicted
    s = bench.score(logits, labels)
    assert s["top1"] == pytest.approx(top1(logits, labels))
    assert s["macro_f1"] == pytest.approx(macro_f1(logits, labels, 4))


def test_summary_and_goals(bench):
    records = {"plain": {0: rec(80.0, 79.0, 100.0), 1: rec(82.0, 81.5, 120.0)},
               "edgekd": {0: rec(83.0, 82.5, 300.0), 1: rec(81.0, 79.5, 340.0)}}
    s = bench.summarize(records, [0, 1])
    plain, ek = s["rows"]
    assert plain["fp32_top1"] == 81.0 and ek["fp32_top1"] == 82.0
    assert ek["fp32_top1_per_seed"] == [83.0, 81.0]
    assert ek["int8_minus_fp32_per_seed"] == [-0.5, -1.5] and ek["int8_minus_fp32"] == -1.0
    assert plain["wall_s"] == 110.0 and ek["wall_s"] == 320.0
    assert ek["wall_ratio_vs_plain"] == pytest.approx(320 / 110) and plain["wall_ratio_vs_plain"] == 1.0
    g = s["goals"]
    assert g["edgekd_fp32_beats_plain"]["passed"] and g["edgekd_fp32_beats_plain"]["margin"] == 1.0
    assert g["edgekd_fp32_beats_plain"]["seeds_won"] == 1
    assert g["edgekd_int8_within_1pt"]["passed"] and g["edgekd_int8_within_1pt"]["worst_seed"] == -1.5
    assert g["edgekd_wall_le_3x"]["passed"] and g["at_least_2_seeds"]["passed"]
    text = bench.table(s)
    assert "| 82.00 (83.00, 81.00) |" in text and "2.91x" in text

    records["edgekd"][1] = rec(78.0, 76.0, 400.0)  # loses on FP32, int8 drops 1.25 on average, 3.18x the time
    g = bench.summarize(records, [0, 1])["goals"]
    assert not g["edgekd_fp32_beats_plain"]["passed"]
    assert not g["edgekd_int8_within_1pt"]["passed"]
    assert not g["edgekd_wall_le_3x"]["passed"]
    assert not bench.summarize(records, [0])["goals"]["at_least_2_seeds"]["passed"]
    assert all("NO" in line for line in bench.goal_lines(g)[:3])


def test_edgekd_command_merges_recipe_and_seed(bench, tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("teacher_epochs: 2\nseed: 9\n")
    args = SimpleNamespace(data=Path("/data/hymenoptera"), student="resnet10t", image_size=64, epochs=3,
                           max_train_samples=40, edgekd_args=f"--recipe {user} --bench-iters 10")
    cmd, run_dir = bench.edgekd_command(args, 1, tmp_path / "work")
    assert cmd[:4] == [sys.executable, "-m", "edgekd", "compress"]
    assert cmd[cmd.index("--student") + 1] == "resnet10t" and cmd[cmd.index("--epochs") + 1] == "3"
    assert cmd[cmd.index("--max-train-samples") + 1] == "40" and cmd[-2:] == ["--bench-iters", "10"]
    assert cmd.count("--recipe") == 1 and run_dir == tmp_path / "work" / "edgekd-s1"
    assert yaml.safe_load(Path(cmd[cmd.index("--recipe") + 1]).read_text()) == {"teacher_epochs": 2, "seed": 1}
