"""Pick the student for a latency budget: candidates -> pre-flight -> latency on the target -> the largest that fits.

Practitioners start from a device and a budget (ms, or FPS), not from a model name. For each candidate (a curated
list per task, or any timm / edgekd name) the untrained model is exported to ONNX once at the run's input size, and
that graph gives:

- capacity: parameters (the ranking key; GMACs of the graph are shown beside them);
- pre-flight: the target's runtimes asked about every op (``export.preflight.check_graph``); a failing op is
  recorded on the row, never an abort;
- latency at the precision the target deploys:
  - *measured* for a CPU target of this machine's kind: each candidate in each of the target's runtimes that
    runs here (ONNX Runtime, OpenVINO), the target's threads, batch 1, in alternating passes over all
    candidates, the median over all calls (``bench --compare``'s method, ``deploy.alternating_medians``). A
    ``fastest``-policy target (cpu-x86) ships the fastest of FP32 and int8, so FP32 is an upper bound of what is
    deployed; ``int8=True`` also times NNCF int8 (random calibration inputs: latency only);
  - *estimated* for a board that is not attached: ``bench.estimate``'s per-node model at the bundle precision
    when fitted (else a fitted precision, and the row says so), always labelled "estimated" with the method.

``choose`` is pure (rows in, a row out) so it can be tested with a fake latency table.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekd.errors import ConfigError, EdgeKDError, WriteError, reason
from edgekd.formats import FORMATS

# Curated students per task, small to large. All build in timm 1.0 with random weights; any timm name (or edgekd's
# own: cifar_resnet*, unet_*) can be added with --candidates +NAME.
CANDIDATES = {
    "classify": ("mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv4_conv_small", "mobilevit_xxs",
                 "mobilevitv2_050", "mobilevit_xs", "efficientnet_lite0", "mobilenetv3_large_100",
                 "efficientnet_b0", "fastvit_t8", "resnet10t", "repvit_m0_9", "mobilevit_s", "resnet18"),
    "segment": ("unet_plain16", "unet_mobilevit_xxs", "unet_mobilenetv3_small_100", "unet_mobilenetv4_conv_small",
                "unet_mobilevit_xs", "unet_efficientnet_lite0", "unet_efficientnet_b0", "unet_mobilenetv3_large_100",
                "unet_resnet10t", "unet_plain32", "unet_resnet18"),
}
DEFAULT_SIZE = {"classify": 224, "segment": 256}
CAPACITY = "parameters"  # what "largest" means: most parameters; equal counts go to the faster candidate
# runtimes of the export formats timed here (formats.py; TensorRT / FINN only exist on their devices)
MEASURED_RUNTIMES = tuple(f.runtime for f in FORMATS.values() if f.bench and f.exporter is not None)


@dataclass
class Row:
    """One candidate: its size, whether the target's runtimes accept it, and its latency there."""

    name: str
    params_m: float | None = None
    gmacs: float | None = None
    latency_ms: float | None = None
    latency: str = "-"  # "measured" | "estimated" | "-" (not available)
    precision: str | None = None  # the precision the latency is at
    runtime: str | None = None  # measured: the runtime of the fastest configuration
    preflight: str | None = None  # None: every runtime of the target accepts the graph; else why not (the op)
    configs: dict[str, float] = field(default_factory=dict)  # measured: p50 ms of each runtime x precision
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.preflight is None and self.latency_ms is not None

    def fits(self, budget_ms: float) -> bool:
        return self.ok and self.latency_ms <= budget_ms

    def to_json(self, budget_ms: float | None = None) -> dict:
        d = asdict(self)
        if budget_ms is not None:
            d["fits"] = self.fits(budget_ms)
        return d


@dataclass(frozen=True)
class Plan:
    """How latency is obtained on a target: measured here or estimated, at which precision(s), and why."""

    kind: str  # "measured" | "estimated"
    precisions: tuple[str, ...]
    runtimes: tuple[str, ...] = ()  # measured only
    note: str = ""


# ---------------------------------------------------------------------------------------------------------------
# budget and candidates


