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
