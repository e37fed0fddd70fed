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

from edgekd.artifacts import ExportedModel

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


def for_bundle(r, exports: list[ExportedModel], passed: set[str], passes: int = 3) -> tuple[dict, list[str]]:
    """The deploy choice of a pipeline run and the keys of the models its bundle carries.

    Every passing model that has a runtime here is timed in ``passes`` alternating rounds (the target's threads
    and OpenVINO precision, ``bench_iters / passes`` calls each per round). ``fastest``: the choice and the best
    int8 model beside it. ``int8``: every passing int8 model (the device's own formats too, e.g. QONNX for an
    FPGA), the one with the lowest device latency (its estimate where the device is not attached) recommended;
    the host's timings only feed the statement."""
    from contextlib import ExitStack

    from edgekd.bench.latency import time_calls
    from edgekd.bench.system import system_info
    from edgekd.formats import timed_runtime
    from edgekd.runtimes import runtime_for

    policy = r.target.deploy_policy
    ok = [d for d in exports if d.key in passed]
    here = [d for d in ok if timed_runtime(d.format)]
    isa = system_info()["isa"]
    medians: dict[str, float] = {}
    if here:
        src = r.data.test.head(1)
        x = r.data.preprocess.batch([src.image(0)])
        iters = max(10, r.cfg.bench_iters // passes)
        with ExitStack() as stack:
            rts = {d.key: stack.enter_context(runtime_for(d.path, timed_runtime(d.format),
                                                              r.target.threads, r.target.openvino_inference_precision))
                   for d in here}
            for k, rt in rts.items():  # warm each up once, before the alternating rounds
                time_calls(rt, x, max(5, r.cfg.bench_warmup // 2), 1, f"deploy choice: warm up {k}")
            medians = alternating_medians(lambda k: list(time_calls(rts[k], x, 2, iters, f"deploy choice: {k}")),
                                          list(rts), passes)
    cands = [Candidate(d.key, d.precision) for d in here]
    if policy == "fastest":
        if not cands:
            raise ValueError("no model that passed verify runs on this machine, so none can be timed")
        decision = choose(cands, medians, "fastest", isa)
        keep = [decision["model"], *decision["also"]]
    else:
        decision = _int8_choice(r, ok, medians, isa)
        keep = [d.key for d in ok if d.precision == "int8"]
    decision.update(method=f"{passes} alternating passes of {max(10, r.cfg.bench_iters // passes)} calls each "
                           f"(median over all calls), batch 1, {r.target.threads} threads, on this machine",
                    tie_margin=f"{round((TIE - 1) * 100)} %")
    return decision, keep


def _int8_choice(r, ok: list[ExportedModel], medians: dict[str, float], isa: list[str]) -> dict:
    """``int8`` policy: the passing int8 model with the lowest latency on the device (its estimate when the
    device is not attached, else the measurement); host timings only say whether int8 pays off here."""
    lat = r.results["bench"].by_model() if "bench" in r.results else {}
    int8 = [d.key for d in ok if d.precision == "int8"]
    if not int8:
        raise ValueError("the target deploys int8, but no int8 model passed verify")

    def device_ms(k: str) -> float:
        row = lat.get(f"{k}@{r.target.name}") or lat.get(k)
        return row["p50_ms"] if row else float("inf")

    best = min(int8, key=device_ms)
    row = lat.get(f"{best}@{r.target.name}")
    basis = f"estimated on {r.target.name}" if row else "measured here"
    statement = f"deploy {best} (int8 policy: {r.target.name} runs int8; lowest latency of the int8 models, {basis})"
    ratio = None
    if medians:
        fastest = min(medians, key=medians.get)
        host_int8 = [k for k in medians if k.endswith("-int8")]
        if host_int8:
            ratio = medians[fastest] / min(medians[k] for k in host_int8)
            if not fastest.endswith("-int8") and ratio < 1 / TIE:
                statement += (f"; here on {isa_phrase(isa)} int8 runs at {ratio:.2f}x {fastest} (a host timing, "
                              f"no evidence for the device)")
    else:
        fastest = None
    return {"model": best, "policy": "int8", "also": [], "fastest": fastest,
            "int8_speed_vs_fastest": None if ratio is None else round(ratio, 3), "isa": isa_phrase(isa),
            "p50_ms": {k: round(v, 4) for k, v in medians.items()}, "statement": statement}
