"""The energy-meter interface: a meter measures the joules of a time window (start ... stop).

Two kinds of hardware exist. Counters (RAPL, NVML's total-energy counter) accumulate joules: a window is the
difference of two reads, corrected for wrap-around. Power sensors (Jetson INA3221 rails, tegrastats, NVML's power
reading) give watts now: a window is the integral of samples taken by a background thread. Meters register by
name in :data:`METERS`; :func:`edgekd.bench.energy.pick_meter` chooses one.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from edgekd.errors import BackendError
from edgekd.registry import Registry


@dataclass(frozen=True)
class Window:
    """Energy over one measured window."""

    joules: float
    seconds: float
    samples: int  # counter reads or power samples behind the figure

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


class Meter(ABC):
    """One source of energy readings. ``why_not()`` is None when it can run here, else the reason."""

    name: ClassVar[str]
    estimated: ClassVar[bool] = False  # True only for the power-model estimate

    @abstractmethod
    def why_not(self) -> str | None:
        """None when the meter can be read here, else the reason (one line)."""

    @property
    @abstractmethod
    def method(self) -> str:
        """What is read and what it covers (e.g. which rail, which domains)."""

    @abstractmethod
    def start(self) -> None:
        """Begin a window."""

    @abstractmethod
    def stop(self) -> Window:
        """End the window begun by :meth:`start`."""

    def close(self) -> None:
        """Release what the meter holds (threads, processes, library handles); nothing by default."""
        return None


METERS: Registry[type[Meter]] = Registry("energy meter")


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 after ``max_range`` (RAPL's ``max_energy_range_uj``); one wrap at most."""
    return after - before if after >= before else after + max_range - before


def integrate(samples: Sequence[tuple[float, float]]) -> Window:
    """Trapezoidal integral of ``(time s, power W)`` samples, in time order."""
    if len(samples) < 2:
        return Window(0.0, 0.0, len(samples))
    joules = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False))
    return Window(joules, samples[-1][0] - samples[0][0], len(samples))


class Sampler:
    """Samples ``read_w()`` every ``interval_s`` in a thread; the window's ends are sampled on the caller's thread,
    so the integral covers exactly start..stop."""

    def __init__(self, read_w: Callable[[], float], interval_s: float = 0.05) -> None:
        self.read_w = read_w
        self.interval_s = interval_s
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), self.read_w()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except (OSError, ValueError) as exc:  # a sensor that vanished mid-window: reported by stop()
                self._error = exc
                return

    def start(self) -> None:
        self._samples = []
        self._error = None
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="edgekd-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> Window:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise BackendError(f"power sensor read failed during the window: {self._error}")
        self._sample()
        return integrate(self._samples)