def resolve_budget(budget_ms: float | None, budget_fps: float | None, target, ms_flag: str = "--budget-ms",
              fps_flag: str = "--budget-fps", default_to_target: bool = True) -> tuple[float, str]:
    """The latency budget in ms and where it came from. FPS becomes 1000 / FPS (batch 1, one frame at a time).
    Neither given: the target's ``latency_budget_ms`` (when ``default_to_target``)."""
    if budget_ms is not None and budget_fps is not None:
        raise ConfigError(f"give {ms_flag} or {fps_flag}, not both")
    for flag, v in ((ms_flag, budget_ms), (fps_flag, budget_fps)):
        if v is not None and not v > 0:
            raise ConfigError(f"{flag} must be positive (got {v:g})")
    if budget_ms is not None:
        return float(budget_ms), f"{budget_ms:g} ms ({ms_flag})"
    if budget_fps is not None:
        return 1000.0 / budget_fps, f"{1000.0 / budget_fps:.3g} ms ({fps_flag} {budget_fps:g}: 1000 / FPS)"
    if default_to_target and target.latency_budget_ms is not None:
        return float(target.latency_budget_ms), f"{target.latency_budget_ms:g} ms ({target.name}'s latency_budget_ms)"
    raise ConfigError(f"no latency budget: give {ms_flag} or {fps_flag}"
                      + ("" if not default_to_target else f" ({target.name} has no latency_budget_ms)"))


def candidate_list(task: str, spec: str | list[str] | None) -> list[str]:
    """The curated list of ``task``; ``spec`` "a,b" replaces it, "+a,+b" adds to it (names checked later)."""
    if task not in CANDIDATES:
        raise ConfigError(f"--task {task!r}: choose classify or segment")
    if spec is None or spec == [] or spec == "":
        return list(CANDIDATES[task])
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise ConfigError("--candidates is empty; give NAME,NAME (replace the list) or +NAME (add to it)")
    added = [s.startswith("+") for s in items]
    if any(added) and not all(added):
        raise ConfigError("--candidates: either every name starts with + (added to the curated list) or none does "
                          "(the list is replaced)")
    names = [s.lstrip("+") for s in items]
    from edgekd.models.segmentation import is_seg_model

    for n in names:
        if is_seg_model(n) != (task == "segment"):
            kind = "a segmentation model" if is_seg_model(n) else "a classifier"
            raise ConfigError(f"--candidates: {n} is {kind}, not a {task} student (--task {task})")
    out = list(CANDIDATES[task]) + names if all(added) else names
    return list(dict.fromkeys(out))  # once each, in order


def plan_for(target, int8: bool = False) -> Plan:
    """Measured here (a CPU target of this machine's kind) or estimated (a board with a fitted per-node model)."""
    from edgekd.targets import not_this_machine

    away = not_this_machine(target)
    if away is None and target.device == "cpu":
        rts = tuple(rt for rt in target.runtimes if rt in MEASURED_RUNTIMES)
        if not rts:
            raise ConfigError(f"{target.name}: none of its runtimes ({', '.join(target.runtimes)}) can be timed here")
        if target.deploy_policy == "int8":
            return Plan("measured", ("int8",), rts, f"int8 (the {target.name} bundle deploys int8)")
        if int8 and "int8" in target.precisions:
            return Plan("measured", ("fp32", "int8"), rts, "the faster of FP32 and NNCF int8 (the bundle deploys the "
                        "fastest)")
        return Plan("measured", ("fp32",), rts, "FP32: the bundle deploys the fastest of FP32 and int8, so FP32 is "
                    "an upper bound (--int8 / budget_int8 times int8 too)")
    if target.estimate is None:
        why = away or f"{target.name} is a {target.device} target"
        raise ConfigError(f"cannot time {target.name} here ({why}) and it has no `estimate:` section to estimate "
                          f"latency from" + (" (FPGA targets: the dataflow estimate needs the quantized QONNX "
                                             "graph; pick the student with --student)" if target.fpga else ""))
    fit = target.estimate.fit
    if target.bundle_precision in fit:
        return Plan("estimated", (target.bundle_precision,), (), f"{target.bundle_precision} (the bundle's precision)")
    prec = next(iter(fit))
    return Plan("estimated", (prec,), (), f"{prec}: no parameters are fitted at the bundle's "
                f"{target.bundle_precision} on {target.name} (fitted: {', '.join(fit)}), so the estimate is at {prec}")


