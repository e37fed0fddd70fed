"""Op pre-flight: before any training, can the target's runtimes run every op of the student's graph?

The untrained student (random weights, the target's input size) is exported to ONNX exactly as the export
stage will export the trained one, then each runtime the target uses is asked about the graph:

- onnxruntime: an inference session is created (its kernel registry decides);
- OpenVINO: ``Core.read_model`` (the ONNX frontend refuses ops it cannot convert) + ``query_model`` on CPU
  (ops the plugin cannot run) + ``compile_model``;
- TensorRT: a *list check* against TensorRT 10's ONNX parser support matrix (``export/tensorrt.py``), not
  TensorRT itself, which cannot be installed here; Q/DQ rules are checked after quantization (stages/quantize.py);
- FPGA / QONNX: a list check against the ops FPGA dataflow compilers (FINN, hls4ml) map to hardware.

A failure raises ConfigError naming the target, runtime, op(s) and students that pass for that target.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import ConfigError, EdgeKDError, WriteError, reason
from edgekd.targets import Target

# Ops FINN / hls4ml map to FPGA dataflow layers (BatchNorm is folded into Conv by the ONNX export in eval mode,
# or into per-channel Mul/Add). Deliberately left out: HardSwish, HardSigmoid, Sigmoid, Softmax, LayerNorm,
# ReduceMean (squeeze-excite), Div/Sqrt/Erf: compilers either lack them or need hand-written layers.
FPGA_OPS = frozenset("""
Conv Relu Clip MaxPool AveragePool GlobalAveragePool GlobalMaxPool Resize Upsample Concat Add Mul Sub
BatchNormalization Gemm MatMul Flatten Reshape Transpose Squeeze Unsqueeze Identity Constant Pad
QuantizeLinear DequantizeLinear Quant
""".split())

# students known to pass each check at 64-256 px (tests/test_preflight.py keeps these honest)
WORKS_ON = {
    "onnxruntime": ("mobilevit_xxs", "efficientnet_b0", "mobilenetv3_small_100"),
    "openvino": ("mobilevit_xxs", "efficientnet_b0", "mobilenetv3_small_100"),
    "tensorrt": ("efficientnet_b0", "mobilenetv3_small_100"),
    "fpga": ("resnet10t", "resnet18"),
}
LABEL = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO (CPU)", "tensorrt": "TensorRT (op list check)",
         "fpga": "the FPGA flow (QONNX op list check)"}


@dataclass(frozen=True)
class OpProblem:
    """Ops of a graph that one runtime refuses (``detail``: the runtime's own words, when it gave any)."""

    runtime: str
    ops: tuple[str, ...]
    detail: str = ""


def checks_for(target: Target) -> list[str]:
    """The runtimes whose op support matters for ``target``, in the order they are checked."""
    fmts, rts = set(target.formats), set(target.runtimes)
    out = []
    if "onnx" in fmts or "onnxruntime" in rts or target.device == "jetson":  # ORT verifies Jetson ONNX on the host
        out.append("onnxruntime")
    if "openvino" in fmts or "openvino" in rts:
        out.append("openvino")
    if "tensorrt" in fmts or "tensorrt" in rts:
        out.append("tensorrt")
    if "qonnx" in fmts or target.device == "fpga":
        out.append("fpga")
    return out


def _ops(path: Path) -> list[tuple[str, str]]:
    import onnx

    return [(n.domain, n.op_type) for n in onnx.load(str(path), load_external_data=False).graph.node]


def _name(domain: str, op: str) -> str:
    return f"{domain}.{op}" if domain not in ("", "ai.onnx") else op


def check_onnxruntime(path: Path) -> OpProblem | None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/NotImplemented types
        msg = reason(exc)
        ops = tuple(sorted({_name(d, o) for d, o in _ops(path) if o in msg})) or ("?",)
        return OpProblem("onnxruntime", ops, msg)
    return None


def check_openvino(path: Path) -> OpProblem | None:
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - the ONNX frontend lists the ops it cannot convert
        msg = " ".join(str(exc).split())
        ops = tuple(sorted({_name(d, o) for d, o in _ops(path) if o in msg})) or ("?",)
        return OpProblem("openvino", ops, msg[:300])
    supported = core.query_model(model, "CPU")
    missing = tuple(sorted({op.get_type_name() for op in model.get_ops() if op.get_friendly_name() not in supported
                            and op.get_type_name() not in ("Parameter", "Result", "Constant")}))
    if missing:
        return OpProblem("openvino", missing, "query_model: not supported on CPU")
    try:
        # one thread: the compile only proves the graph compiles, and a run then starts its loader workers; the
        # one heap corruption seen in the tests followed an OpenVINO model compiled with 2 threads, then workers
        # (README, Tests); a single-threaded compile keeps pre-flight out of that sequence
        core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1})
    except Exception as exc:  # noqa: BLE001
        return OpProblem("openvino", ("?",), reason(exc))
    return None


