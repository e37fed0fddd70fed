"""Latency estimates for devices that are not attached: a per-node roofline over the exported ONNX graph.

Each node of the graph costs max(compute, memory): 2 x MACs over the engine's peak rate at that precision, and the
elements it reads and writes (weights + input + output activations, 1 byte each at int8, 2 at fp16, 4 at fp32) over
the memory bandwidth, both scaled by an efficiency factor; each layer adds a fixed overhead (kernel launch,
scheduling). The two parameters are fitted per target and precision to published figures cited in the target's
YAML (``estimate.figures``; ``benchmarks/estimate_loo.py`` fits them and reports the leave-one-out error of every
figure). Where the engine fuses pointwise ops into the layer before them (TensorRT, a DPU) those cost nothing.
The result is an estimate and is always labelled so.
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
    shape_arith: bool = False  # integer output: arithmetic on shapes (e.g. a channel shuffle's C // groups), no layer
    clamp_of_mac: bool = False  # Relu / Clip whose only input is a Conv / Gemm / MatMul output read by nothing else


@dataclass(frozen=True)
class ShapedGraph:
    """An ONNX model at batch 1 with every tensor shape that inference could resolve."""

    model: object  # onnx.ModelProto
    shapes: dict[str, tuple[int, ...]]
    inits: dict[str, np.ndarray]
    dq: dict[str, str]  # DequantizeLinear / Identity output -> its input (int8 Q/DQ graphs; shared weights)


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
    # a weight behind DequantizeLinear (int8 Q/DQ graphs) or Identity (the exporter writes identical initializers
    # once and feeds the other users through Identity: e.g. the zero-initialised last BatchNorm of every timm
    # ResNet block folds into all-zero conv weights) is the node's weight
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type in ("DequantizeLinear", "Identity")}
    return ShapedGraph(model, shapes, inits, dq)


def _source(g: ShapedGraph, name: str) -> str:
    """The initializer behind ``name`` through DequantizeLinear / Identity links (a Q/DQ weight behind an Identity
    too)."""
    for _ in range(4):
        if name in g.inits or name not in g.dq:
            return name
        name = g.dq[name]
    return name


def _producers(g: ShapedGraph) -> tuple[dict, dict]:
    """(tensor -> the node writing it, tensor -> how many node inputs read it)."""
    prod, readers = {}, {}
    for n in g.model.graph.node:
        for o in n.output:
            prod[o] = n
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    return prod, readers


def _clamps_a_mac(n, prod: dict, readers: dict) -> bool:
    """``n`` is a Relu / Clip reading a MAC node's output that nothing else reads (through the Q/DQ pair of an int8
    graph): the engine applies it as that layer's output clamp."""
    if n.op_type not in CLAMPS or not n.input:
        return False
    t = n.input[0]
    for _ in range(4):
        src = prod.get(t)
        if src is None or readers.get(t, 0) != 1:
            return False
        if src.op_type in MAC_OPS:
            return True
        if src.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            return False
        t = src.input[0]
    return False


def node_costs(g: ShapedGraph) -> list[NodeCost]:
    """MACs, weights and output size of every compute node, in graph order (shape-only nodes skipped)."""
    from onnx import TensorProto

    ints = {vi.name for vi in list(g.model.graph.value_info) + list(g.model.graph.output)
            if vi.type.tensor_type.elem_type in (TensorProto.INT64, TensorProto.INT32)}
    prod, readers = _producers(g)
    out_costs = []
    for n in g.model.graph.node:
        if n.op_type in ELEMWISE_SKIP:
            continue
        out = g.shapes.get(n.output[0])
        weights = [g.inits.get(_source(g, i)) for i in n.input[1:]]
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
                                  float(np.prod(out)) if out else 0.0, out, g.shapes.get(n.input[0]), kernel,
                                  shape_arith=n.output[0] in ints and macs == 0,
                                  clamp_of_mac=_clamps_a_mac(n, prod, readers)))
    return out_costs