# ---------------------------------------------------------------------------------------------------------------
# selection (pure)


def _capacity_key(r: Row) -> tuple:
    return (-(r.params_m or 0.0), r.latency_ms, r.name)


def order(rows: list[Row], budget: float) -> list[Row]:
    """Table order: the candidates that fit, largest first; then the rest that pass pre-flight, fastest first;
    then the pre-flight failures."""
    fit = sorted((r for r in rows if r.fits(budget)), key=_capacity_key)
    slow = sorted((r for r in rows if r.ok and not r.fits(budget)), key=lambda r: (r.latency_ms, r.name))
    rest = [r for r in rows if not r.ok]
    return fit + slow + rest


def fastest(rows: list[Row]) -> Row | None:
    ok = [r for r in rows if r.ok]
    return min(ok, key=lambda r: (r.latency_ms, r.name)) if ok else None


def choose(rows: list[Row], budget: float, target_name: str = "the target") -> Row:
    """The candidate with the most parameters among those that pass pre-flight and meet ``budget`` ms (equal
    counts: the faster one). Raises ConfigError naming the fastest candidate when none fits."""
    fit = [r for r in rows if r.fits(budget)]
    if fit:
        return min(fit, key=_capacity_key)
    raise ConfigError(nothing_fits(rows, budget, target_name))


def nothing_fits(rows: list[Row], budget: float, target_name: str) -> str:
    """One line: no candidate meets the budget, and the fastest one with its latency."""
    best = fastest(rows)
    if best is None:
        failed = [r for r in rows if r.preflight is not None]
        first = f": {failed[0].name}: {failed[0].preflight}" if failed else ""
        return (f"no candidate student can be timed on {target_name}: none of the {len(rows)} passes pre-flight"
                f"{first}")
    return (f"no candidate student meets {budget:.3g} ms on {target_name}: the fastest is {best.name} at "
            f"{best.latency_ms:.2f} ms ({describe(best)}); raise the budget, lower --image-size or add smaller "
            f"--candidates")


def describe(r: Row) -> str:
    """'measured, openvino fp32' | 'estimated at int8'."""
    if r.latency == "measured":
        return f"measured, {r.runtime} {r.precision}"
    return f"{r.latency} at {r.precision}"


def reason_line(choice: Row, rows: list[Row], budget: float, target_name: str) -> str:
    """'student X: the largest (N M parameters) of the K of M candidates within B ms on T (L ms, estimated ...)'."""
    fit = [r for r in rows if r.fits(budget)]
    return (f"student {choice.name}: the largest ({choice.params_m:.2f} M {CAPACITY}) of the {len(fit)} of "
            f"{len(rows)} candidates that pass pre-flight and run within {budget:.3g} ms on {target_name} "
            f"({choice.latency_ms:.2f} ms, {describe(choice)})")


# ---------------------------------------------------------------------------------------------------------------
# evaluation (export, pre-flight, cost, latency)


def _export(name: str, num_classes: int, size: tuple[int, int], folder: Path) -> tuple[Path, float]:
    import torch

    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm

    torch.manual_seed(0)
    model = create_timm(name, num_classes).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    path = export_torch(model, torch.zeros(1, 3, *size), folder / f"{name}.onnx", {})
    return path, params


