"""What a benchmark number depends on: the machine, CPU pinning and the process's peak memory."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager

from edgekd.errors import ConfigError

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux: write 5 to /proc/self/clear_refs).
    False when it cannot be reset: the peak then covers the whole process lifetime."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's RSS high-water mark in MB (VmHWM, or getrusage's ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def pinned(threads: int, pin: bool):
    """Restrict this process to the first ``threads`` CPUs it may use (when ``pin``), restoring them after."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    if threads > len(before):
        raise ConfigError(f"--pin: {threads} threads but this process may use only {len(before)} CPUs")
    cpus = sorted(before)[:threads]
    os.sched_setaffinity(0, cpus)
    try:
        yield cpus
    finally:
        os.sched_setaffinity(0, before)


def system_info() -> dict:
    """CPU model, core counts, ISA flags that change int8/bf16 speed, memory, OS and library versions."""
    from edgekd._deps import tool_versions

    info: dict = {"cpu": "unknown", "logical_cpus": os.cpu_count(), "physical_cores": None, "isa": [],
                  "memory_gb": None, "os": f"{platform.system()} {platform.release()}"}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        cores = set()
        phys = core = None
        for line in text.splitlines():
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name":
                info["cpu"] = val
            elif key == "flags":
                info["isa"] = [f for f in _FLAGS if f in val.split()]
            elif key == "physical id":
                phys = val
            elif key == "core id":
                core = val
                cores.add((phys, core))
        info["physical_cores"] = len(cores) or None
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        info["memory_gb"] = round(kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    info["versions"] = tool_versions()
    return info


def machine_key(rec: dict | None) -> str:
    """What makes two machine records (``system_info()``) the same machine for timing: CPU model, ISA flags and
    usable CPUs ("" for no record)."""
    if not rec:
        return ""
    return f"{rec.get('cpu')}|{','.join(rec.get('isa') or [])}|{rec.get('usable_cpus')}"


def row_machines(rows: list[dict], label) -> dict:
    """The machine fields of a result JSON whose rows were measured in several invocations, each row carrying its
    own ``machine`` record (or none: measured before rows recorded one): ``{"machine": record}`` when every row has
    the same one, else ``{"row_machines": [{"rows": [label(row), ...], "machine": record or None}, ...]}``, so a
    table never names one machine for rows another one measured."""
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(machine_key(r.get("machine")), {"rows": [], "machine": r.get("machine")})
        g["rows"].append(label(r))
    if len(groups) == 1 and rows and rows[0].get("machine"):
        return {"machine": rows[0]["machine"]}
    return {"row_machines": list(groups.values())}
