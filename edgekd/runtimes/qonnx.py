"""QONNX files run by qonnx's own executor (``qonnx.core.onnx_exec.execute_onnx``), the reference semantics of
the ``Quant`` op that FPGA flows (FINN, hls4ml) build from. It runs node by node, one ONNX Runtime session per
node (~1 s per batch for a 64 px MobileNet, about a minute for MobileViT on 2 busy cores): a parity check, not
a deployment runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd._deps import require
from edgekd.errors import ModelError, reason
from edgekd.runtimes.base import Runtime


class QonnxRuntime(Runtime):
    name = "qonnx"

    def __init__(self, path: Path) -> None:
        require("qonnx")
        from qonnx.core.modelwrapper import ModelWrapper

        try:
            self.model = ModelWrapper(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"qonnx cannot load {path}: {reason(exc)}") from exc
        self.input_name = self.model.graph.input[0].name
        self.output_name = self.model.graph.output[0].name
        self._by_batch = {1: self.model}
        self.bits = sorted({int(self.model.get_initializer(n.input[3]))
                            for n in self.model.get_nodes_by_op_type("Quant")})

    @property
    def input_shape(self) -> list:
        return list(self.model.get_tensor_shape(self.input_name))

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """QONNX graphs are exported with batch 1 (FPGA dataflow graphs are static); a larger batch runs a copy
        re-shaped to it, as the executor's cost is per node (one ONNX Runtime session each), not per sample."""
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx

        from edgekd.export.qonnx import with_batch

        x = feeds[self.input_name]
        if len(x) not in self._by_batch:
            self._by_batch[len(x)] = ModelWrapper(with_batch(self.model.model, len(x)))
        return [execute_onnx(self._by_batch[len(x)], {self.input_name: x})[self.output_name]]

    @property
    def executed_precision(self) -> str:
        bits = "/".join(str(b) for b in self.bits) or "none"
        return f"quant {bits}-bit (simulated, float)"
