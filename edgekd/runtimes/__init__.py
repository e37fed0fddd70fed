"""Runtimes, one backend per file: load, infer, close (context managers)."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import BackendError, ConfigError
from edgekd.formats import known_suffixes, reads, runtime_of_path
from edgekd.runtimes.base import Runtime

RUNTIMES = ("torch", "onnxruntime", "openvino", "tensorrt", "qonnx")


def runtime_for(path: str | Path, runtime: str | None = None, threads: int = 2,
                precision_hint: str | None = "f32", **options) -> Runtime:
    """Open ``path`` in ``runtime`` (default: the runtime of its format in ``edgekd/formats.py``, by suffix:
    .onnx -> onnxruntime, .xml -> openvino, .safetensors -> torch, .engine -> tensorrt; QONNX files
    (``*.qonnx.onnx``) -> qonnx's executor: onnxruntime cannot run the ``Quant`` op). ``options`` go to the
    backend (OpenVINO: mode, streams, pin)."""
    path = Path(path)
    if runtime is not None and runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    if runtime is None:
        runtime = runtime_of_path(path)
        if runtime is None:
            raise ConfigError(f"{path}: cannot tell the runtime from the suffix; expected {known_suffixes()}")
    if runtime == "onnxruntime":
        if not reads("onnxruntime", path):
            raise ConfigError(f"{path}: onnxruntime reads .onnx files only")
        from edgekd.runtimes.onnxruntime import OrtRuntime

        return OrtRuntime(path, threads)
    if runtime == "openvino":
        if not reads("openvino", path):
            raise ConfigError(f"{path}: openvino reads .xml or .onnx files")
        from edgekd.runtimes.openvino import OvRuntime

        return OvRuntime(path, threads, precision_hint, **options)
    if runtime == "qonnx":
        if not reads("qonnx", path):
            raise ConfigError(f"{path}: qonnx's executor reads .onnx files only")
        from edgekd.runtimes.qonnx import QonnxRuntime

        return QonnxRuntime(path)
    if runtime == "torch":
        if not reads("torch", path):
            raise ConfigError(f"{path}: the torch runtime reads edgekd checkpoints (.safetensors + .json card)")
        from edgekd.runtimes.torch import TorchRuntime

        return TorchRuntime(path, threads)
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise BackendError("tensorrt is not importable on this machine; bench TensorRT engines on the device "
                           "(bundle: sh build_engine.sh, then trtexec)") from exc
    if not reads("tensorrt", path):
        raise ConfigError(f"{path}: the tensorrt runtime reads serialized engines (.engine / .plan)")
    from edgekd.runtimes.tensorrt import TrtRuntime

    return TrtRuntime(path)