def evaluate(names: list[str], target, size: int | tuple[int, int], num_classes: int, plan: Plan,
             passes: int = 3, seconds: float = 0.3, work_dir: Path | None = None) -> list[Row]:
    """A row per candidate: parameters, GMACs, pre-flight, latency by ``plan`` (see the module docstring)."""
    from edgekd.bench.estimate import estimate_latency, graph_cost
    from edgekd.export.preflight import LABEL, check_graph
    from edgekd.models.factory import create_timm, is_model
    from edgekd.progress import track

    hw = (size, size) if isinstance(size, int) else tuple(size)
    for n in names:  # unknown names fail before minutes of exports (with suggestions)
        if not is_model(n):
            create_timm(n, 2)
    rows: list[Row] = []
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-students-", dir=work_dir) as tmp:
        folder = Path(tmp)
        for n in track(names, len(names), "students: export + pre-flight"):
            row = Row(n)
            rows.append(row)
            try:
                path, row.params_m = _export(n, num_classes, hw, folder)
            except WriteError:
                raise
            except Exception as exc:  # noqa: BLE001 - a model that cannot run at this size is a row, not an abort
                row.preflight = f"does not export to ONNX ({reason(exc, 160)})"
                continue
            row.gmacs = graph_cost(path).macs / 1e9
            problems = check_graph(path, target)
            if problems:  # the first runtime that refuses it and its op(s), as the pre-flight names them
                p = problems[0]
                more = f" (+{len(p.ops) - 4} more)" if len(p.ops) > 4 else ""
                row.preflight = f"{LABEL[p.runtime]} cannot run {', '.join(p.ops[:4])}{more}"
            paths[n] = path
            if plan.kind == "estimated":
                est = estimate_latency(path, target, plan.precisions[0])
                row.latency_ms, row.latency, row.precision = est.latency_ms, "estimated", est.precision
                row.note = est.method
        if plan.kind == "measured":
            _measure(rows, paths, target, plan, hw, passes, seconds, folder)
    return rows


def _measure(rows: list[Row], paths: dict[str, Path], target, plan: Plan, hw: tuple[int, int], passes: int,
             seconds: float, folder: Path) -> None:
    """Time every candidate that passes pre-flight in each runtime x precision of ``plan``, in alternating passes."""
    from contextlib import ExitStack

    import numpy as np

    from edgekd.bench.latency import time_calls
    from edgekd.deploy import alternating_medians
    from edgekd.progress import track
    from edgekd.runtimes import runtime_for

    timed = [r for r in rows if r.name in paths and r.preflight is None]
    files: dict[tuple[str, str], Path] = {(r.name, "fp32"): paths[r.name] for r in timed}
    if "int8" in plan.precisions:
        from edgekd.artifacts import ExportedModel
        from edgekd.quantize.ptq import quantize
        from edgekd.quantize.spec import QuantSpec, is_transformer

        calib = np.random.default_rng(0).standard_normal((8, 3, *hw)).astype(np.float32)
        for r in track(timed, len(timed), "students: NNCF int8 (random calibration, latency only)"):
            p = paths[r.name]
            try:
                q = quantize(ExportedModel("onnx", "fp32", str(p), (str(p),)), calib, folder, f"{r.name}-int8",
                             QuantSpec(transformer=is_transformer(r.name)))
                files[(r.name, "int8")] = Path(q.path)
            except EdgeKDError as exc:
                r.note = f"int8 not timed: {reason(exc, 160)}"
    x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    keys = [f"{name}|{rt}|{prec}" for (name, prec) in files if prec in plan.precisions for rt in plan.runtimes]
    with ExitStack() as stack:
        rts = {}
        for k in track(keys, len(keys), "students: load + warm up"):
            name, rt, prec = k.split("|")
            rts[k] = stack.enter_context(runtime_for(files[(name, prec)], rt, target.threads,
                                                     target.openvino_inference_precision))
            time_calls(rts[k], x, 3, 1, k, seconds=min(seconds, 0.2))
        bar = iter(track(range(passes * len(keys)), passes * len(keys), f"students: {passes} alternating passes"))

        def once(k: str) -> list[float]:
            next(bar, None)
            return list(time_calls(rts[k], x, 1, 1, k, seconds=seconds))

        medians = alternating_medians(once, keys, passes)
        for _ in bar:  # close the bar
            pass
    by_name = {r.name: r for r in rows}
    for k, ms in medians.items():
        name, rt, prec = k.split("|")
        by_name[name].configs[f"{rt} {prec}"] = round(ms, 4)
    for r in timed:
        if r.configs:
            best = min(r.configs, key=r.configs.get)
            r.latency_ms, r.latency = r.configs[best], "measured"
            r.runtime, r.precision = best.split(" ")


