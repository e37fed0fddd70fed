"""OpenVINO (CPU by default; GPU/NPU device names are passed through)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd._deps import require
from edgekd.errors import ModelError
from edgekd.runtimes.base import Runtime


class OvRuntime(Runtime):
    name = "openvino"

    def __init__(self, path: Path, threads: int, precision_hint: str | None = "f32", device: str = "CPU") -> None:
        ov = require("openvino")
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        try:
            self.compiled = core.compile_model(str(path), device, config)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"OpenVINO cannot load {path}: {str(exc).splitlines()[0]}") from exc
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.request = self.compiled.create_infer_request()
        self.quantized = any(op.get_type_name() == "FakeQuantize" for op in core.read_model(str(path)).get_ops())

    @property
    def input_shape(self) -> list:
        ps = self.compiled.inputs[0].get_partial_shape()
        return [d.get_length() if d.is_static else -1 for d in ps]

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self.request.infer(feeds)
        return [np.asarray(res[o]) for o in self.compiled.outputs]

    @property
    def executed_precision(self) -> str:
        t = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        hint = t.to_string() if hasattr(t, "to_string") else str(t)
        return f"int8 + {hint}" if self.quantized else hint
