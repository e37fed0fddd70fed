"""The deploy choice with controlled timings: the fastest passing model under `fastest`, int8 under `int8`, ties
to int8, and a statement that names the ratio and the CPU's ISA when int8 is slower."""

import pytest

from edgekd.deploy import Candidate, alternating_medians, choose, isa_phrase

CANDS = [Candidate("onnx-fp32", "fp32"), Candidate("onnx-int8", "int8"), Candidate("openvino-fp32", "fp32"),
         Candidate("openvino-int8", "int8")]
AVX2 = ["avx2"]
# the fresh `make demo` timings of issue 18 on a 2-core AVX2 machine
DEMO = {"onnx-fp32": 3.69, "onnx-int8": 5.79, "openvino-fp32": 5.98, "openvino-int8": 7.39}


def test_fastest_policy_deploys_the_faster_fp32_and_still_carries_int8():
    d = choose(CANDS, DEMO, "fastest", AVX2)
    assert d["model"] == "onnx-fp32" and d["also"] == ["onnx-int8"]
    assert d["int8_speed_vs_fastest"] == pytest.approx(3.69 / 5.79, abs=1e-3)
    assert "int8 runs at 0.64x FP32 on this AVX2 CPU without VNNI" in d["statement"]


def test_int8_policy_deploys_int8_even_when_fp32_is_faster_here():
    d = choose(CANDS, DEMO, "int8", AVX2)
    assert d["model"] == "onnx-int8" and d["also"] == [] and "the target runs int8" in d["statement"]
    assert "int8 runs at 0.64x onnx-fp32" in d["statement"]


def test_a_faster_int8_wins_and_a_tie_goes_to_int8():
    fast = {**DEMO, "openvino-int8": 1.9}
    assert choose(CANDS, fast, "fastest", ["avx512_vnni"])["model"] == "openvino-int8"
    tie = {**DEMO, "onnx-int8": 3.9}  # 5.7 % slower than onnx-fp32: within the 10 % margin
    d = choose(CANDS, tie, "fastest", AVX2)
    assert d["model"] == "onnx-int8" and "a tie, which goes to int8" in d["statement"] and d["also"] == []


def test_no_int8_under_the_int8_policy_is_refused():
    with pytest.raises(ValueError, match="no int8 model passed verify"):
        choose([Candidate("onnx-fp32", "fp32")], {"onnx-fp32": 1.0}, "int8", AVX2)
    assert choose([Candidate("onnx-fp32", "fp32")], {"onnx-fp32": 1.0}, "fastest", AVX2)["also"] == []


def test_isa_phrases():
    assert isa_phrase(["avx2"]) == "this AVX2 CPU without VNNI"
    assert isa_phrase(["avx2", "avx512f"]) == "this AVX-512 CPU without VNNI"
    assert isa_phrase(["avx2", "avx512f", "avx512_vnni", "amx_int8"]) == "this CPU with AVX-512 VNNI and AMX"


def test_alternating_passes_interleave_and_take_the_median_of_all_calls():
    order = []

    def once(k):
        order.append(k)
        return {"a": [1.0, 9.0], "b": [2.0, 2.0]}[k]

    med = alternating_medians(once, ["a", "b"], 3)
    assert order == ["a", "b"] * 3 and med == {"a": 5.0, "b": 2.0}


def _records(run):
    """The finished stages of a run folder, as pipeline.run hands them to the bundle stage (an opt-in stage that
    was off, e.g. robustness, has no record)."""
    from edgekd import pipeline
    from edgekd.stages import STAGES

    records = {st: pipeline._load_record(run / "stages" / f"{st.name}.json", run)
               for st in STAGES if st.name != "bundle"}
    assert all(rec is not None for st, rec in records.items() if st.name in ("verify", "bench"))
    return {st.name: st.load(rec["result"]) for st, rec in records.items() if rec is not None}


@pytest.mark.slow
@pytest.mark.parametrize("fast", ["onnx-fp32", "openvino-int8"])
def test_the_bundle_carries_the_timed_choice_and_the_int8_model(tiny_run, tmp_path, monkeypatch, fast):
    """The tiny run's bundle stage again under a `fastest` CPU target, with timings set: a faster FP32 model is
    deployed and the best int8 model rides along (manifest, report and roles say which); a faster int8 is
    deployed alone."""
    import json
    import shutil

    import yaml

    from edgekd import deploy
    from edgekd.bundle import write_bundle
    from edgekd.config import make_config
    from edgekd.integrity import verify_bundle_dir
    from edgekd.pipeline import Run
    from edgekd.targets import load_target

    run = tmp_path / "tiny"
    shutil.copytree(tiny_run["out"], run)
    raw = yaml.safe_load((tiny_run["out"].parent.parent / "t.yaml").read_text())
    raw["deploy"] = "fastest"
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(raw))
    target = load_target(str(tmp_path / "fast.yaml"))
    cfg = make_config(None, **json.loads((run / "run.json").read_text())["config"])
    times = {"onnx-fp32": 3.0, "openvino-fp32": 4.0, "onnx-int8": 5.0, "openvino-int8": 4.5, fast: 1.0}
    monkeypatch.setattr(deploy, "alternating_medians", lambda once, keys, passes: {k: times[k] for k in keys})
    out = write_bundle(Run(cfg, target, run, results=_records(run)))
    m = verify_bundle_dir(run / "bundle")
    roles = {x["file"]: x["role"] for x in m["models"]}
    assert m["deploy"]["policy"] == "fastest" and m["deploy"]["p50_ms"][fast] == 1.0
    if fast == "onnx-fp32":
        assert m["recommended"] == "student-fp32.onnx" and roles["student-fp32.onnx"] == "deploy"
        assert roles["student-int8.xml"].startswith("int8, for devices where int8 pays off") and len(roles) == 2
        assert "int8 runs at 0.22x FP32" in m["deploy"]["statement"]
    else:
        assert m["recommended"] == "student-int8.xml" and roles == {"student-int8.xml": "deploy"}
    report = (run / "bundle" / "report.md").read_text()
    assert m["deploy"]["statement"] in report and "alternating passes" in report
    assert out["manifest"]["deploy"]["model"] == fast