def method_line(plan: Plan, target, passes: int, seconds: float) -> str:
    """How the latency column was obtained, for the table's caption and the JSON."""
    if plan.kind == "estimated":
        return (f"estimated, not measured: {target.name} is not attached; per-node roofline fitted to published "
                f"figures (edgekd estimate), at {plan.note}")
    return (f"measured on this machine: {passes} alternating passes of {seconds:g} s per candidate and "
            f"configuration, the median over all calls (p50), batch 1, {target.threads} threads, in "
            f"{' and '.join(plan.runtimes)} (the faster counted), at {plan.note}")


# ---------------------------------------------------------------------------------------------------------------
# output


def table(rows: list[Row], budget: float, title: str, caption: str) -> None:
    """The rich table: fitting candidates first, largest first."""
    import sys

    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, caption=caption, caption_justify="left")
    for h in ("student", "params M", "GMACs", "latency ms", "latency", "fits", "pre-flight"):
        t.add_column(h, justify="right" if h in ("params M", "GMACs", "latency ms") else "left",
                     overflow="fold")
    for r in order(rows, budget):
        t.add_row(r.name, "-" if r.params_m is None else f"{r.params_m:.2f}",
                  "-" if r.gmacs is None else f"{r.gmacs:.3f}",
                  "-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
                  r.latency + ("" if r.precision is None else f" ({r.runtime + ' ' if r.runtime else ''}"
                                                              f"{r.precision})"),
                  "yes" if r.fits(budget) else "no", "ok" if r.preflight is None else r.preflight)
    Console(width=None if sys.stdout.isatty() else 200).print(t)


def record(rows: list[Row], budget: float, budget_from: str, target, plan: Plan, method: str, choice: Row | None,
           size: tuple[int, int], task: str) -> dict:
    """The JSON of a selection (``students --json``, run.json, the bundle manifest)."""
    out = {"target": target.name, "task": task, "image_size": list(size), "budget_ms": round(budget, 4),
           "budget_from": budget_from, "latency": plan.kind, "precision": list(plan.precisions), "method": method,
           "capacity": f"{CAPACITY} (equal counts: the faster)",
           "rows": [r.to_json(budget) for r in order(rows, budget)],
           "choice": choice.name if choice else None,
           "reason": reason_line(choice, rows, budget, target.name) if choice else nothing_fits(rows, budget,
                                                                                              target.name)}
    if plan.kind == "measured":
        from edgekd.bench.system import system_info

        out["machine"] = system_info()
    return out


# ---------------------------------------------------------------------------------------------------------------
# compress: choose the student of a run


