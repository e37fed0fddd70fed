"""The deploy choice: which of the models that passed verify goes to the device, and why.

A target states its policy (``deploy:`` in its YAML):

- ``fastest`` (CPU targets): the fastest passing model across runtimes and precisions, timed here with
  ``bench --compare``'s method: the candidates in alternating passes (A B C A B C ...), each configuration's
  median over all its timed calls. Models within the tie margin of the fastest (10 %, what a shared machine's
  noise moves a median between passes) are a tie, and a tie goes to int8 (smaller, and faster on CPUs with
  VNNI / AMX).
- ``int8`` (Jetson / TensorRT, FPGA): the fastest passing int8 model, since int8 is what that device runs; the
  host's timings only order the int8 candidates.

Either way, when int8 is not the fastest here, the statement says so with the ratio and this CPU's ISA, and the
bundle carries the int8 model beside the chosen one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TIE = 1.10


@dataclass(frozen=True)
class Candidate:
    key: str  # "onnx-int8", "openvino-fp32", ...
    precision: str  # fp32 | fp16 | int8


def isa_phrase(isa: list[str]) -> str:
    """'this AVX2 CPU without VNNI', 'this CPU with AVX-512 VNNI and AMX', ... from system_info()'s flags."""
    flags = set(isa)
    fast = [name for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                                    ("amx_int8", "AMX")) if flag in flags]
    if fast:
        return f"this CPU with {' and '.join(fast)}"
    base = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "non-x86" if not flags else "x86"
    return f"this {base} CPU without VNNI"


def choose(candidates: list[Candidate], p50_ms: dict[str, float], policy: str, isa: list[str],
           tie: float = TIE) -> dict:
    """The deploy choice among ``candidates`` (all passed verify) from their medians ``p50_ms`` (same method for
    all). Returns {"model", "policy", "also": [keys the bundle carries beside it], "fastest", "int8_speed",
    "statement": one line}."""
    if policy not in ("fastest", "int8"):
        raise ValueError(f"deploy policy {policy!r}: expected fastest or int8")
    if not candidates:
        raise ValueError("no candidate passed verify")
    ranked = sorted(candidates, key=lambda c: p50_ms[c.key])
    fastest = ranked[0]
    int8 = [c for c in ranked if c.precision == "int8"]
    best_int8 = int8[0] if int8 else None
    ratio = p50_ms[fastest.key] / p50_ms[best_int8.key] if best_int8 else None  # int8's speed vs the fastest
    where = isa_phrase(isa)
    if policy == "int8":
        if best_int8 is None:
            raise ValueError("the target deploys int8, but no int8 model passed verify")
        chosen = best_int8
        why = "the target runs int8"
        if fastest.precision != "int8" and ratio is not None and ratio < 1 / tie:
            why += (f"; here on {where} int8 runs at {ratio:.2f}x {fastest.key} ({p50_ms[fastest.key]:.2f} ms), "
                    f"a host measurement only")
    else:
        tied_int8 = best_int8 is not None and p50_ms[best_int8.key] <= p50_ms[fastest.key] * tie
        chosen = best_int8 if tied_int8 else fastest
        if chosen is fastest:
            why = "the fastest model that passed verify"
        else:
            why = (f"within {round((tie - 1) * 100)} % of the fastest ({fastest.key}, "
                   f"{p50_ms[fastest.key]:.2f} ms): a tie, which goes to int8")
        if best_int8 is not None and chosen is not best_int8:
            why += f"; int8 runs at {ratio:.2f}x {fastest.precision.upper()} on {where}"
    also = [best_int8.key] if best_int8 is not None and best_int8 is not chosen else []
    statement = (f"deploy {chosen.key} (p50 {p50_ms[chosen.key]:.2f} ms, {policy} policy): {why}"
                 + (f"; the bundle also carries {also[0]} for devices where int8 pays off" if also else ""))
    return {"model": chosen.key, "policy": policy, "also": also, "fastest": fastest.key,
            "int8_speed_vs_fastest": None if ratio is None else round(ratio, 3), "isa": where,
            "p50_ms": {c.key: round(p50_ms[c.key], 4) for c in ranked}, "statement": statement}


def alternating_medians(time_once: Callable[[str], list[float]], keys: list[str], passes: int) -> dict[str, float]:
    """Median latency (ms) of each key over ``passes`` alternating rounds; ``time_once(key)`` returns the per-call
    latencies of one pass of that key."""
    import numpy as np

    calls: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(passes):
        for k in keys:
            calls[k].extend(time_once(k))
    return {k: float(np.median(v)) for k, v in calls.items()}
