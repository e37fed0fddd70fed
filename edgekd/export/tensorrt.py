"""TensorRT: engines built from the ONNX graph, on the GPU that will run them.

Engines only run on the GPU (and TensorRT version) that built them, so for a Jetson the bundle carries the ONNX
(int8 as Q/DQ pairs, TensorRT's explicit quantization) and ``build_engine.sh``, the trtexec command that builds and
times the engine on the board. Where TensorRT is importable (an NVIDIA GPU box), :func:`build_engine` builds it
directly with the Python builder API (TensorRT 10: explicit batch, memory pools, optimisation profiles).

Not run in this workplace: TensorRT cannot be installed here, so the engine build is written to NVIDIA's
documented API and tested only where ``import tensorrt`` works. What is tested everywhere: the Q/DQ rules below
and the emitted command.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.artifacts import ExportedModel
from edgekd.errors import BackendError
from edgekd.export.base import EXPORTERS
from edgekd.export.onnx import INPUT_NAME
from edgekd.fileio import atomic
from edgekd.formats import suffix_of

# ONNX ops TensorRT 10's ONNX parser supports that edgekd's students produce (onnx-tensorrt operators.md)
SUPPORTED_OPS = frozenset("""
Abs Add AveragePool BatchNormalization Cast Clip Concat Constant ConstantOfShape Conv ConvTranspose Div Einsum
Elu Equal Erf Exp Expand Flatten Gather Gemm GlobalAveragePool GlobalMaxPool Greater HardSigmoid HardSwish
Identity InstanceNormalization LayerNormalization LeakyRelu Less MatMul Max MaxPool Mean Min Mul Neg Not Pad Pow
PRelu QuantizeLinear DequantizeLinear Range Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceSum Relu Reshape
Resize Shape Sigmoid Sign Sin Slice Softmax Softplus Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Unsqueeze Where
Floor Ceil Cos GroupNormalization
""".split())


def available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError or a broken CUDA install
        return False
    return True


@dataclass(frozen=True)
class QDQReport:
    """What TensorRT's explicit quantization would make of a Q/DQ ONNX."""

    quantize_nodes: int
    per_channel_weights: int
    per_tensor_weights: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_onnx(path: Path) -> QDQReport:
    """TensorRT-compatibility of an ONNX file: every op known to TensorRT's parser, and every Q/DQ pair
    symmetric int8 (zero point 0, int8 not uint8), as explicit quantization requires."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    inits.update(consts)
    problems: list[str] = []
    unknown = sorted({n.op_type for n in model.graph.node if n.op_type not in SUPPORTED_OPS})
    if unknown:
        problems.append(f"ops TensorRT's ONNX parser does not support: {', '.join(unknown)}")
    q = pc = pt = 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        q += n.op_type == "QuantizeLinear"
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None and zp.dtype != np.int8:
            problems.append(f"{n.name}: {zp.dtype} zero point; TensorRT needs int8")
        elif zp is not None and np.any(zp != 0):
            problems.append(f"{n.name}: non-zero zero point (asymmetric); TensorRT needs symmetric int8")
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:  # a quantized weight
            scale = inits.get(n.input[1])
            if scale is not None and scale.size > 1:
                pc += 1
            else:
                pt += 1
    return QDQReport(q, pc, pt, tuple(dict.fromkeys(problems))[:10])


def to_symmetric_int8(src: Path, dst: Path) -> int:
    """Rewrite uint8 / asymmetric Q/DQ pairs as TensorRT's symmetric int8 (zero point 0); returns how many.

    NNCF quantizes non-negative activations (after ReLU, sigmoid...) as uint8 with zero point 0, and
    asymmetric ones with any zero point; TensorRT accepts only int8 with zero point 0. The int8 scale is chosen
    to cover the same real range: max(zp - qmin, qmax - zp) * scale / 127 (a ReLU output keeps 7 bits, as
    TensorRT's own int8 gives it).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    changed, made, retyped = 0, {}, set()
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3:
            continue
        zp_t, sc_t = inits.get(n.input[2]), inits.get(n.input[1])
        if zp_t is None or sc_t is None:
            continue
        zp = numpy_helper.to_array(zp_t)
        if zp.dtype == np.int8 and not zp.any():
            continue  # already what TensorRT wants
        qmin, qmax = (0, 255) if zp.dtype == np.uint8 else (-128, 127)
        key = (n.input[1], n.input[2])
        if key not in made:
            zp = zp.astype(np.float32)
            scale = numpy_helper.to_array(sc_t).astype(np.float32)
            new_scale = (np.maximum(zp - qmin, qmax - zp) * scale / 127).astype(np.float32)
            names = (f"{n.input[1]}_s8", f"{n.input[2]}_s8")
            g.initializer.extend([numpy_helper.from_array(new_scale, names[0]),
                                  numpy_helper.from_array(np.zeros_like(zp, dtype=np.int8), names[1])])
            made[key] = names
        n.input[1], n.input[2] = made[key]
        changed += 1
        if n.op_type == "QuantizeLinear":
            retyped.add(n.output[0])
    for vi in g.value_info:  # recorded types of the quantized tensors follow the zero point: uint8 -> int8
        if vi.name in retyped:
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    with atomic(dst) as tmp:
        onnx.save(model, str(tmp))
    return changed


def make_tensorrt_ready(path: Path) -> tuple[int, QDQReport]:
    """Rewrite ``path`` in place as symmetric int8 Q/DQ and check it; BackendError when TensorRT would refuse it.

    Returns how many Q/DQ nodes were rewritten and the check's report.
    """
    n = to_symmetric_int8(path, path)
    rep = check_onnx(path)
    if not rep.ok:
        raise BackendError(f"{path} is not valid for TensorRT's explicit quantization: {rep.problems[0]}")
    return n, rep


def trtexec_command(onnx_name: str, engine_name: str, shape: tuple[int, int, int], settings, int8: bool) -> str:
    """The trtexec line that builds (and times) the engine on the device, TensorRT 10 flags."""
    c, h, w = shape
    dims = lambda b: f"{INPUT_NAME}:{b}x{c}x{h}x{w}"  # noqa: E731
    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}", f"--minShapes={dims(1)}",
            f"--optShapes={dims(1)}", f"--maxShapes={dims(settings.max_batch)}",
            f"--memPoolSize=workspace:{settings.workspace_mb}", f"--timingCacheFile={settings.timing_cache}"]
    if settings.fp16:
        args.append("--fp16")
    if int8:
        args.append("--int8")  # with Q/DQ in the graph the scales come from the file, no calibration runs
    if settings.dla_core is not None:
        args += [f"--useDLACore={settings.dla_core}", "--allowGPUFallback"]
    return " ".join(shlex.quote(a) for a in args)


