"""ONNX export from PyTorch: the root graph every other format is derived from."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

from edgekd.artifacts import ExportedModel
from edgekd.errors import ConfigError, ModelError, WriteError, reason, writing
from edgekd.export.base import EXPORTERS

INPUT_NAME, OUTPUT_NAME = "input", "logits"

# Which torch exporter writes the FP32 graph (chosen here, in export_torch; recorded in the graph's metadata as
# ``edgekd.onnx_exporter``; a run may choose with ``onnx_exporter:``). The default is "dynamo",
# torch.onnx.export(dynamo=True): torch.export + onnxscript, torch's supported exporter (the TorchScript one is
# legacy and warns so since torch 2.9). Its graph has the same outputs on every student edgekd ships, fewer nodes
# and fewer ops an FPGA list lacks, and, renamed here, the TorchScript exporter's module-path node names that
# ``quant_ignored_scope`` patterns match (benchmarks/onnx_exporters.py, docs/export.md). It costs time: 4-14 s
# per export where the TorchScript exporter takes 0.2-0.8 s. The legacy TorchScript exporter (dynamo=False) is
# kept only (1) for NNCF's QAT model (quantize/qat_export.py: torch.export fails on NNCF's quantizer hooks, and its
# Q/DQ export mode is a TorchScript symbolic), (2) below opset DYNAMO_MIN_OPSET, which the dynamo exporter cannot
# write, and (3) as the fallback, with a one-line note, for a model on which the dynamo exporter raises.
ONNX_EXPORTERS = ("dynamo", "torchscript")
EXPORTER = "dynamo"
TORCHSCRIPT_OPSET = 17
DYNAMO_MIN_OPSET = 18
EXPORTER_KEY = "edgekd.onnx_exporter"

# above this much weight data the graph goes to external data: one protobuf cannot exceed 2 GB
EXTERNAL_DATA_MB = 1800.0


def export_torch(model, sample, out: Path, metadata: dict, opset: int | None = None, dynamic_batch: bool = True,
                 simplify: bool = False, external_data_mb: float | None = EXTERNAL_DATA_MB,
                 exporter: str | None = None) -> Path:
    """Export ``model`` to ONNX at ``out`` (atomically) with preprocessing and labels in metadata_props.

    Whatever the exporter, the graph has one input ``input`` (N x C x H x W, N the symbolic ``batch`` when
    ``dynamic_batch``) and one output ``logits`` (batch first), ``metadata`` in metadata_props plus
    ``edgekd.onnx_exporter`` (the exporter that wrote it), and the same file layout (``out``, plus
    ``<out>.data`` only for external data).

    Args:
        model: the torch module (put in eval mode).
        sample: an input tensor of the exported shape (batch 1).
        out: the ``.onnx`` file to write.
        metadata: written into ``metadata_props`` (non-strings as JSON).
        opset: the ONNX opset (None: 18 for the dynamo exporter, 17 for the TorchScript one); below 18 the
            TorchScript exporter is used (the dynamo one cannot write it).
        dynamic_batch: batch as a symbolic dimension (else the sample's batch size).
        simplify: run onnxslim (constant folding, dead-node removal, op fusions) on the exported graph.
        external_data_mb: when the weights exceed this many MB, write them to ``<out>.data`` beside the graph
            (ONNX external data; needed above protobuf's 2 GB); None never does.
        exporter: "dynamo" (falls back to "torchscript", with a one-line note, when it raises) or
            "torchscript"; None: the module's ``EXPORTER``.
    """
    import onnx

    exporter = exporter or EXPORTER
    if exporter not in ONNX_EXPORTERS:
        raise ConfigError(f"ONNX exporter must be one of {', '.join(ONNX_EXPORTERS)}, not {exporter!r}")
    if opset is None:
        opset = DYNAMO_MIN_OPSET if exporter == "dynamo" else TORCHSCRIPT_OPSET
    if opset < DYNAMO_MIN_OPSET:
        exporter = "torchscript"
    tmp = out.with_name(out.name + ".tmp")
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    weight_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    external = external_data_mb is not None and weight_mb > external_data_mb
    if external:  # torch writes a >2 GB model as one file per tensor (or one .data file): keep those apart
        with writing(out):
            raw_dir = tempfile.mkdtemp(dir=out.parent)
    try:
        raw = Path(raw_dir) / "raw.onnx" if external else None
        proto = None
        if exporter == "dynamo":
            try:
                proto = _export_dynamo(model, sample, raw, opset, dynamic_batch)
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, OSError) and raw is not None:  # writing the external data: the disk's fault
                    raise WriteError(f"cannot write {raw}: {exc.strerror or reason(exc)}") from exc
                from edgekd.progress import console

                console.print(f"note: the dynamo ONNX exporter failed ({_root_reason(exc)}); exporting with the "
                              f"TorchScript exporter instead", soft_wrap=True, markup=False, highlight=False)
                exporter = "torchscript"
        if proto is None:
            proto = _export_torchscript(model, sample, raw, opset, dynamic_batch)
    finally:
        if external:
            shutil.rmtree(raw_dir, ignore_errors=True)
    if simplify:
        proto = _slim(proto)
    for k, v in {**metadata, EXPORTER_KEY: exporter}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    data = out.with_name(out.name + ".data")
    if not external:
        onnx.checker.check_model(proto)
    with writing(out, tmp):
        if data.exists():
            data.unlink()  # onnx appends to an existing external-data file
        if external:
            onnx.save(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=data.name, size_threshold=1024)
        else:
            onnx.save(proto, str(tmp))
    if external:
        onnx.checker.check_model(str(tmp))  # by path: a >2 GB proto cannot be checked in memory
    with writing(out, tmp):
        os.replace(tmp, out)
    return out


def _export_dynamo(model, sample, raw: Path | None, opset: int, dynamic_batch: bool):
    """torch.onnx.export(dynamo=True): the ModelProto (weights in it), or, with ``raw``, written there with its
    weights as external data and loaded back."""
    import onnx
    import torch

    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    # a failing torch.export prints its own account to stderr (the partial graph, dozens of lines) before it raises:
    # held back here, and shown only when the export went through (export_torch says why it failed in one line)
    held = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stderr(held):
        prog = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                 output_names=[OUTPUT_NAME], dynamic_shapes=shapes, verbose=False)
    sys.stderr.write(held.getvalue())
    if raw is None:
        proto = prog.model_proto
    else:
        prog.save(str(raw), external_data=True)
        proto = onnx.load(str(raw))
    _normalise_dynamo(proto)
    return proto


def _normalise_dynamo(proto) -> None:
    """Three changes, in place, to what the dynamo exporter writes, so that downstream reads it as it read the
    TorchScript exporter's graph:

    - a grouped (depthwise) Conv without a bias gets a zero one: the dynamo exporter's optimizer drops all-zero
      biases (a freshly initialised bias, a BatchNorm with zero mean and shift folded in), NNCF quantizes a
      depthwise Conv's input per channel, and ONNX Runtime's QLinearConv fusion of such a Conv without a bias
      fails at run time ("input zero point must be a scalar"): every random-weight student with depthwise
      convolutions would hit it. Other Convs may go without an all-zero bias the TorchScript graph keeps: the
      same function;
    - every node's metadata_props (the dynamo exporter records each node's FX node, module path and Python stack
      trace, with this machine's file paths, in the file);
    - ``ReduceMean`` over H and W of an N x C x H x W tensor with ``keepdims=1`` (what torch.export decomposes
      ``AdaptiveAvgPool2d(1)`` into, and how squeeze-excite blocks average) becomes ``GlobalAveragePool``, the
      same function: the op the TorchScript exporter wrote for the classifier heads' pooling and the one FPGA
      dataflow compilers map (export/preflight.py's FPGA_OPS has no ReduceMean).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    _module_path_names(g, {i.name for i in g.initializer})
    for n in g.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if (n.op_type == "Conv" and n.domain in ("", "ai.onnx") and group > 1 and len(n.input) == 2
                and n.input[1] in inits):
            w = inits[n.input[1]]
            name = f"{w.name}_bias"
            while name in inits:
                name += "_"
            bias = numpy_helper.from_array(np.zeros(w.dims[0], onnx.helper.tensor_dtype_to_np_dtype(w.data_type)), name)
            inits[name] = bias
            g.initializer.append(bias)
            n.input.append(bias.name)
        del n.metadata_props[:]
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*g.input, *g.value_info, *g.output)
            if v.type.tensor_type.HasField("shape")}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute
              and n.attribute[0].name == "value"}
    dropped: set[str] = set()
    for n in g.node:
        if n.op_type != "ReduceMean" or n.domain not in ("", "ai.onnx") or rank.get(n.input[0]) != 4:
            continue
        attrs = {a.name: a for a in n.attribute}
        if "keepdims" in attrs and attrs["keepdims"].i != 1:
            continue
        if "axes" in attrs:  # opset < 18 keeps the axes as an attribute
            axes = list(attrs["axes"].ints)
        elif len(n.input) > 1 and (n.input[1] in inits or n.input[1] in consts):
            t = inits[n.input[1]] if n.input[1] in inits else consts[n.input[1]]
            axes = numpy_helper.to_array(t).reshape(-1).tolist()
        else:
            continue
        if sorted(a % 4 for a in axes) != [2, 3]:
            continue
        n.op_type = "GlobalAveragePool"
        dropped.update(n.input[1:])
        n.input[:] = n.input[:1]
        del n.attribute[:]
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    gone = [i for i in g.initializer if i.name in dropped and i.name not in used]  # axes no node reads any more
    for i in gone:
        g.initializer.remove(i)


SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the dynamo exporter's per-node module path, root first, FX node last
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _module_path_names(g, initializers: set[str]) -> None:
    """Rename the dynamo exporter's nodes (``node_Conv_12``) after the modules that made them, as the TorchScript
    exporter names them (``/layer1/layer1.0/conv1/Conv``, ``/blocks.0/blocks.0.0/fc/fc.0/Conv``, a module's second
    call ``act_1``, a second op of one type in one scope ``Add_1``), so ``quant_ignored_scope`` patterns written
    against either exporter's graph match. The path comes from each node's ``pkg.torch.onnx.name_scopes``; a Conv
    with a BatchNorm folded into it carries the BatchNorm's path there, so a weighted op whose weight is a
    ``<module>.weight`` initializer takes that module instead. Nodes without a recorded path keep their names."""
    used = {n.name for n in g.node}
    counts: dict[str, int] = {}
    calls: dict[tuple[str, ...], int] = {}  # (caller's components..., module) -> times entered so far
    prev: list[str] = []
    renames = []
    for n in g.node:
        md = {e.key: e.value for e in n.metadata_props}
        try:
            paths = [p for p in ast.literal_eval(md[SCOPES_KEY])[:-1] if p]  # a Python list literal
        except (KeyError, ValueError, TypeError, SyntaxError):
            continue
        weight = n.input[1] if n.op_type in WEIGHT_OPS and len(n.input) > 1 else ""
        if weight.endswith(".weight") and weight in initializers:
            owner = weight[: -len(".weight")]
            paths = [p for p in paths if owner.startswith(p + ".")] + [owner]
        parts: list[str] = []
        parent = ""
        for i, path in enumerate(paths):
            rel = path[len(parent) + 1:] if parent and path.startswith(parent + ".") else path
            part = f"{parts[-1]}.{rel}" if rel.isdigit() and parts else rel
            key = (*parts, part)
            entered = paths[: i + 1] != prev[: i + 1]  # a new call of this module (not the one still running)
            if entered:
                calls[key] = calls.get(key, -1) + 1
            k = calls.get(key, 0)
            parts.append(f"{part}_{k}" if k else part)
            parent = path
        prev = paths
        base = "/" + "/".join([*parts, n.op_type])
        k = counts.get(base, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in used and name != n.name:
            k += 1
            name = f"{base}_{k}"
        counts[base] = k + 1
        renames.append((n, name))
    for n, name in renames:
        used.discard(n.name)
        n.name = name
        used.add(name)


def _export_torchscript(model, sample, raw: Path | None, opset: int, dynamic_batch: bool):
    """torch.onnx.export(dynamo=False), the legacy TorchScript exporter (its deprecation warning silenced: edgekd
    uses it only where the dynamo exporter cannot serve, see EXPORTER above)."""
    import onnx
    import torch

    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None

    def _export(f) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (sample,), f, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes)

    if raw is None:  # in memory: a failure here is the model's, never the disk's (that shows in onnx.save)
        buf = io.BytesIO()
        try:
            _export(buf)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"ONNX export failed: {reason(exc)}") from exc
        return onnx.load_from_string(buf.getvalue())
    try:
        _export(str(raw))
    except OSError as exc:
        raise WriteError(f"cannot write {raw}: {exc.strerror or reason(exc)}") from exc
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"ONNX export failed: {reason(exc)}") from exc
    return onnx.load(str(raw))


def _root_reason(exc: BaseException) -> str:
    """The innermost cause of an exporter's exception, as ``Type: message`` on one line (the dynamo exporter wraps
    the real reason in a long 'step N/3 failed' report)."""
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {reason(exc, 200)}"


def _slim(proto):
    """onnxslim's graph simplification; numerics are unchanged (it folds constants and removes dead or
    identity nodes; tests/test_export_options.py checks outputs against the unsimplified graph)."""
    from edgekd._deps import require

    onnxslim = require("onnxslim")
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"onnxslim could not simplify the graph: {reason(exc)}") from exc


def onnx_files(path: Path) -> tuple[str, ...]:
    """The ONNX file and its external-data files, if any."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    side = {e.value for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data if e.key == "location"}
    return (str(path), *(str(path.parent / s) for s in sorted(side)))


@EXPORTERS.register("onnx")
class OnnxExporter:
    """FP32 ONNX is produced by :func:`export_torch`; this exporter just records it as a model."""

    name: ClassVar[str] = "onnx"

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        return ExportedModel("onnx", "fp32", str(onnx_path), onnx_files(Path(onnx_path)))
