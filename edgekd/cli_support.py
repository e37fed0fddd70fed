"""Helpers for the stand-alone stage commands (files in, files out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.artifacts import ParityResult, to_json
from edgekd.errors import ConfigError
from edgekd.preprocess import Preprocess


def verify_file(model: Path, reference: Path, data: str, target_name: str, precision: str | None, samples: int,
                report: Path | None) -> ParityResult:
    import torch

    from edgekd.artifacts import ExportedModel
    from edgekd.data import load_data
    from edgekd.formats import FORMATS, files_of, format_of_path
    from edgekd.models.factory import load_checkpoint
    from edgekd.targets import load_target
    from edgekd.verify import verify_model

    fmt = format_of_path(model)  # any exported format, verified in its runtime (formats.py)
    if fmt is None or fmt.exporter is None or not model.is_file():
        ok = [s for f in FORMATS.values() if f.exporter is not None for s in f.suffixes[:1]]
        raise ConfigError(f"{model}: expected an existing {', '.join(ok[:-1])} or {ok[-1]} file")
    target = load_target(target_name)
    net, card = load_checkpoint(reference)
    pre = Preprocess.from_dict(card["preprocess"])
    task = card.get("task", "classify")  # a segmentation student is checked on masks (pixel agreement, mIoU)
    d = load_data(data, max(pre.size) if task == "segment" else pre.size[0], max_train=1, max_eval=samples,
                  task=task)
    if d.classes != card["classes"]:
        raise ConfigError(f"{data}: classes {d.classes[:4]}... differ from the reference's {card['classes'][:4]}...")
    src = d.test.head(samples)
    x = pre.batch([src.image(i) for i in range(len(src))])
    step = d.eval_batch
    with torch.no_grad():
        ref = np.concatenate([net(torch.from_numpy(x[i:i + step])).numpy() for i in range(0, len(x), step)])
    precision = precision or ("int8" if "int8" in model.name else "fp32")
    if precision not in target.parity:
        raise ConfigError(f"target {target.name} has no thresholds for precision {precision}")
    exp = ExportedModel(fmt.name, precision, str(model), files_of(fmt.name, model))
    res = verify_model(exp, x, src.targets(pre), ref, target)
    if report is not None:
        report.write_text(json.dumps(to_json(res), indent=2))
    return res


def run_bench(model: Path, runtime: str | None, options: dict, compare: bool, data: str | None, calib: int,
              json_out: Path | None, md_out: Path | None, passes: int = 1) -> str:
    """`edgekd bench`: bench (or --compare) ``model``; writes --json / --md and returns the text to print."""
    from edgekd.bench.measure import BenchOptions, bench_path, payload, write_json
    from edgekd.bench.tables import markdown

    opts = BenchOptions(**options).check()
    if calib < 1:
        raise ConfigError("--calib must be positive")
    if passes != 1 and not compare:
        raise ConfigError("--passes is used by --compare only")
    if data is not None and not compare:
        raise ConfigError("--data is used by --compare only (int8 calibration)")
    decision = None
    if compare:
        if runtime is not None:
            raise ConfigError("--compare runs every runtime; drop --runtime")
        from edgekd.bench.compare import compare_variants

        results, decision = compare_variants(model, opts, data, calib, passes)
        notes = decision["notes"]
    else:
        results, notes = bench_path(model, runtime, opts)
    if not results:
        raise ConfigError(f"{model}: no model could be benchmarked here ({'; '.join(notes)})")
    table = markdown(results)
    text = [f"edgekd bench {model} ({opts.mode} mode, batch {opts.batch}, {opts.threads} threads)", "", table]
    text += [f"note: {n}" for n in notes]
    if decision:
        text += ["", *decision["statement"], f"calibration: {decision['calibration']}", decision["caveat"]]
    out = "\n".join(text)
    if json_out is not None:
        doc = payload(results, opts, notes, **({"decision": decision} if decision else {}))
        if len(results) == 1:
            doc["result"] = doc["results"][0]  # the single-model shape older scripts read
        write_json(doc, json_out)
    if md_out is not None:
        md_out.parent.mkdir(parents=True, exist_ok=True)
        md_out.write_text(out + "\n")
    return out



def bench_energy(model: Path, runtime: str | None, options: dict, meter: str, target_name: str,
                 json_out: Path | None) -> str:
    """`edgekd bench --energy`: J per image and images/J of one model, idle subtracted, meter and method stated.

    A target this machine is not (a Jetson or FPGA board, another CPU architecture) gets no figure from this
    machine's meters or wall time: its energy is estimated from the board's own estimated latency and its power
    model, and says so. A meter named explicitly still measures this machine, and the line says whose energy it is.
    """
    from edgekd.bench.energy import measure_energy
    from edgekd.bench.measure import input_shape
    from edgekd.runtimes import runtime_for
    from edgekd.targets import load_target, not_this_machine

    target = load_target(target_name)
    batch = options["batch"]
    elsewhere = not_this_machine(target)
    whose = ""
    if elsewhere and meter in ("auto", "estimate"):
        e, batch = board_energy(model, target, elsewhere), 1
    else:
        with runtime_for(model, runtime, options["threads"], options["precision_hint"]) as rt:
            shape = input_shape(rt, batch, options["image_size"])
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            e = measure_energy(lambda: rt(x), max(20, options["iters"]), meter=None if meter == "auto" else meter,
                               target=target, model=model.name)
        whose = f"; this machine's energy, not {target.name}'s ({elsewhere})" if elsewhere else ""
    if json_out is not None and json_out.is_file():
        doc = json.loads(json_out.read_text())
        doc["energy"] = to_json(e)
        json_out.write_text(json.dumps(doc, indent=2))
    per_j = "-" if e.frames_per_j is None else f"{e.frames_per_j * batch:.1f}"
    return (f"energy: {e.j_per_frame * 1e3 / batch:.2f} mJ/image, {per_j} images/J (idle {e.idle_w:.1f} W subtracted,"
            f" {e.active_w:.1f} W active; meter {e.meter}): {'measured' if e.measured else e.estimated}{whose}")


def board_energy(model: Path, target, why: str):
    """Energy per frame on a board that is not attached: its power model at its own estimated FPS (roofline for
    Jetson targets, the dataflow model for FPGA targets), never at this machine's."""
    from edgekd.bench.energy import estimate_energy

    if model.suffix != ".onnx":
        raise ConfigError(f"--energy for {target.name}: {why}, so its energy is estimated from its own estimated "
                          f"latency, which needs the .onnx file (got {model.name})")
    if target.fpga is not None:
        from edgekd.bench.fpga import fpga_estimate

        est = fpga_estimate(model, target)
        return estimate_energy(est.fps, target, model.name, f"dataflow model of {target.name}")
    if target.estimate is None:
        raise ConfigError(f"--energy for {target.name}: {why}, and the target has no latency model (`estimate:`) to "
                          f"estimate its energy from; measure on the device, or pass --energy rapl|nvml to read this "
                          f"machine's own meter")
    import onnx

    from edgekd.bench.estimate import estimate_latency

    ops = {n.op_type for n in onnx.load(str(model), load_external_data=False).graph.node}
    fit = target.estimate.fit
    prec = "int8" if "QuantizeLinear" in ops else "fp16" if "fp16" in fit else "fp32"  # TensorRT runs FP32 as FP16
    est = estimate_latency(model, target, prec if prec in fit else None)
    return estimate_energy(1000 / est.latency_ms, target, model.name,
                           f"latency estimated on {target.name} at {est.precision}, {est.latency_ms:.3g} ms: "
                           f"{est.method}")
