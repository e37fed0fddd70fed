"""Energy per frame around a benchmark loop: idle power first, then the active window, idle subtracted.

Meters (``METERS``, one backend per file): ``jetson-rails`` (INA3221 board input rail, sysfs), ``tegrastats``
(the same rail via tegrastats), ``rapl`` (CPU package counters), ``nvml`` (NVIDIA GPU counter or power) and
``estimate`` (the target's power model: never measured, always labelled ``estimated`` with its method).
:func:`pick_meter` takes the first available in a sensible order for the target's device, or one by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from edgekd.bench import meter_jetson, meter_nvml, meter_rapl  # noqa: F401  (registers the meters)
from edgekd.bench.meter import METERS, Meter, Window
from edgekd.errors import ConfigError

# Jetson rails first (the whole board), then the meter of the device that runs the model, then the other one
AUTO_ORDER = {"gpu": ("jetson-rails", "tegrastats", "nvml", "rapl"),
              "cpu": ("jetson-rails", "tegrastats", "rapl", "nvml")}


@dataclass(frozen=True)
class EnergyResult:
    """Energy of ``frames`` inferences. ``estimated`` is None only for a meter reading; else it states the method."""

    model: str
    meter: str
    measured: bool
    method: str
    estimated: str | None
    frames: int
    seconds: float
    idle_w: float
    active_w: float  # mean power over the active window, idle included
    j_per_frame: float  # (active energy - idle_w x seconds) / frames
    frames_per_j: float | None  # None when the active energy did not exceed idle (too few frames to resolve)
    gross_j_per_frame: float  # without subtracting idle
    note: str = ""


@METERS.register("estimate")
class EstimateMeter(Meter):
    """The target's ``power`` model (idle_w / active_w) times wall time: an estimate, never a measurement."""

    name = "estimate"
    estimated = True

    def __init__(self, target=None, fallback_reasons: str = "", basis: str = "x wall time on this machine") -> None:
        self.target = target
        self.power = target.power if target is not None else None
        self.fallback_reasons = fallback_reasons
        self.basis = basis
        self._t0 = 0.0

    def why_not(self) -> str | None:
        if self.power is None:
            name = self.target.name if self.target is not None else "no target given"
            return f"the target has no power model ({name})"
        return None

    @property
    def method(self) -> str:
        p = self.power
        why = f"; no meter here ({self.fallback_reasons})" if self.fallback_reasons else ""
        return f"estimated: power model of {self.target.name} ({p.describe()}; {p.source}) {self.basis}{why}"

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> Window:
        seconds = time.perf_counter() - self._t0
        return Window(self.power.active_w * seconds, seconds, 0)


def pick_meter(name: str | None = None, target=None, options: dict[str, dict] | None = None) -> Meter:
    """The meter called ``name``, or the first available one for ``target.device``, else the power-model estimate.

    Args:
        name: a registered meter (``rapl``, ``nvml``, ``jetson-rails``, ``tegrastats``, ``estimate``) or None (auto).
        target: a :class:`~edgekd.targets.Target`; its device orders the search and its power model is the fallback.
        options: constructor keywords per meter name, e.g. ``{"rapl": {"root": "/tmp/powercap"}}``.

    Raises:
        ConfigError: unknown name, a named meter that cannot run here, or no meter and no power model.
    """
    options = options or {}
    if name is not None:
        cls = METERS.get(name)
        meter = cls(target=target) if cls is EstimateMeter else cls(**options.get(name, {}))
        reason = meter.why_not()
        if reason:
            raise ConfigError(f"energy meter {name!r} cannot run here: {reason}")
        return meter
    device = getattr(target, "device", "cpu")
    reasons = []
    for n in AUTO_ORDER["gpu" if device == "gpu" else "cpu"]:
        meter = METERS.get(n)(**options.get(n, {}))
        reason = meter.why_not()
        if reason is None:
            return meter
        reasons.append(f"{n}: {reason}")
    est = EstimateMeter(target, "; ".join(reasons))
    if est.why_not():
        raise ConfigError(f"no energy meter here ({'; '.join(reasons)}) and {est.why_not()}")
    return est


def energy_result(model: str, meter: Meter, frames: int, idle_w: float, active: Window) -> EnergyResult:
    """Per-frame figures from an idle power and an active window; idle is subtracted."""
    net = active.joules - idle_w * active.seconds
    note = "" if net > 0 else "active energy did not exceed idle: run more frames or a longer idle window"
    return EnergyResult(
        model=model, meter=meter.name, measured=not meter.estimated, method=meter.method,
        estimated=meter.method if meter.estimated else None, frames=frames, seconds=active.seconds, idle_w=idle_w,
        active_w=active.watts, j_per_frame=net / frames, frames_per_j=frames / net if net > 0 else None,
        gross_j_per_frame=active.joules / frames, note=note)


def measure_energy(step: Callable[[], object], frames: int, *, meter: str | Meter | None = None, target=None,
                   idle_s: float = 2.0, warmup: int = 3, model: str = "model",
                   options: dict[str, dict] | None = None) -> EnergyResult:
    """Energy per frame of ``step()`` (one inference), idle subtracted.

    Idle power is sampled for ``idle_s`` while nothing runs (the power model's idle figure for the estimate), then
    ``frames`` calls of ``step`` are measured after ``warmup`` untimed ones.

    Args:
        step: runs one frame, e.g. ``lambda: rt(sample)``.
        frames: calls in the active window (enough to last well over the meter's sampling interval).
        meter: a Meter, a meter name, or None to pick automatically (see :func:`pick_meter`).
        target: the Target (orders the automatic choice; its power model is the fallback estimate).
    """
    if frames < 1:
        raise ConfigError("frames must be at least 1")
    m = meter if isinstance(meter, Meter) else pick_meter(meter, target, options)
    try:
        for _ in range(warmup):
            step()
        if m.estimated:
            idle_w = m.power.idle_w
        else:
            m.start()
            time.sleep(idle_s)
            idle_w = m.stop().watts
        m.start()
        for _ in range(frames):
            step()
        active = m.stop()
    finally:
        m.close()
    return energy_result(model, m, frames, idle_w, active)


def estimate_energy(fps: float, target, model: str = "model", how: str = "") -> EnergyResult:
    """Energy per frame on a device that is not attached, from an estimated ``fps`` and the target's power model.

    ``how`` names where the FPS came from (e.g. "roofline on jetson-orin-nano"); the result is labelled estimated.
    """
    if target.power is None:
        raise ConfigError(f"target {target.name} has no power model; energy cannot be estimated")
    if fps <= 0:
        raise ConfigError("fps must be positive")
    meter = EstimateMeter(target, basis=f"at an estimated {fps:.1f} FPS" + (f" ({how})" if how else ""))
    seconds = 1.0 / fps
    return energy_result(model, meter, 1, target.power.idle_w, Window(target.power.active_w * seconds, seconds, 0))
