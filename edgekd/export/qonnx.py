"""QONNX (FPGA flows: FINN, hls4ml) from the int8 Q/DQ ONNX that edgekd's PTQ writes.

QONNX expresses quantization as ``Quant(x, scale, zero_point, bit_width)`` nodes of the custom domain
``qonnx.custom_op.general``. The FP32 graph carries no quantization, so this exporter takes the *int8 Q/DQ*
ONNX (``quantize/ptq.py``'s output) and refuses an FP32 one. The conversion is qonnx's own ``QCDQToQuant``,
after two normalisations of NNCF's graph that qonnx 1.0 cannot take as is:

- NNCF stores weights as int8 initializers behind a lone DequantizeLinear; qonnx's lone-DQ path breaks on
  per-channel scales (it broadcasts the 1-D scale against the 4-D weight before reshaping it), so each such
  weight becomes a float initializer + QuantizeLinear -> DequantizeLinear (bit-exact: q*s/s rounds back to q);
- the batch is fixed to 1 (FPGA dataflow graphs are static; qonnx's executor reads a dynamic batch as 0),
  and NNCF's Identity nodes are dropped (qonnx's RemoveIdentityOps takes ~45 s on a small MobileNet).

Weights can be re-quantized to fewer bits (``weight_bits``, e.g. 4). ``QCDQToQuant`` derives a bit width only
from the Q/DQ element type (int8/uint8) or a Clip between Q and DQ, and NNCF's PTQ writes 8 bits, so below 8
the Quant nodes on weights get that bit width and a per-output-channel symmetric scale max|w| / (2^(b-1) - 1)
(narrow range) after conversion: plain min-max, no calibration or QAT. QONNX's ``Quant`` takes any bit width,
so the file is plain QONNX; activations keep the Q/DQ graph's 8 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from edgekd._deps import require
from edgekd.artifacts import ExportedModel
from edgekd.errors import BackendError, ModelError, reason
from edgekd.export.base import EXPORTERS
from edgekd.fileio import atomic
from edgekd.formats import suffix_of

QONNX_DOMAIN = "qonnx.custom_op.general"


def _attr(node, name: str, default=None):
    return next((a.i for a in node.attribute if a.name == name), default)


def _normalise(proto) -> None:
    """Make NNCF's Q/DQ graph convertible by qonnx 1.0 (see the module docstring); edits ``proto`` in place."""
    import onnx
    from onnx import helper, numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    for n in list(g.node):
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        q, s = numpy_helper.to_array(inits[n.input[0]]), numpy_helper.to_array(inits[n.input[1]])
        z = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] else np.zeros_like(s, q.dtype)
        axis, shape = _attr(n, "axis", 1), [1] * q.ndim
        if s.ndim == 1:
            shape[axis] = s.shape[0]
        w = (q.astype(np.float32) - z.reshape(shape).astype(np.float32)) * s.reshape(shape).astype(np.float32)
        w_name, q_name = f"{n.input[0]}_float", f"{n.input[0]}_q"
        g.initializer.append(numpy_helper.from_array(w.astype(np.float32), w_name))
        kw = {"axis": axis} if s.ndim == 1 else {}
        qn = helper.make_node("QuantizeLinear", [w_name, n.input[1], n.input[2]], [q_name], name=f"{n.name}_wq", **kw)
        g.node.insert(list(g.node).index(n), qn)
        n.input[0] = q_name
    outputs = {o.name for o in g.output}
    for n in [n for n in g.node if n.op_type == "Identity" and n.output[0] not in outputs]:
        for c in g.node:
            for k, name in enumerate(c.input):
                if name == n.output[0]:
                    c.input[k] = n.input[0]
        g.node.remove(n)
    del g.value_info[:]  # re-inferred for batch 1
    for v in list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    _prune(proto)
    onnx.checker.check_model(proto)


def _prune(proto) -> None:
    """Drop initializers no node reads."""
    g = proto.graph
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _requantize_weights(model, bits: int) -> int:
    """Give every Quant node on a weight ``bits`` bits with a per-channel symmetric scale; returns how many."""
    n_done = 0
    qmax = 2 ** (bits - 1) - 1
    for node in model.graph.node:
        if node.op_type != "Quant":
            continue
        w = model.get_initializer(node.input[0])
        if w is None or w.ndim < 2:
            continue  # an activation (or a bias vector, which NNCF leaves in float anyway)
        amax = np.abs(w).reshape(w.shape[0], -1).max(1)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        base = node.name or node.input[0]
        model.set_initializer(f"{base}_scale{bits}", scale)
        model.set_initializer(f"{base}_zp{bits}", np.asarray(0, dtype=np.float32))
        model.set_initializer(f"{base}_bits{bits}", np.asarray(bits, dtype=np.float32))
        node.input[1], node.input[2], node.input[3] = f"{base}_scale{bits}", f"{base}_zp{bits}", f"{base}_bits{bits}"
        for a in node.attribute:
            if a.name == "narrow":
                a.i = 1
            elif a.name == "signed":
                a.i = 1
        n_done += 1
    return n_done


