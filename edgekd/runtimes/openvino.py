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
        self._core, self._path, self._device = core, Path(path), device
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"OpenVINO cannot load {path}: {reason(exc)}") from exc
        self.quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        # an int8 model with a dynamic batch segfaults in the CPU plugin's AMX kernels at small inputs (OpenVINO
        # 2026.1-2026.4, github.com/openvinotoolkit/openvino/issues/37577; reproduced here with
        # mobilenetv3_small_050 at 64 px: static shapes run): int8 models are compiled per batch size, static
        ps = model.inputs[0].get_partial_shape()
        self._static_batch = self.quantized and ps.rank.is_static and ps[0].is_dynamic and all(
            d.is_static for d in list(ps)[1:])
        self._compiled: dict[int, object] = {}
        self._batch = 1 if self._static_batch else None
        self._use(self._batch)
        self.input_name = self.compiled.inputs[0].get_any_name()
        self._executed: str | None = None

    def _use(self, batch: int | None) -> None:
        """Compile (once per batch size for static int8 models) and make it the current request."""
        if batch not in self._compiled:
            try:
                model = self._core.read_model(str(self._path))
                if batch is not None:
                    ps = model.inputs[0].get_partial_shape()
                    model.reshape([batch, *(d.get_length() for d in list(ps)[1:])])
                self._compiled[batch] = self._core.compile_model(model, self._device, self.config)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"OpenVINO cannot load {self._path}: {reason(exc)}") from exc
        self.compiled = self._compiled[batch]
        self.request = self.compiled.create_infer_request()
        self._batch = batch

    @property
    def input_shape(self) -> list:
        ps = self.compiled.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else -1 for d in ps]
        return [-1, *dims[1:]] if self._static_batch else dims  # the file's batch stays dynamic for callers

    def for_batch(self, n: int) -> None:
        """Make ``self.compiled`` / ``self.request`` the ones for batch ``n`` (static int8 models; else a no-op)."""
        if self._static_batch and n != self._batch:
            self._use(n)

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.for_batch(len(next(iter(feeds.values()))))
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
