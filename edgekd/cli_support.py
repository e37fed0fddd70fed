"""Helpers for the stand-alone stage commands (files in, files out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.artifacts import LatencyResult, ParityResult, to_json
from edgekd.errors import ConfigError
from edgekd.preprocess import Preprocess


def preprocess_for(model: Path, reference: Path | None) -> Preprocess:
    """Preprocessing from a checkpoint card, or from an edgekd ONNX file's metadata."""
    if reference is not None:
        card = reference.with_suffix(".json")
        if not card.is_file():
            raise ConfigError(f"{reference}: its card {card.name} is missing")
        return Preprocess.from_dict(json.loads(card.read_text())["preprocess"])
    onnx_file = model if model.suffix == ".onnx" else None
    if onnx_file is not None:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
        if "edgekd.preprocess" in props:
            return Preprocess.from_dict(json.loads(props["edgekd.preprocess"]))
    raise ConfigError(f"{model}: no preprocessing recorded in the file; pass --reference CHECKPOINT")


def calibration(data: str, pre: Preprocess, n: int) -> np.ndarray:
    from edgekd.data import load_data

    d = load_data(data, pre.size[0], max_train=n, max_eval=1)
    src = d.train.head(n)
    return pre.batch([src.image(i) for i in range(len(src))])


def verify_file(model: Path, reference: Path, data: str, target_name: str, precision: str | None, samples: int,
                report: Path | None) -> ParityResult:
    import torch

    from edgekd.artifacts import ExportedModel
    from edgekd.data import load_data
    from edgekd.models.factory import load_checkpoint
    from edgekd.targets import load_target
    from edgekd.verify import verify_model

    fmt = {".onnx": "onnx", ".xml": "openvino"}.get(model.suffix)
    if fmt is None or not model.is_file():
        raise ConfigError(f"{model}: expected an existing .onnx or .xml file")
    target = load_target(target_name)
    net, card = load_checkpoint(reference)
    pre = Preprocess.from_dict(card["preprocess"])
    d = load_data(data, pre.size[0], max_train=1, max_eval=samples)
    if d.classes != card["classes"]:
        raise ConfigError(f"{data}: classes {d.classes[:4]}... differ from the reference's {card['classes'][:4]}...")
    src = d.test.head(samples)
    x = pre.batch([src.image(i) for i in range(len(src))])
    with torch.no_grad():
        ref = np.concatenate([net(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)])
    precision = precision or ("int8" if "int8" in model.name else "fp32")
    if precision not in target.parity:
        raise ConfigError(f"target {target.name} has no thresholds for precision {precision}")
    exp = ExportedModel(fmt, precision, str(model), (str(model),))
    res = verify_model(exp, x, src.labels, ref, target)
    if report is not None:
        report.write_text(json.dumps(to_json(res), indent=2))
    return res


def bench_file(model: Path, runtime: str | None, threads: int, iters: int, warmup: int, image_size: int | None,
               precision_hint: str | None, json_out: Path | None) -> dict:
    from edgekd.bench.latency import bench_runtime
    from edgekd.runtimes import runtime_for

    if threads < 1 or iters < 1 or warmup < 0:
        raise ConfigError("--threads and --iters must be positive, --warmup non-negative")
    with runtime_for(model, runtime, threads, precision_hint) as rt:
        shape = _input_shape(rt, image_size)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        size = sum(p.stat().st_size for p in (model, model.with_suffix(".bin")) if p.is_file()) / 1e6
        prec = "int8" if "int8" in rt.executed_precision else "fp32"
        res: LatencyResult = bench_runtime(rt, x, model.name, prec, threads, size, warmup, iters)
    row = {"model": model.name, "format": model.suffix, "runtime": res.runtime, "precision": res.precision,
           "executed": res.executed_precision, "top1": None, "p50_ms": res.p50_ms, "p90_ms": res.p90_ms,
           "p99_ms": res.p99_ms, "fps": res.fps, "size_mb": res.size_mb, "parity": "-"}
    if json_out is not None:
        from edgekd._deps import tool_versions

        json_out.write_text(json.dumps({"result": to_json(res), "versions": tool_versions()}, indent=2))
    return row


def _input_shape(rt, image_size: int | None) -> list[int]:
    """Batch 1 and the model's own static dims; dynamic spatial dims need --image-size."""
    dims = rt.input_shape
    shape = []
    for i, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            shape.append(1 if i == 0 else d)
        elif i == 0:
            shape.append(1)
        elif image_size is None:
            raise ConfigError("the model's input size is dynamic; pass --image-size")
        else:
            shape.append(image_size)
    return shape
