"""The generated tables of README.md and docs/*.md equal what benchmarks/results/*.json give
(benchmarks/readme_tables.py --check), each in exactly one of those files, and the renderer on tiny fake results:
the machine line from a `machine` record, "machine not recorded" without one, the demo table's ranges over passes,
and --check naming a stale, missing or duplicated table with its file. No training, no timing."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "readme_tables.py"


@pytest.fixture(scope="module")
def rt():
    spec = importlib.util.spec_from_file_location("readme_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["readme_tables"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def committed_texts(rt) -> dict[str, str]:
    files = rt.doc_files()
    assert files[0] == ROOT / "README.md" and len(files) > 1, files  # README plus the pages under docs/
    return {rt.label(p): p.read_text() for p in files}


def test_readme_matches_committed_json(rt):
    texts = committed_texts(rt)
    assert rt.problems(texts) == []
    seen: dict[str, list[str]] = {}
    for lab, text in texts.items():
        for m in rt.BLOCK.finditer(text):
            seen.setdefault(m["name"], []).append(lab)
            # every table names its machine (or says it was not recorded), or each machine with its rows
            assert m["body"].startswith(("Machine: ", "Machine not recorded", "Machines differ by row: ")), (
                lab, m["name"])
    assert set(seen) == set(rt.TABLES)
    assert {name: labs for name, labs in seen.items() if len(labs) != 1} == {}  # each table in exactly one file


MACHINE = {"cpu": "Fake CPU 9000", "logical_cpus": 4, "physical_cores": 2, "isa": ["avx2", "avx512_vnni"],
           "usable_cpus": 2, "versions": {"cpu": "Fake CPU 9000"}}


def kd_doc(**extra) -> dict:
    rows = [{"loss": loss, "seed": s, "test_top1": top1, "seconds": 100.0 + s}
            for loss, s, top1 in (("ce", 0, 80.0), ("kd", 0, 82.0), ("ce", 1, 81.0), ("kd", 1, 84.0))]
    return {"args": {"epochs": "3"}, "rows": rows, **extra}


def test_machine_line_from_record_and_not_recorded(rt, tmp_path):
    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps(kd_doc(machine=MACHINE)))
    out = rt.render("kd_vs_scratch", tmp_path)
    first = out.splitlines()[0]
    assert first.startswith("Machine: Fake CPU 9000, 2 usable CPUs, ISA flags avx2, avx512_vnni (not: avx512f")
    assert "seeds 0, 1, 3 epochs" in first
    assert "| Hinton KD (T=4, alpha=0.9) | 2 | 83.00 | 82.00, 84.00 | 100 |" in out

    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps(kd_doc()))  # no machine, no versions
    assert rt.render("kd_vs_scratch", tmp_path).startswith("Machine not recorded (the JSON has no machine record)")
    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps(kd_doc(versions={"cpu": "AMD EPYC"})))
    assert rt.render("kd_vs_scratch", tmp_path).startswith(
        "Machine not recorded (the JSON's library versions name the CPU only: AMD EPYC; ISA flags unknown)")
    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps(kd_doc(system={**MACHINE, "isa": []})))
    assert "ISA flags none of avx2" in rt.render("kd_vs_scratch", tmp_path)


def demo_doc() -> dict:
    def model(key, runtime, precision, top1, passes, parity="pass"):
        return {"key": key, "model": "student tiny", "runtime": runtime, "precision": precision,
                "executed": precision, "top1": top1, "parity": parity, "size_mb": 1.0,
                "p50_ms_per_pass": passes, "p50_ms": sorted(passes)[len(passes) // 2],
                "fps": 1000 / sorted(passes)[len(passes) // 2]}

    return {"compress": {"command": ["edgekd", "compress", "--out", "runs/x"], "wall_s": 275.0, "peak_rss_mb": 1700,
                         "reused_stages": False},
            "retime": {"passes": 3, "iters": 200, "warmup": 20, "threads": 2, "batch": 1},
            "metric": "top1", "test_samples": 1000, "teacher_top1": 95.6, "student_top1": 90.0,
            "models": [model("student-torch", "torch", "fp32", 90.0, [5.0, 6.0, 7.0], "reference"),
                       model("onnx-fp32", "onnxruntime", "fp32", 90.0, [1.0, 1.2, 1.1]),
                       model("onnx-int8", "onnxruntime", "int8", 89.5, [2.0, 2.4, 2.2])],
            "deploy": {"model": "onnx-fp32", "fastest": "onnx-fp32", "method": "3 alternating passes",
                       "statement": "deploy onnx-fp32 (p50 1.10 ms, fastest policy): the fastest model"},
            "bundle_models": [{"format": "onnx", "precision": "fp32", "role": "deploy"},
                              {"format": "onnx", "precision": "int8", "role": "int8, for devices where int8 pays"}],
            "machine": MACHINE, "load_average_1min": {"start": 1.2, "after_compress": 3.4, "after_retime": 2.0}}


def test_demo_table_shows_ranges_and_the_bundles_statement(rt, tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps(demo_doc()))
    out = rt.render("demo", tmp_path)
    assert out.startswith("Machine: Fake CPU 9000")
    assert "re-timed in 3 alternating passes" in out.splitlines()[0]
    assert "p50 ms: median (min-max over 3 passes)" in out
    assert ("| student tiny | onnxruntime | int8 (int8) | 89.50 | 2.20 (2.00-2.40) | 455 | 1.00 | pass | "
            "int8 beside it |") in out
    assert "| student tiny | onnxruntime | fp32 (fp32) | 90.00 | 1.10 (1.00-1.20) | 909 | 1.00 | pass | deploy |" in out
    assert "onnxruntime int8 -0.50" in out
    assert "ONNX Runtime's int8 runs at 0.50x its FP32 speed" in out
    assert '"deploy onnx-fp32 (p50 1.10 ms, fastest policy): the fastest model"' in out
    assert "4 min 35 s wall, peak RSS 1.7 GB" in out
    assert "after compress and after the re-timing: 1.2, 3.4, 2.0 on 2 CPUs" in out


def test_check_names_a_stale_table_and_update_fixes_it(rt, tmp_path):
    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps(kd_doc()))
    stale = f"intro\n\n{rt.opening('kd_vs_scratch')}\nold numbers\n{rt.CLOSING}\n\nafter\n"
    bad = rt.problems({"README.md": "no tables here", "docs/x.md": stale}, tmp_path, ["kd_vs_scratch"])
    assert bad == ["docs/x.md: table 'kd_vs_scratch' differs from kd_vs_scratch.json; run python "
                   "benchmarks/readme_tables.py"]
    fixed = rt.update(stale, tmp_path)
    assert rt.problems({"docs/x.md": fixed}, tmp_path, ["kd_vs_scratch"]) == []
    assert fixed.startswith("intro\n\n") and fixed.endswith(f"{rt.CLOSING}\n\nafter\n")
    assert rt.update(fixed, tmp_path) == fixed
    missing = rt.problems({"README.md": "no markers", "docs/x.md": "none"}, tmp_path, ["kd_vs_scratch"])
    assert len(missing) == 1 and missing[0].startswith("generated table 'kd_vs_scratch' is missing")
    assert missing[0].endswith("README.md, docs/x.md")


def test_a_table_in_two_files_is_reported_naming_both(rt, tmp_path):
    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps(kd_doc()))
    block = f"{rt.opening('kd_vs_scratch')}\n{rt.render('kd_vs_scratch', tmp_path)}{rt.CLOSING}\n"
    bad = rt.problems({"README.md": block, "docs/a.md": "text", "docs/b.md": f"intro\n\n{block}"}, tmp_path,
                      ["kd_vs_scratch"])
    assert bad == ["README.md, docs/b.md: table 'kd_vs_scratch' appears 2 times; keep it in one file"]
    twice = rt.problems({"docs/a.md": block + "\n" + block}, tmp_path, ["kd_vs_scratch"])  # twice in one file too
    assert twice == ["docs/a.md, docs/a.md: table 'kd_vs_scratch' appears 2 times; keep it in one file"]


def test_check_cli_exit_code(rt, tmp_path):
    """--check over copies of README.md and docs/*.md (--files): 0 as committed; 1 naming the file where one table
    was edited; 1 naming both files when a table is copied into another."""
    (tmp_path / "docs").mkdir()
    files = []
    for p in rt.doc_files():
        rel = p.relative_to(ROOT).as_posix()
        (tmp_path / rel).write_text(p.read_text())
        files.append(rel)

    def check():
        proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--files", *files], capture_output=True,
                              text=True, cwd=tmp_path)
        return proc.returncode, proc.stdout.strip().splitlines()

    assert check() == (0, [])
    holder = next(f for f in files if rt.opening("kd_vs_scratch") in (tmp_path / f).read_text())
    text = (tmp_path / holder).read_text()
    (tmp_path / holder).write_text(text.replace("| labels only (CE) | 2 |", "| labels only (CE) | 3 |"))
    assert check() == (1, [f"{holder}: table 'kd_vs_scratch' differs from kd_vs_scratch.json; run python "
                           f"benchmarks/readme_tables.py"])
    (tmp_path / holder).write_text(text)
    block = rt.BLOCK.search(text[text.index(rt.opening("kd_vs_scratch")):]).group(0)
    other = next(f for f in files if f != holder)
    (tmp_path / other).write_text((tmp_path / other).read_text() + "\n" + block + "\n")
    first, second = sorted((holder, other), key=files.index)
    assert check() == (1, [f"{first}, {second}: table 'kd_vs_scratch' appears 2 times; keep it in one file"])


def test_rows_from_several_machines_name_each_machine_with_its_rows(rt, tmp_path):
    """A benchmark that adds rows over several invocations (distill_cifar10 --runs/--seeds) keeps each row's
    machine: one record when all agree, else every machine with its rows, and old rows without one said so."""
    from edgekd.bench.system import row_machines

    other = {**MACHINE, "cpu": "Other CPU", "isa": ["avx2"]}
    rows = kd_doc()["rows"]
    label = lambda r: f"{r['loss']}-s{r['seed']}"  # noqa: E731
    assert row_machines([{**r, "machine": MACHINE} for r in rows], label) == {"machine": MACHINE}
    mixed = [{**rows[0], "machine": MACHINE}, {**rows[1], "machine": other}, {**rows[2], "machine": MACHINE},
             rows[3]]
    got = row_machines(mixed, label)
    assert "machine" not in got
    assert [(g["rows"], (g["machine"] or {}).get("cpu")) for g in got["row_machines"]] == [
        (["ce-s0", "ce-s1"], "Fake CPU 9000"), (["kd-s0"], "Other CPU"), (["kd-s1"], None)]
    (tmp_path / "kd_vs_scratch.json").write_text(json.dumps({**kd_doc(), **got}))
    first = rt.render("kd_vs_scratch", tmp_path).splitlines()[0]
    assert first.startswith("Machines differ by row: ce-s0, ce-s1 on Fake CPU 9000, 2 usable CPUs, ISA flags avx2, "
                            "avx512_vnni (not: "), first
    assert "; kd-s0 on Other CPU, 2 usable CPUs, ISA flags avx2 (not: " in first
    assert first.split("; ")[-2] == "kd-s1 on a machine not recorded", first


def test_kd_vs_loop_robustness_table_from_cells(rt):
    """The robustness table of benchmarks/kd_vs_loop.py (rendered once its cells exist): caption from the scored
    cells, one row per model; a JSON from before the scores were added is refused."""
    scored = {"samples": 1000, "corruptions": ["gaussian_noise", "fog"], "severities": [1, 2, 3, 4, 5],
              "library": "imagecorruptions 1.1.2"}
    rows = [{"run": "teacher", "precision": "fp32", "runtime": "onnxruntime", "seeds": [0, 1], "clean": 83.0,
             "mca": 55.0, "mca_per_seed": [54.0, 56.0], "relative": 55 / 83, "samples": 1000},
            {"run": "d", "precision": "int8", "runtime": "onnxruntime", "seeds": [0, 1], "clean": 70.0,
             "mca": 45.0, "mca_per_seed": [44.0, 46.0], "relative": 45 / 70, "samples": 1000}]
    doc = {"robustness": rows, "cells": [{"seed": 0, "robustness": scored}, {"seed": 1, "robustness": scored}]}
    caption, md = rt.kd_vs_loop_robustness([doc])
    assert caption == ("1000 class-balanced test images, 2 ImageNet-C corruptions (gaussian_noise, fog) x severities "
                       "1-5, imagecorruptions 1.1.2; seeds 0, 1"), caption
    assert "| teacher ResNet-56 (ONNX), onnxruntime fp32 | 2 | 83.00 | 55.00 (54.00, 56.00) | 0.663 |" in md
    assert "| (d) edgekd best recipe (models/cifar10-resnet56-best.yaml), onnxruntime int8 | 2 | 70.00 |" in md
    with pytest.raises(ValueError, match="no robustness scores"):
        rt.kd_vs_loop_robustness([{"robustness": [], "cells": [{"seed": 0}]}])


def seg_doc(scratch: dict, kd: dict, gain: list[float] | None) -> dict:
    def row(model, per_seed):
        vals = list(per_seed.values())
        return {"model": model, "per_seed": {s: {"miou": v} for s, v in per_seed.items()},
                "miou": sum(vals) / len(vals), "crack_iou": 50.0, "crack_dice": 67.0, "crack_precision": 64.0,
                "crack_recall": 71.0, "fps": 300.0, "p50_ms": 3.3, "p50_ms_passes": [3.3, 3.2, 3.4]}

    rows = [row("teacher", {"0": 76.0}), row("scratch", scratch), row("kd", kd), row("int8", kd)]
    rows[-1].update(fpga_fps=4000.0, fpga_frames_per_j=2000.0)
    doc = {"args": {"passes": "3", "iters": "100"}, "seeds": [int(s) for s in scratch], "rows": rows,
           "seed_result": {"fps": 398.0, "frames_per_j": 204.99, "miou": 71.92}, "machine": MACHINE}
    if gain is not None:
        doc["kd_minus_scratch_miou"] = gain
    return doc


def test_seg_table_states_kd_gain_per_seed_against_scratch_spread(rt, tmp_path):
    scratch, kd = {"0": 74.7, "1": 74.9, "2": 75.1}, {"0": 75.3, "1": 75.8, "2": 75.5}
    (tmp_path / "seg_crackforest.json").write_text(json.dumps(seg_doc(scratch, kd, [0.6, 0.9, 0.4])))
    out = rt.render("seg_crackforest", tmp_path)
    assert "| scratch | 74.90 (74.70, 74.90, 75.10) |" in out
    assert "KD − scratch mIoU per seed: +0.60, +0.90, +0.40 (mean +0.63); scratch's spread over seeds: 0.40." in out
    # one seed has no spread to compare against, and a JSON without the gains (older runs) gets no line
    (tmp_path / "seg_crackforest.json").write_text(json.dumps(seg_doc({"0": 74.7}, {"0": 75.3}, [0.6])))
    assert "KD − scratch" not in rt.render("seg_crackforest", tmp_path)
    (tmp_path / "seg_crackforest.json").write_text(json.dumps(seg_doc(scratch, kd, None)))
    assert "KD − scratch" not in rt.render("seg_crackforest", tmp_path)
