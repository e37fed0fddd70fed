"""Throughput and energy of a model on an FPGA that is not attached: a FINN-style streaming dataflow estimate.

FINN-style accelerators give every layer its own compute in the fabric and stream frames through all of them at
once. The model here: each Conv/ConvTranspose/Gemm/MatMul gets a share of the part's DSP slices proportional to
its MACs (never more than one output pixel's worth of MACs can use); a layer needs MACs / (DSPs x MACs-per-DSP per
cycle at the bit width) cycles per frame; streaming layers without MACs (pooling, resize, concat, add) move one
pixel (all channels) per cycle. The slowest layer sets the initiation interval, so FPS = clock / II; latency is the
sum of the stages (an upper bound: real stages overlap). Weights, sliding-window line buffers and the buffers of
skip connections are checked against the part's BRAM + UltraRAM at the bit width. Energy per frame comes from the
target's power model. Every number is an estimate and labelled so; it ignores routing, achieved clock, folding
constraints (PE/SIMD must divide channel counts), LUT-built MACs and off-chip traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.bench.estimate import NodeCost, ShapedGraph, load_shaped, node_costs
from edgekd.errors import ConfigError, ModelError

MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# fused into the previous layer's thresholds by FINN (MultiThreshold), so no stage of their own
FUSED_OPS = {"Relu", "Clip", "BatchNormalization", "Sigmoid", "QuantizeLinear", "DequantizeLinear", "Quant",
             "BipolarQuant", "Mul", "Div", "Sub"}
JOIN_OPS = {"Concat", "Add"}


@dataclass(frozen=True)
class FpgaLayer:
    name: str
    op: str
    macs: float
    dsps: int
    cycles: int


@dataclass(frozen=True)
class FpgaEstimate:
    """A model on an FPGA target, all ``estimated`` (see :attr:`estimated` for the method)."""

    model: str
    target: str
    weight_bits: int
    activation_bits: int
    macs: float
    weights: float  # parameters of the MAC layers
    weight_mbit: float
    line_buffer_mbit: float
    skip_buffer_mbit: float
    onchip_mbit: float  # BRAM + UltraRAM of the part
    fits_onchip: bool
    dsps_used: int
    dsps_available: int
    ii_cycles: int
    bottleneck: str
    fps: float
    latency_ms: float
    power_w: float  # the target's active - idle power
    j_per_frame: float
    frames_per_j: float
    estimated: str
    notes: tuple[str, ...] = ()
    layers: tuple[FpgaLayer, ...] = field(default=(), repr=False)

    @property
    def weight_mb(self) -> float:
        return self.weight_mbit / 8


def allocate_dsps(macs: list[float], caps: list[float], budget: int) -> list[int]:
    """Share ``budget`` DSPs among layers in proportion to their MACs, none above its cap, each at least 1.

    Water-filling: a layer whose proportional share exceeds its cap gets the cap, and what it leaves is shared
    among the rest again, so the slowest layer is as fast as the budget allows.
    """
    share = [0.0] * len(macs)
    free = [i for i, m in enumerate(macs) if m > 0]
    left = float(budget)
    while free:
        total = sum(macs[i] for i in free)
        over = [i for i in free if left * macs[i] / total > caps[i]]
        if not over:
            for i in free:
                share[i] = left * macs[i] / total
            break
        for i in over:
            share[i] = caps[i]
            left -= caps[i]
            free.remove(i)
    dsps = [max(1, math.floor(s)) if m > 0 else 0 for s, m in zip(share, macs, strict=True)]
    # whole DSPs: what flooring left over goes one by one to the slowest layer that can still use one
    for _ in range(budget - sum(dsps)):
        open_ = [i for i, m in enumerate(macs) if m > 0 and dsps[i] + 1 <= caps[i]]
        if not open_:
            break
        dsps[max(open_, key=lambda i: macs[i] / dsps[i])] += 1
    return dsps


def _pixels(shape: tuple[int, ...] | None) -> float:
    """Spatial positions of an NCHW (or N x features) tensor: one streamed 'pixel' per position."""
    if not shape:
        return 0.0
    return float(math.prod(shape[2:])) if len(shape) > 2 else 1.0


def _buffers(g: ShapedGraph, costs: list[NodeCost], act_bits: int) -> tuple[float, float]:
    """Line buffers of sliding-window convolutions and worst-case skip buffers, in Mbit at ``act_bits``."""
    line = 0.0
    for c in costs:
        if c.op == "Conv" and c.kernel and c.in_shape and len(c.in_shape) == 4 and len(c.kernel) == 2:
            _, ch, _, w = c.in_shape
            kh, kw = c.kernel
            line += ((kh - 1) * w * ch + kw * ch) * act_bits
    producer = {o: i for i, n in enumerate(g.model.graph.node) for o in n.output}
    skip = 0.0
    for n in g.model.graph.node:
        if n.op_type not in JOIN_OPS:
            continue
        branches = [t for t in n.input if t in producer and t in g.shapes]
        if len(branches) < 2:
            continue  # an Add of a constant (bias) is no join
        # the branch produced first waits for the others: worst case the whole tensor (FINN sizes these FIFOs
        # by simulation; a U-Net's encoder skips are the classic case)
        first = min(branches, key=lambda t: producer[t])
        skip += math.prod(g.shapes[first]) * act_bits
    return line / 1e6, skip / 1e6


def fpga_estimate(onnx_path: str | Path, target, weight_bits: int | None = None,
                  activation_bits: int | None = None) -> FpgaEstimate:
    """Estimate FPS, latency, on-chip fit and Frames/J of ``onnx_path`` on an FPGA ``target`` at batch 1.

    Args:
        onnx_path: an FP32, Q/DQ or QONNX graph; only its shapes and weight counts are read.
        target: a :class:`~edgekd.targets.Target` with an ``fpga`` section and a ``power`` model.
        weight_bits / activation_bits: override the target's default bit widths.
    """
    fp = target.fpga
    if fp is None:
        raise ConfigError(f"target {target.name} has no `fpga:` section; the dataflow estimate needs one")
    wb = weight_bits or fp.weight_bits
    ab = activation_bits or fp.activation_bits
    rate = fp.rate(max(wb, ab))
    path = Path(onnx_path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    g = load_shaped(path)
    costs = node_costs(g)
    mac_layers = [c for c in costs if c.op in MAC_OPS and c.macs > 0]
    if not mac_layers:
        raise ModelError(f"{path}: no Conv/Gemm/MatMul layer with known shapes to map onto DSPs")
    # one output pixel's MACs is the most parallelism a layer offers (full unfolding: PE x SIMD = Cout x Cin x K)
    caps = [c.macs / max(_pixels(c.out_shape if c.op != "ConvTranspose" else c.in_shape), 1.0) / rate
            for c in mac_layers]
    dsps = allocate_dsps([c.macs for c in mac_layers], caps, fp.dsp_slices)
    layers = [FpgaLayer(c.name, c.op, c.macs, d, math.ceil(c.macs / (d * rate)))
              for c, d in zip(mac_layers, dsps, strict=True)]
    for c in costs:
        if c.op not in MAC_OPS and c.op not in FUSED_OPS and c.out_shape:
            layers.append(FpgaLayer(c.name, c.op, 0.0, 0, math.ceil(_pixels(c.out_shape))))
    slow = max(layers, key=lambda x: x.cycles)
    clock = fp.clock_mhz * 1e6
    fps = clock / slow.cycles
    latency_ms = sum(x.cycles for x in layers) / clock * 1e3
    weights = sum(c.weight_elems for c in mac_layers)
    line_mbit, skip_mbit = _buffers(g, costs, ab)
    weight_mbit = weights * wb / 1e6
    onchip = fp.bram_mbit + fp.uram_mbit
    need = weight_mbit + line_mbit + skip_mbit
    notes = []
    if need > onchip:
        notes.append(f"does not fit on chip: weights {weight_mbit:.1f} + line buffers {line_mbit:.1f} + skip buffers "
                     f"{skip_mbit:.1f} = {need:.1f} Mbit > {onchip:.1f} Mbit BRAM+URAM; weights or skips would "
                     f"stream from DDR, which this estimate does not model")
    if sum(dsps) > fp.dsp_slices:
        notes.append(f"{sum(dsps)} DSPs needed at one per layer minimum > {fp.dsp_slices} on the part")
    if target.power is None:
        raise ConfigError(f"target {target.name} has no power model; Frames/J cannot be estimated")
    power = target.power.active_w - target.power.idle_w
    if power <= 0:
        raise ConfigError(f"target {target.name}: active_w must exceed idle_w to estimate energy per frame")
    method = (f"estimated: FINN-style dataflow on {target.name} ({fp.part}: {fp.dsp_slices} DSPs at "
              f"{fp.clock_mhz:g} MHz, {rate:g} MACs/DSP/cycle at {max(wb, ab)} bit; DSPs shared by MACs, FPS = clock / "
              f"slowest layer's cycles); energy: {power:.2f} W from the target's power model "
              f"({target.power.active_basis})")
    return FpgaEstimate(
        model=path.name, target=target.name, weight_bits=wb, activation_bits=ab,
        macs=sum(c.macs for c in mac_layers), weights=weights, weight_mbit=weight_mbit,
        line_buffer_mbit=line_mbit, skip_buffer_mbit=skip_mbit, onchip_mbit=onchip, fits_onchip=need <= onchip,
        dsps_used=sum(dsps), dsps_available=fp.dsp_slices, ii_cycles=slow.cycles, bottleneck=f"{slow.name} ({slow.op})",
        fps=fps, latency_ms=latency_ms, power_w=power, j_per_frame=power / fps, frames_per_j=fps / power,
        estimated=method, notes=tuple(notes), layers=tuple(layers))