def _key(target, names: list[str], budget: float, size: tuple[int, int], num_classes: int, plan: Plan) -> str:
    blob = json.dumps([target.model_dump(mode="json"), names, budget, list(size), num_classes, asdict(plan)],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def for_run(r, explicit_student: bool, overwrite: bool = False, passes: int = 3, seconds: float = 0.3) -> dict:
    """Choose ``r.cfg.student`` for the run's budget (``budget_ms`` / ``budget_fps``), or check a given student
    against it. Sets ``r.cfg`` and returns the record (written to run.json and the bundle). A rerun of the same
    run folder with the same budget, candidates, target and input reuses the recorded choice (measured
    latencies vary between runs; the trained stages must not)."""
    import os

    from edgekd.progress import console

    cfg, target = r.cfg, r.target
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each rank would time (and so choose) on its own
        raise ConfigError("a latency budget is chosen on one process: pick the student with `edgekd students` "
                          "and pass --student to a distributed run")
    budget, source = resolve_budget(cfg.budget_ms, cfg.budget_fps, target, "budget_ms", "budget_fps",
                               default_to_target=False)
    size = tuple(r.data.preprocess.size)
    num_classes = len(r.data.classes)
    names = [cfg.student] if explicit_student else candidate_list(cfg.task, cfg.candidates or None)
    plan = plan_for(target, cfg.budget_int8)
    key = _key(target, names, budget, size, num_classes, plan)
    saved = r.root / "run.json"
    if not overwrite and saved.is_file():
        try:
            old = json.loads(saved.read_text()).get("student_choice")
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("key") == key and old.get("choice"):
            console.print(f"student choice reused from {saved} (same budget, candidates, target and input): "
                          f"{old['reason']}", soft_wrap=True, markup=False)
            r.cfg = cfg.model_copy(update={"student": old["choice"]})
            return old
    rows = evaluate(names, target, size, num_classes, plan, passes, seconds)
    method = method_line(plan, target, passes, seconds)
    if explicit_student:
        row = rows[0]
        rec = record(rows, budget, source, target, plan, method, row if row.fits(budget) else None, size, cfg.task)
        rec["choice"] = cfg.student
        if row.fits(budget):
            rec["reason"] = (f"student {row.name} (given): {row.latency_ms:.2f} ms ({describe(row)}) on "
                             f"{target.name}, within the {budget:.3g} ms budget")
        else:
            lat = "no latency" if row.latency_ms is None else f"{row.latency_ms:.2f} ms ({describe(row)})"
            why = f", and pre-flight fails: {row.preflight}" if row.preflight else ""
            rec["reason"] = (f"student {row.name} (given with --student, kept) misses the {budget:.3g} ms budget on "
                             f"{target.name}: {lat}{why}")
            rec["misses"] = True
        console.print(("[yellow]![/] " if rec.get("misses") else "") + rec["reason"], soft_wrap=True)
    else:
        table(rows, budget, f"students for {target.name} within {budget:.3g} ms", method)
        choice = choose(rows, budget, target.name)  # raises the one-line "nothing fits"
        rec = record(rows, budget, source, target, plan, method, choice, size, cfg.task)
        console.print(rec["reason"], soft_wrap=True, markup=False)
        r.cfg = cfg.model_copy(update={"student": choice.name})
    rec["key"] = key
    return rec


def int8_budget_line(r, budget: float) -> dict | None:
    """After bench: does the int8 model meet the budget? When it does not and the accuracy guard kept layers in
    FP32, say so (latency-aware QAD: those layers run at FP32 speed). None when no int8 model was timed."""
    target = r.target
    bench = r.results["bench"].by_model() if "bench" in r.results else {}
    est = {k: v for k, v in bench.items() if k.endswith(f"-int8@{target.name}")}
    here = {k: v for k, v in bench.items() if k.endswith("-int8")}
    from edgekd.targets import not_this_machine

    if est:
        k, row = min(est.items(), key=lambda kv: kv[1]["p50_ms"])
        how = "estimated"
    elif here and not_this_machine(target) is None:
        k, row = min(here.items(), key=lambda kv: kv[1]["p50_ms"])
        how = "measured"
    else:
        return None
    ms = row["p50_ms"]
    kept: list[str] = []
    q = r.root / "quantize.json"
    if q.is_file():
        kept = (json.loads(q.read_text()).get("guard") or {}).get("fp32_layers") or []
    meets = ms <= budget
    line = (f"int8 model {k.split('@')[0]}: {ms:.2f} ms ({how}) on {target.name}, "
            f"{'within' if meets else 'over'} the {budget:.3g} ms budget")
    if not meets and kept:
        line += (f": the accuracy guard kept {len(kept)} layer(s) in FP32 ({', '.join(kept[:4])}"
                 f"{' ...' if len(kept) > 4 else ''}), which run at FP32 speed"
                 + (" (the estimate prices every layer at int8, so the device is slower still)" if how == "estimated"
                    else "")
                 + "; allow a larger --max-accuracy-drop, lower max_fp32_layers, or try --quantize qad")
    elif not meets:
        line += "; no layer was kept in FP32, so the student itself is too slow at int8: pick a smaller one"
    return {"model": k, "p50_ms": ms, "latency": how, "meets": meets, "fp32_layers": kept, "statement": line}

