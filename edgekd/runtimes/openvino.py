"""OpenVINO (CPU by default; GPU/NPU device names are passed through)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgekd._deps import require
from edgekd.errors import ConfigError, ModelError, reason
from edgekd.runtimes.base import Runtime

# layers whose runtime precision says what the model really computes in (Reorders, Consts... do not)
COMPUTE_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul",
                  "ScaledDotProductAttention"}
PRECISION_NAMES = {"i8": "int8", "u8": "int8", "f32": "f32", "bf16": "bf16", "f16": "f16"}


class OvRuntime(Runtime):
    name = "openvino"

    def __init__(self, path: Path, threads: int, precision_hint: str | None = "f32", device: str = "CPU",
                 mode: str = "latency", streams: int | None = 1, pin: bool | None = None) -> None:
        """Compile ``path``. ``mode`` picks PERFORMANCE_HINT (LATENCY | THROUGHPUT); ``streams`` sets NUM_STREAMS
        (None: the hint decides); ``pin`` sets ENABLE_CPU_PINNING (None: OpenVINO's default)."""
        ov = require("openvino")
        core = ov.Core()
        if mode not in ("latency", "throughput"):
            raise ConfigError(f"unknown mode {mode!r}; expected latency or throughput")
        config: dict = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": mode.upper()}
        if streams:
            config["NUM_STREAMS"] = streams
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if pin is not None and device == "CPU":
            config["ENABLE_CPU_PINNING"] = pin
        self.config = config
        try:
            self.compiled = core.compile_model(str(path), device, config)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"OpenVINO cannot load {path}: {reason(exc)}") from exc
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.request = self.compiled.create_infer_request()
        self.quantized = any(op.get_type_name() == "FakeQuantize" for op in core.read_model(str(path)).get_ops())
        self._executed: str | None = None

    @property
    def input_shape(self) -> list:
        ps = self.compiled.inputs[0].get_partial_shape()
        return [d.get_length() if d.is_static else -1 for d in ps]

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # the input is only read, so OpenVINO may use its memory directly (outputs are still copied: callers keep
        # them across calls)
        res = self.request.infer(feeds, share_inputs=True)
        return [np.asarray(res[o]) for o in self.compiled.outputs]

    def prop(self, name: str):
        v = self.compiled.get_property(name)
        return v.to_string() if hasattr(v, "to_string") else v

    def layer_precisions(self) -> Counter:
        """Compute layers of the compiled (runtime) graph counted by the precision they execute in."""
        count: Counter = Counter()
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in COMPUTE_LAYERS:
                prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
                count[PRECISION_NAMES.get(prec, prec)] += 1
        return count

    @property
    def executed_precision(self) -> str:
        """What the CPU plugin really runs, read from the compiled model's runtime info (int8 first, then the
        float precision most compute layers run in); the compiled INFERENCE_PRECISION_HINT when unreadable."""
        if self._executed is None:
            try:
                count = self.layer_precisions()
            except Exception:  # noqa: BLE001 - devices without a readable runtime model
                count = Counter()
            floats = [p for p, _ in count.most_common() if p != "int8"]
            if count:
                base = floats[0] if floats else str(self.prop("INFERENCE_PRECISION_HINT"))
                self._executed = f"int8 + {base}" if count.get("int8") else base
            else:
                hint = str(self.prop("INFERENCE_PRECISION_HINT"))
                self._executed = f"int8 + {hint}" if self.quantized else hint
        return self._executed
