"""Jetson power: the board/module input rail of the on-module INA3221 monitors, from sysfs or tegrastats.

Which rail is the input (never a sum of rails: sub-rails miss regulator losses and everything unmonitored):

- ``VDD_IN``: Jetson Orin Nano and Orin NX (module P3767: INA3221 at 0x40, channels VDD_IN, VDD_CPU_GPU_CV,
  VDD_SOC; Linux arch/arm64/boot/dts/nvidia/tegra234-p3767.dtsi) and Xavier NX (P3668, same channels;
  tegra194-p3668.dtsi). NVIDIA's forum (thread 200883) and jetson_stats treat VDD_IN as the module's total.
- ``POM_5V_IN``: Jetson Nano (JetPack 4 tegrastats: POM_5V_IN / POM_5V_GPU / POM_5V_CPU), the 5 V input;
  jetson_stats (jtop/core/power.py) uses it as the total.
- AGX Orin (P3701: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 at 0x40; VDDQ_VDD2_1V8AO at 0x41; tegra234-p3701.dtsi) and
  AGX Xavier (GPU, CPU, SOC, CV, VDDRQ, SYS5V) monitor no module input rail (jetson_stats issue 344: VIN_SYS_5V0 is
  not the total), so the meter is unavailable there unless a rail is named explicitly; use an external meter.

sysfs layouts: JetPack 5+ uses the mainline hwmon driver (``ina3221/<bus>-0040/hwmon/hwmonK/inN_label`` with
``inN_input`` in mV and ``currN_input`` in mA, N = 1..3; ``in7`` is the sum of shunt voltages, not a rail);
JetPack 4 and older use NVIDIA's iio driver (``ina3221x/<bus>-0040/iio:deviceK/rail_name_N`` with
``in_power{N}_input`` in mW). tegrastats prints ``NAME cur/avg`` per rail, in mW (``VDD_IN 4832mW/4832mW`` on
JetPack 5+, ``POM_5V_IN 2345/2345`` on JetPack 4).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgekd.bench.meter import METERS, Meter, Sampler, Window
from edgekd.errors import BackendError

I2C_DRIVERS = Path("/sys/bus/i2c/drivers")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # board/module input rails, in order of preference
NO_INPUT_RAIL = ("monitors no board input rail (AGX Orin / AGX Xavier monitor module sub-rails only); edgekd never "
                 "sums sub-rails: name one with rail=... or measure the board with an external meter")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def _read_int(p: Path) -> int:
    return int(p.read_text().split()[0])


def sysfs_rails(root: str | Path = I2C_DRIVERS) -> dict[str, Callable[[], float]]:
    """Rail name -> a function reading its power in W, from the INA3221 hwmon (JetPack 5+) or iio (<= 4) layout."""
    root = Path(root)
    rails: dict[str, Callable[[], float]] = {}
    for label in sorted(root.glob("ina3221*/*/hwmon/hwmon*/in*_label")):
        m = re.fullmatch(r"in(\d+)_label", label.name)
        name = label.read_text().strip()
        if not m or name.startswith("NC") or "sum" in name.lower():
            continue
        volt, curr = label.parent / f"in{m[1]}_input", label.parent / f"curr{m[1]}_input"
        if volt.is_file() and curr.is_file():  # in7 (sum of shunt voltages) has no curr7
            rails[name] = lambda v=volt, c=curr: _read_int(v) * _read_int(c) / 1e6  # mV x mA -> W
    for label in sorted(root.glob("ina3221*/*/iio:device*/rail_name_*")):
        n = label.name.rsplit("_", 1)[1]
        power = label.parent / f"in_power{n}_input"
        name = label.read_text().strip()
        if power.is_file() and not name.startswith("NC"):
            rails[name] = lambda p=power: _read_int(p) / 1e3  # mW -> W
    return rails


def parse_tegrastats(line: str) -> dict[str, tuple[int, int]]:
    """Rails of one tegrastats line: name -> (current mW, average mW). RAM/SWAP (``MB``) and loads do not match."""
    return {m[1]: (int(m[2]), int(m[3])) for m in _RAIL.finditer(line)}


def input_rail(names, rail: str | None = None) -> str | None:
    """The rail to use: ``rail`` if given and present, else the first board input rail present."""
    if rail is not None:
        return rail if rail in names else None
    return next((r for r in INPUT_RAILS if r in names), None)


@METERS.register("jetson-rails")
class JetsonRailMeter(Meter):
    """The board input rail of the INA3221 monitors, read from sysfs and sampled every ``interval_s``."""

    name = "jetson-rails"

    def __init__(self, root: str | Path = I2C_DRIVERS, rail: str | None = None, interval_s: float = 0.05) -> None:
        self.root = Path(root)
        self.rail = rail
        self.interval_s = interval_s
        self._sampler: Sampler | None = None

    def _pick(self) -> tuple[str | None, dict[str, Callable[[], float]]]:
        rails = sysfs_rails(self.root)
        return input_rail(rails, self.rail), rails

    def why_not(self) -> str | None:
        if not self.root.is_dir():
            return f"{self.root} does not exist (not a Jetson)"
        chosen, rails = self._pick()
        if not rails:
            return f"no INA3221 rail under {self.root} (not a Jetson, or the ina3221 driver is not bound)"
        if chosen is None:
            found = ", ".join(sorted(rails))
            return (f"rail {self.rail!r} not among {found}" if self.rail else f"this board ({found}) {NO_INPUT_RAIL}")
        try:
            rails[chosen]()
        except (OSError, ValueError) as exc:
            return f"rail {chosen} cannot be read: {exc}"
        return None

    @property
    def method(self) -> str:
        chosen, _ = self._pick()
        return (f"Jetson INA3221 rail {chosen} (board input) from sysfs, sampled every {self.interval_s * 1e3:g} ms "
                f"and integrated")

    def start(self) -> None:
        chosen, rails = self._pick()
        if chosen is None:
            raise BackendError(f"jetson-rails meter: {self.why_not()}")
        self._sampler = Sampler(rails[chosen], self.interval_s)
        self._sampler.start()

    def stop(self) -> Window:
        return self._sampler.stop()


@METERS.register("tegrastats")
class TegrastatsMeter(Meter):
    """The board input rail from a running ``tegrastats --interval MS``: mean power over the window x its length."""

    name = "tegrastats"

    def __init__(self, cmd: list[str] | None = None, rail: str | None = None, interval_ms: int = 100,
                 first_line_timeout_s: float = 5.0) -> None:
        exe = shutil.which("tegrastats")
        self.cmd = cmd or ([exe, "--interval", str(interval_ms)] if exe else None)
        self.rail = rail
        self.timeout = first_line_timeout_s
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._samples: list[tuple[float, float]] = []  # (time, W of the chosen rail)
        self._chosen: str | None = None
        self._error = ""
        self._first = threading.Event()
        self._t0 = 0.0

    def why_not(self) -> str | None:
        if self.cmd is None:
            return "tegrastats is not on PATH (not a Jetson)"
        if shutil.which(self.cmd[0]) is None:
            return f"{self.cmd[0]} not found"
        if self._error:
            return self._error
        return None

    @property
    def method(self) -> str:
        return (f"tegrastats rail {self._chosen or self.rail or '/'.join(INPUT_RAILS)} (board input), mean of its "
                f"current readings over the window x the window's length")

    def _reader(self) -> None:
        for line in self._proc.stdout:
            rails = parse_tegrastats(line)
            if not rails:
                continue
            chosen = input_rail(rails, self.rail)
            if chosen is None:
                found = ", ".join(sorted(rails))
                self._error = (f"rail {self.rail!r} not among {found}" if self.rail
                               else f"this board ({found}) {NO_INPUT_RAIL}")
                self._first.set()
                return
            self._chosen = chosen
            self._samples.append((time.perf_counter(), rails[chosen][0] / 1e3))
            self._first.set()

    def _launch(self) -> None:
        if self._proc is not None:
            return
        try:
            self._proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError as exc:
            raise BackendError(f"tegrastats could not start: {exc}") from exc
        self._thread = threading.Thread(target=self._reader, name="edgekd-tegrastats", daemon=True)
        self._thread.start()
        if not self._first.wait(self.timeout):
            self.close()
            raise BackendError(f"tegrastats printed no power line within {self.timeout:g} s")
        if self._error:
            self.close()
            raise BackendError(f"tegrastats meter: {self._error}")

    def start(self) -> None:
        self._launch()
        self._t0 = time.perf_counter()

    def stop(self) -> Window:
        t1 = time.perf_counter()
        inside = [w for t, w in self._samples if self._t0 <= t <= t1]
        if not inside:  # a window shorter than the interval: the latest reading holds
            inside = [self._samples[-1][1]]
        seconds = t1 - self._t0
        return Window(sum(inside) / len(inside) * seconds, seconds, len(inside))

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