def is_qdq(path: Path) -> bool:
    """Whether an ONNX file holds QuantizeLinear/DequantizeLinear pairs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


def to_qonnx(qdq_path: Path, out: Path, weight_bits: int = 8) -> Path:
    """Convert an int8 Q/DQ ONNX into QONNX (``Quant`` nodes, batch 1) at ``out``, atomically.

    Args:
        qdq_path: an ONNX with QuantizeLinear/DequantizeLinear pairs (edgekd's PTQ output).
        out: the QONNX file to write.
        weight_bits: bit width of the weights, 2..8; below 8 the weights are re-quantized per channel.

    Raises:
        ModelError: ``qdq_path`` is not quantized (e.g. the FP32 ONNX) or ``weight_bits`` is out of range.
        BackendError: qonnx is missing or its conversion leaves Q/DQ nodes behind.
    """
    if not 2 <= weight_bits <= 8:
        raise ModelError(f"QONNX weight bit width must be 2..8, got {weight_bits}")
    if not is_qdq(qdq_path):
        raise ModelError(f"{qdq_path} has no QuantizeLinear/DequantizeLinear nodes: QONNX export needs the int8 "
                         f"Q/DQ ONNX (edgekd quantize writes it), not the FP32 graph")
    require("qonnx")
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant

    proto = onnx.load(str(qdq_path))
    _normalise(proto)
    # what qonnx's InferShapes does for standard ops, plus data propagation: with batch 1 it makes every shape
    # static (MobileViT's Shape->Reshape chains otherwise stay symbolic, which qonnx's executor reads as 0)
    proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    # qonnx's ModelWrapper helpers scan the whole graph per lookup, so its per-transform cleanup, deep copies
    # and initializer value-info fix-up cost minutes on MobileViT; none is needed here
    try:
        model = ModelWrapper(proto, fix_missing_initializer_valueinfo=False)
        model = model.transform(QCDQToQuant(), make_deepcopy=False, cleanup=False)
    except Exception as exc:  # noqa: BLE001 - qonnx raises bare exceptions / assertions
        raise BackendError(f"qonnx could not convert {qdq_path}: {reason(exc)}") from exc
    _prune(model.model)
    left = sorted({n.op_type for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")})
    if left:
        raise BackendError(f"qonnx left {', '.join(left)} nodes in {qdq_path} (unsupported Q/DQ pattern)")
    if weight_bits < 8:
        _requantize_weights(model, weight_bits)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic(out) as tmp:
        model.save(str(tmp))
    return out


def with_batch(proto, batch: int):
    """A copy of a QONNX ModelProto whose input/output batch is ``batch``, every shape re-inferred statically.

    ONNX's shape inference has no schema for ``Quant``; as its output has its input's shape, each Quant stands
    in as an Identity while shapes are inferred (with data propagation, so Shape->Reshape chains resolve)."""
    import copy

    import onnx
    from onnx import helper

    out = copy.deepcopy(proto)
    g = out.graph
    del g.value_info[:]
    for v in list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    probe = copy.deepcopy(out)
    for i, n in enumerate(probe.graph.node):
        if n.op_type == "Quant":
            probe.graph.node[i].CopyFrom(helper.make_node("Identity", [n.input[0]], list(n.output), name=n.name))
    inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    g.value_info.extend(inferred.graph.value_info)
    return out


def quant_summary(path: Path) -> dict[str, int]:
    """How many Quant nodes a QONNX file has per bit width, e.g. ``{"8": 60, "4": 36}``."""
    require("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(str(path))
    out: dict[str, int] = {}
    for n in model.get_nodes_by_op_type("Quant"):
        bits = str(int(model.get_initializer(n.input[3])))
        out[bits] = out.get(bits, 0) + 1
    return out


@EXPORTERS.register("qonnx")
class QonnxExporter:
    """QONNX from the **int8 Q/DQ** ONNX (not the FP32 one, which it refuses): ``export(int8_onnx, dir, stem)``."""

    name: ClassVar[str] = "qonnx"

    def __init__(self, weight_bits: int = 8) -> None:
        self.weight_bits = weight_bits

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        out = to_qonnx(Path(onnx_path), Path(out_dir) / suffix_of("qonnx", stem), self.weight_bits)
        precision = "int8" if self.weight_bits == 8 else f"w{self.weight_bits}a8"
        return ExportedModel("qonnx", precision, str(out), (str(out),))
