"""ONNX Runtime, CPU execution provider (CUDA/TensorRT providers are used when present and asked for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd._deps import require
from edgekd.errors import ModelError, reason
from edgekd.runtimes.base import Runtime


class OrtRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int, providers: list[str] | None = None) -> None:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"onnxruntime cannot load {path}: {reason(exc)}") from exc
        self.input_name = self.sess.get_inputs()[0].name
        self._has_qdq = None
        self.path = path

    @property
    def input_shape(self) -> list:
        return list(self.sess.get_inputs()[0].shape)

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.sess.run(None, feeds)

    @property
    def executed_precision(self) -> str:
        if self._has_qdq is None:
            import onnx

            graph = onnx.load(str(self.path), load_external_data=False).graph
            self._has_qdq = any(n.op_type == "QuantizeLinear" for n in graph.node)
        return "int8 (Q/DQ) + fp32" if self._has_qdq else "fp32"