def graph_cost(onnx_path: Path) -> GraphCost:
    """MACs, weights and activation traffic of an ONNX classifier at batch 1 (shapes by ONNX inference)."""
    g = load_shaped(onnx_path)
    costs = node_costs(g)
    return GraphCost(sum(c.macs for c in costs), sum(c.weight_elems for c in costs),
                     sum(c.out_elems for c in costs), len(g.model.graph.node))


MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# activations a CPU engine applies as the clamp of the layer before them: ONNX Runtime fuses Conv + Relu / Clip
# (FusedConv) at FP32 and folds them into the output range of the quantized layer at int8 (a QDQ Relu / Clip only
# narrows the range QuantizeLinear clamps to); XNNPACK's convolution and fully-connected operators take an output
# min / max
CLAMPS = {"Relu", "Clip"}
# ops TensorRT / a DPU fuse into the layer before them (epilogues); ONNX Runtime on a CPU runs most as their own pass
POINTWISE = {"Relu", "Sigmoid", "Mul", "Add", "Sub", "Div", "Clip", "HardSwish", "HardSigmoid", "BatchNormalization",
             "LeakyRelu", "PRelu", "Tanh", "Erf", "Pow", "Sqrt", "Neg", "Exp", "Elu", "Softplus", "Gelu", "Mish"}
