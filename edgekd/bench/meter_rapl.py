"""RAPL energy counters through Linux powercap (x86: Intel, and AMD Zen since Linux 5.8).

``{root}/intel-rapl:N/`` is package N: ``name`` (``package-0``), ``energy_uj`` (a counter in microjoules) and
``max_energy_range_uj`` (where it wraps to 0). Sub-zones ``intel-rapl:N:M`` (core, uncore, dram) are parts of or
beside the package and are not added. Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from edgekd.bench.meter import METERS, Meter, Window, counter_delta
from edgekd.errors import BackendError

POWERCAP = Path("/sys/class/powercap")


@METERS.register("rapl")
class RaplMeter(Meter):
    """Sum of the CPU package counters: CPU cores, caches and uncore; not DRAM, GPUs or the rest of the board."""

    name = "rapl"

    def __init__(self, root: str | Path = POWERCAP) -> None:
        self.root = Path(root)
        self._before: list[int] = []
        self._t0 = 0.0

    def zones(self) -> list[tuple[Path, str, int]]:
        """(folder, name, wrap range in uJ) of each package zone, in index order."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir(), key=lambda p: p.name):
            if not re.fullmatch(r"intel-rapl:\d+", d.name) or not (d / "name").is_file():
                continue
            name = (d / "name").read_text().strip()
            if name.startswith("package"):
                rng = d / "max_energy_range_uj"
                out.append((d, name, int(rng.read_text()) if rng.is_file() else 0))
        return out

    def why_not(self) -> str | None:
        if not self.root.is_dir():
            return f"{self.root} does not exist (no powercap RAPL: not x86, a VM, or intel_rapl not loaded)"
        zones = self.zones()
        if not zones:
            return f"no package zone (intel-rapl:N with name package-N) under {self.root}"
        for d, _, rng in zones:
            f = d / "energy_uj"
            if not f.is_file():
                return f"{f} is missing"
            if rng <= 0:
                return f"{d / 'max_energy_range_uj'} is missing or 0; wrap-around could not be corrected"
            try:
                int(f.read_text())
            except PermissionError:
                return f"{f} is readable by root only (Linux >= 5.10 restricts RAPL counters, CVE-2020-8694)"
            except ValueError:
                return f"{f} does not hold an integer"
        return None

    @property
    def method(self) -> str:
        names = "+".join(n for _, n, _ in self.zones())
        return f"RAPL energy counters ({names}, powercap): CPU packages only, excludes DRAM, GPUs and the board"

    def _read(self) -> list[int]:
        try:
            return [int((d / "energy_uj").read_text()) for d, _, _ in self.zones()]
        except (OSError, ValueError) as exc:
            raise BackendError(f"RAPL counter read failed: {exc}") from exc

    def start(self) -> None:
        self._before = self._read()
        self._t0 = time.perf_counter()

    def stop(self) -> Window:
        after = self._read()
        seconds = time.perf_counter() - self._t0
        ranges = [r for _, _, r in self.zones()]
        uj = sum(counter_delta(b, a, r) for b, a, r in zip(self._before, after, ranges, strict=True))
        return Window(uj / 1e6, seconds, 2)