def check_tensorrt(path: Path) -> OpProblem | None:
    from edgekd.export.tensorrt import SUPPORTED_OPS

    bad = tuple(sorted({_name(d, o) for d, o in _ops(path) if d not in ("", "ai.onnx") or o not in SUPPORTED_OPS}))
    return OpProblem("tensorrt", bad, "not in TensorRT 10's ONNX parser support list") if bad else None


def check_fpga(path: Path) -> OpProblem | None:
    bad = tuple(sorted({_name(d, o) for d, o in _ops(path)
                        if o not in FPGA_OPS or d not in ("", "ai.onnx", "qonnx.custom_op.general")}))
    return OpProblem("fpga", bad, "outside the FPGA op list (export/preflight.py FPGA_OPS)") if bad else None


CHECKS = {"onnxruntime": check_onnxruntime, "openvino": check_openvino, "tensorrt": check_tensorrt,
          "fpga": check_fpga}


def check_graph(path: Path, target: Target) -> list[OpProblem]:
    """Ask every runtime ``target`` uses whether it can run the ONNX graph at ``path``; [] when all can."""
    return [p for rt in checks_for(target) if (p := CHECKS[rt](path)) is not None]


def problem_message(target: Target, arch: str, problem: OpProblem) -> str:
    """One line: target, runtime, the op(s), the student, and students that work there."""
    ops = ", ".join(problem.ops[:6]) + (f" (+{len(problem.ops) - 6} more)" if len(problem.ops) > 6 else "")
    noun = "op" if len(problem.ops) == 1 else "ops"
    alts = [s for s in WORKS_ON[problem.runtime] if s != arch]
    alt = " or ".join([", ".join(alts[:-1]), alts[-1]] if len(alts) > 1 else alts)
    why = f" ({problem.detail})" if problem.detail and problem.ops == ("?",) else ""
    return f"{target.name}: {LABEL[problem.runtime]} cannot run {noun} {ops} of student {arch}{why}; try {alt}"


def preflight_student(arch: str, num_classes: int, image_size: int | tuple[int, int], target: Target,
                      work_dir: Path | None = None, stem_stride: int | None = None,
                      exporter: str | None = None) -> list[str]:
    """Export the untrained ``arch`` at ``image_size`` to ONNX and check it against every runtime of ``target``.

    Args:
        arch: the student's name (timm or edgekd's own, as ``models.factory.create_timm`` takes).
        num_classes: classifier outputs.
        image_size: input side, or (height, width).
        target: the loaded target.
        work_dir: where the temporary ONNX goes (default: a temporary folder, removed afterwards).
        stem_stride: the student's first-convolution stride when the run sets one (``stem_stride``).
        exporter: the ONNX exporter the run's export stage will use (``onnx_exporter``; None: the default).

    Returns:
        The runtimes checked, e.g. ``["onnxruntime", "openvino"]``.

    Raises:
        ConfigError: a runtime cannot run some op (the message names target, runtime, ops, alternatives),
            or the student does not export to ONNX at all.
    """
    import torch

    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm

    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = create_timm(arch, num_classes, stem_stride=stem_stride).eval()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / f"{arch}-preflight.onnx"
        try:
            export_torch(model, torch.zeros(1, 3, h, w), path, {}, exporter=exporter)
        except WriteError:
            raise  # a full disk is not the student's fault
        except EdgeKDError as exc:
            raise ConfigError(f"{target.name}: student {arch} does not export to ONNX ({exc})") from exc
        problems = check_graph(path, target)
    if problems:
        raise ConfigError(problem_message(target, arch, problems[0]))
    return checks_for(target)