def build_script(onnx_name: str, shape: tuple[int, int, int], settings, int8: bool) -> str:
    engine = suffix_of("tensorrt", Path(onnx_name).stem)
    return (
        "#!/bin/sh\n"
        "# Build the TensorRT engine on the device that will run it (engines are not portable across GPUs or\n"
        "# TensorRT versions), then time it. Written by edgekd; needs trtexec (JetPack: /usr/src/tensorrt/bin).\n"
        "set -e\ncd \"$(dirname \"$0\")\"\n"
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
        + trtexec_command(onnx_name, engine, shape, settings, int8).replace("trtexec", '"$TRTEXEC"', 1) + "\n"
    )


def build_engine(onnx_path: Path, out: Path, settings, int8: bool) -> Path:
    """Build a serialized engine with TensorRT's Python API (runs only where TensorRT and a GPU exist)."""
    if not available():
        raise BackendError("TensorRT is not importable here; build the engine on the device with build_engine.sh")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    if settings.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    inp = network.get_input(0)
    _, c, h, w = inp.shape
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, c, h, w), (1, c, h, w), (settings.max_batch, c, h, w))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path}")
    out.write_bytes(bytes(engine))
    return out


@EXPORTERS.register("tensorrt")
class TensorRTExporter:
    name = "tensorrt"

    def __init__(self, settings=None) -> None:
        from edgekd.targets import TensorRTSettings

        self.settings = settings or TensorRTSettings()

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        out = build_engine(onnx_path, out_dir / suffix_of("tensorrt", stem), self.settings, int8=False)
        return ExportedModel("tensorrt", "fp16" if self.settings.fp16 else "fp32", str(out), (str(out),))
