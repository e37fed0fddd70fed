"""NVIDIA GPU energy through NVML (``pynvml``, from the ``nvidia-ml-py`` package; imported only when used).

``nvmlDeviceGetTotalEnergyConsumption`` is a counter in millijoules since the driver loaded (Volta and newer);
where it is not supported, ``nvmlDeviceGetPowerUsage`` (milliwatts, board power of the GPU) is sampled instead.
Either covers the GPU board only, not the host CPU or memory.
"""

from __future__ import annotations

import time

from edgekd.bench.meter import METERS, Meter, Sampler, Window
from edgekd.errors import BackendError


@METERS.register("nvml")
class NvmlMeter(Meter):
    name = "nvml"

    def __init__(self, index: int = 0, interval_s: float = 0.05, source: str = "auto") -> None:
        """``source``: ``counter`` (the energy counter), ``power`` (sampled power) or ``auto`` (the counter where
        the GPU has one)."""
        if source not in ("auto", "counter", "power"):
            raise ValueError(f"nvml source {source!r}: expected auto, counter or power")
        self.index = index
        self.interval_s = interval_s
        self.source = source
        self._nv = None
        self._handle = None
        self._counter: bool | None = None
        self._gpu = ""
        self._sampler: Sampler | None = None
        self._e0 = 0
        self._t0 = 0.0

    def _open(self) -> str | None:
        """Initialise NVML once; returns the reason it cannot be used, or None."""
        if self._handle is not None:
            return None
        try:
            import pynvml
        except ImportError:
            return "pynvml is not installed (pip install nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            if self.index >= count:
                return f"GPU {self.index} requested, NVML sees {count}"
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            name = pynvml.nvmlDeviceGetName(handle)
            self._gpu = name.decode() if isinstance(name, bytes) else str(name)
        except pynvml.NVMLError as exc:
            return f"NVML failed: {exc}"
        counter_error = "not asked for"
        if self.source != "power":
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                counter_error = None
            except pynvml.NVMLError as exc:
                counter_error = str(exc)
        if counter_error and self.source == "counter":
            return f"GPU {self.index} ({self._gpu}) has no energy counter: {counter_error}"
        if counter_error:
            try:
                pynvml.nvmlDeviceGetPowerUsage(handle)
            except pynvml.NVMLError as exc:
                return f"GPU {self.index} ({self._gpu}) reports neither an energy counter nor power: {exc}"
        self._counter = counter_error is None
        self._nv, self._handle = pynvml, handle
        return None

    def why_not(self) -> str | None:
        return self._open()

    @property
    def method(self) -> str:
        self._open()
        if self._counter:
            return (f"NVML total energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ) of GPU {self.index} "
                    f"({self._gpu}): the GPU board only")
        return (f"NVML power (nvmlDeviceGetPowerUsage, mW) of GPU {self.index} ({self._gpu}) sampled every "
                f"{self.interval_s * 1e3:g} ms: the GPU board only")

    def _power_w(self) -> float:
        return self._nv.nvmlDeviceGetPowerUsage(self._handle) / 1e3

    def start(self) -> None:
        reason = self._open()
        if reason:
            raise BackendError(f"nvml meter: {reason}")
        if self._counter:
            self._e0 = self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._t0 = time.perf_counter()
        else:
            self._sampler = Sampler(self._power_w, self.interval_s)
            self._sampler.start()

    def stop(self) -> Window:
        if self._counter:
            mj = self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._e0
            return Window(mj / 1e3, time.perf_counter() - self._t0, 2)
        return self._sampler.stop()

    def close(self) -> None:
        if self._handle is not None:
            self._nv.nvmlShutdown()
            self._handle = None