ELEM_BYTES = {"int8": 1, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class GraphTerms:
    """Per-node work of a graph at batch 1, independent of the device: what the per-node model needs."""

    flops: tuple[float, ...]  # 2 x MACs of each costed node
    elems: tuple[float, ...]  # elements each node reads and writes (weights + input + output)
    layers: int  # nodes that pay the per-layer overhead
    macs: float


def graph_terms(costs: list[NodeCost], fuse_pointwise: bool) -> GraphTerms:
    """The costed nodes of ``costs``: pointwise ops vanish when the engine fuses them (``fuse_pointwise``); on a CPU
    engine (not ``fuse_pointwise``) a Relu / Clip right after a Conv / Gemm / MatMul is that layer's output clamp
    and costs nothing either. Integer shape arithmetic is never a layer."""
    flops, elems = [], []
    for c in costs:
        if c.shape_arith or c.clamp_of_mac or (fuse_pointwise and c.op in POINTWISE):
            continue
        inp = float(np.prod(c.in_shape)) if c.in_shape else c.out_elems
        flops.append(2.0 * c.macs)
        elems.append(c.weight_elems + inp + c.out_elems)
    return GraphTerms(tuple(flops), tuple(elems), len(flops), sum(c.macs for c in costs))


def raw_ms(terms: GraphTerms, peak_ops: float, bandwidth_gbs: float, precision: str) -> float:
    """Sum over nodes of max(compute, memory) at full peak (efficiency 1, no overhead), in ms."""
    f = np.asarray(terms.flops) / peak_ops
    m = np.asarray(terms.elems) * ELEM_BYTES[precision] / (bandwidth_gbs * 1e9)
    return float(np.maximum(f, m).sum() * 1e3)


def node_model_ms(raw: float, layers: int, efficiency: float, layer_overhead_us: float) -> float:
    """The per-node model: roofline time over the efficiency plus a fixed overhead per layer."""
    return raw / efficiency + layers * layer_overhead_us * 1e-3


def fit_params(raw: list[float], layers: list[int], published: list[float]) -> tuple[float, float]:
    """Efficiency and per-layer overhead (us) minimising the squared log error over the figures.

    ``t = raw / eff + layers * overhead`` is linear in (1/eff, overhead); the log loss is not, so a coarse grid over
    the overhead, a golden-section search of 1/eff in log space for each, and a golden refinement of the overhead
    find the minimum (numpy only). Efficiency is kept in (0, 1]; with one figure the overhead is 0.
    """
    r, n, y = (np.asarray(v, dtype=float) for v in (raw, layers, published))
    if len(y) == 0:
        raise ValueError("no figures to fit")

    def best_a(b_ms: float) -> tuple[float, float]:
        lo, hi = 0.0, 12.0  # log(1/eff): efficiency from 1 down to ~6e-6
        g = (np.sqrt(5) - 1) / 2
        def loss(la):
            return float(np.sum((np.log(np.exp(la) * r + b_ms * n) - np.log(y)) ** 2))
        for _ in range(80):
            x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
            if loss(x1) < loss(x2):
                hi = x2
            else:
                lo = x1
        la = (lo + hi) / 2
        return la, loss(la)

    if len(y) == 1:
        return float(1 / np.exp(best_a(0.0)[0])), 0.0
    grid = np.concatenate([[0.0], np.logspace(-6, np.log10(max(y.min() / max(n.min(), 1), 1e-5)), 60)])
    losses = [best_a(b)[1] for b in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
        if best_a(x1)[1] < best_a(x2)[1]:
            hi = x2
        else:
            lo = x1
    b = (lo + hi) / 2
    if best_a(grid[i])[1] < best_a(b)[1]:
        b = grid[i]
    return float(1 / np.exp(best_a(b)[0])), float(b * 1e3)


@dataclass(frozen=True)
class LatencyEstimate:
    """Batch-1 latency of a model on a target that is not attached: an estimate, with its method and parameters."""

    model: str
    target: str
    precision: str
    latency_ms: float
    method: str
    params: dict
    gmacs: float
    layers: int
    estimated: str = "estimated"


def estimate_latency(onnx_path: str | Path, target, precision: str | None = None) -> LatencyEstimate:
    """Estimate the batch-1 latency of ``onnx_path`` on ``target`` with its fitted per-node model.

    Args:
        onnx_path: an FP32 or int8 Q/DQ ONNX graph (only shapes and weight counts are read).
        target: a :class:`~edgekd.targets.Target` with an ``estimate`` section.
        precision: ``int8`` / ``fp16`` / ``fp32``; default: the target's bundle precision if fitted, else the first
            fitted one.
    """
    from edgekd.errors import ConfigError, ModelError

    dev = target.estimate
    if dev is None:
        raise ConfigError(f"target {target.name} has no `estimate:` section (it is measured, not estimated); "
                          f"targets with one: jetson-*, cpu-arm64, fpga-zu")
    if precision is None:
        precision = target.bundle_precision if target.bundle_precision in dev.fit else next(iter(dev.fit))
    if precision not in dev.fit:
        raise ConfigError(f"{target.name}: no parameters fitted at {precision} (fitted: {', '.join(dev.fit)}); "
                          f"no published figure at that precision was found")
    path = Path(onnx_path)
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    try:
        g = load_shaped(path)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError / ValueError / IndexError on non-ONNX bytes
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc
    terms = graph_terms(node_costs(g), dev.fuse_pointwise)
    if not terms.layers:
        raise ModelError(f"{path}: no compute node with known shapes to estimate")
    p = dev.fit[precision]
    raw = raw_ms(terms, dev.peak(precision), dev.memory_bandwidth_gbs, precision)
    ms = node_model_ms(raw, terms.layers, p.efficiency, p.layer_overhead_us)
    loo = f", median |leave-one-out error| {p.median_loo_error:.0%}" if p.median_loo_error is not None else ""
    method = (f"per-node roofline on {target.name} ({dev.architecture}): sum over {terms.layers} layers of "
              f"max(compute, memory) / efficiency {p.efficiency:.3g} + {p.layer_overhead_us:.3g} us per layer; "
              f"fitted to {p.fitted_to}{loo}")
    return LatencyEstimate(path.name, target.name, precision, ms, method,
                           {"efficiency": p.efficiency, "layer_overhead_us": p.layer_overhead_us,
                            "fitted_to": p.fitted_to, "median_loo_error": p.median_loo_error},
                           terms.macs / 1e9, terms.layers)
