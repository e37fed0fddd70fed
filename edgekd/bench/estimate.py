"""Latency estimates for devices that are not attached: a roofline over the exported ONNX graph.

Each node costs max(compute, memory): 2 x MACs over the device's peak rate at that precision, and the bytes it
reads and writes (weights + activations, at 1 byte for int8, 2 for fp16) over its memory bandwidth; both scaled by
one efficiency factor fitted to a published measurement (see the target's ``estimate.calibration``). The result is
an estimate and is always labelled so; it says nothing about operator fusion, launch overheads or DLA placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ELEMWISE_SKIP = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity",
                 "QuantizeLinear", "DequantizeLinear", "Cast", "ConstantOfShape", "Range", "Slice", "Concat"}


@dataclass(frozen=True)
class GraphCost:
    macs: float  # multiply-accumulates at batch 1
    weight_elems: float
    act_elems: float  # elements written by compute nodes (read back once by the next)
    nodes: int


@dataclass(frozen=True)
class NodeCost:
    """One compute node of the graph at batch 1 (shapes by ONNX inference)."""

    name: str
    op: str
    macs: float
    weight_elems: float
    out_elems: float
    out_shape: tuple[int, ...] | None
    in_shape: tuple[int, ...] | None
    kernel: tuple[int, ...] | None  # spatial kernel of a Conv (from its weight), else None


@dataclass(frozen=True)
class ShapedGraph:
    """An ONNX model at batch 1 with every tensor shape that inference could resolve."""

    model: object  # onnx.ModelProto
    shapes: dict[str, tuple[int, ...]]
    inits: dict[str, np.ndarray]
    dq: dict[str, str]  # DequantizeLinear output -> its quantized input (int8 Q/DQ graphs)


def load_shaped(onnx_path: Path) -> ShapedGraph:
    """Load ``onnx_path``, pin batch 1 and infer shapes (onnxruntime's symbolic inference, onnx's as fallback)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(onnx_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 1
    try:  # onnxruntime's symbolic inference follows MobileViT's computed reshapes; onnx's own is the fallback
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001
        model = shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        d = vi.type.tensor_type.shape.dim
        if d and all(x.dim_value > 0 for x in d):
            shapes[vi.name] = tuple(x.dim_value for x in d)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return ShapedGraph(model, shapes, inits, dq)


def node_costs(g: ShapedGraph) -> list[NodeCost]:
    """MACs, weights and output size of every compute node, in graph order (shape-only nodes skipped)."""
    out_costs = []
    for n in g.model.graph.node:
        if n.op_type in ELEMWISE_SKIP:
            continue
        out = g.shapes.get(n.output[0])
        # weights behind DequantizeLinear (int8 Q/DQ graphs) count as the node's weights
        weights = [g.inits.get(g.dq.get(i, i)) for i in n.input[1:]]
        w = next((x for x in weights if x is not None and x.ndim >= 2), None)
        macs, kernel = 0.0, None
        if n.op_type in ("Conv", "ConvTranspose") and out and w is not None:
            macs = float(np.prod(out)) * float(np.prod(w.shape[1:]))
            kernel = tuple(int(k) for k in w.shape[2:])
            if n.op_type == "ConvTranspose":  # each input pixel scatters into the kernel window, not each output
                src = g.shapes.get(n.input[0])
                macs = float(np.prod(src)) * float(np.prod(w.shape[1:])) if src else macs
        elif n.op_type in ("Gemm", "MatMul") and out:
            a = g.shapes.get(n.input[0])
            k = a[-1] if a else (w.shape[0] if w is not None else 0)
            macs = float(np.prod(out)) * k
        w_elems = sum(float(x.size) for x in weights if x is not None and x.ndim >= 1 and x.size > 1)
        out_costs.append(NodeCost(n.name or n.output[0], n.op_type, macs, w_elems,
                                  float(np.prod(out)) if out else 0.0, out, g.shapes.get(n.input[0]), kernel))
    return out_costs


def graph_cost(onnx_path: Path) -> GraphCost:
    """MACs, weights and activation traffic of an ONNX classifier at batch 1 (shapes by ONNX inference)."""
    g = load_shaped(onnx_path)
    costs = node_costs(g)
    return GraphCost(sum(c.macs for c in costs), sum(c.weight_elems for c in costs),
                     sum(c.out_elems for c in costs), len(g.model.graph.node))


def roofline_ms(cost: GraphCost, device, precision: str) -> float:
    """Estimated batch-1 latency in ms on ``device`` (a target's DeviceModel) at ``int8`` or ``fp16``."""
    peak = device.peak_int8_tops * 1e12 if precision == "int8" else device.peak_fp16_tflops * 1e12
    elem_bytes = 1 if precision == "int8" else 2
    compute = 2 * cost.macs / (peak * device.efficiency)
    memory = (cost.weight_elems + 2 * cost.act_elems) * elem_bytes / (device.memory_bandwidth_gbs * 1e9
                                                                      * device.efficiency)
    return max(compute, memory) * 1e3
