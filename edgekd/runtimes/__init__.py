"""Runtimes, one backend per file: load, infer, close (context managers)."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import ConfigError
from edgekd.runtimes.base import Runtime


def runtime_for(path: str | Path, runtime: str | None = None, threads: int = 2,
                precision_hint: str | None = "f32") -> Runtime:
    """Open ``path`` in ``runtime`` (default: by suffix, .onnx -> onnxruntime, .xml -> openvino; QONNX files
    (``*.qonnx.onnx``) -> qonnx's executor: onnxruntime cannot run the ``Quant`` op)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    if runtime is None and path.name.endswith(".qonnx.onnx"):
        runtime = "qonnx"
    if runtime is None:
        runtime = {".onnx": "onnxruntime", ".xml": "openvino"}.get(path.suffix)
        if runtime is None:
            raise ConfigError(f"{path}: cannot tell the runtime from the suffix; expected .onnx or .xml")
    if runtime == "onnxruntime":
        if path.suffix != ".onnx":
            raise ConfigError(f"{path}: onnxruntime reads .onnx files only")
        from edgekd.runtimes.onnxruntime import OrtRuntime

        return OrtRuntime(path, threads)
    if runtime == "openvino":
        from edgekd.runtimes.openvino import OvRuntime

        return OvRuntime(path, threads, precision_hint)
    if runtime == "qonnx":
        from edgekd.runtimes.qonnx import QonnxRuntime

        return QonnxRuntime(path)
    raise ConfigError(f"unknown runtime {runtime!r}; known: onnxruntime, openvino, qonnx")
