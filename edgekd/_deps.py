"""Lazy imports of heavy backends with a clear hint when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.errors import BackendError


def require(module: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise a BackendError that says what to install.

    Args:
        module: the module to import, e.g. ``"openvino"``.
        package: the pip package providing it when the name differs.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise BackendError(f"{module} is not available ({exc}); install it with: pip install {pkg}") from exc


def version_of(dist: str) -> str | None:
    """Installed version of a distribution, or None (no import of the package itself)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def tool_versions() -> dict[str, str | None]:
    """Versions of the tools that shape results, for manifests and reports."""
    import platform

    names = ["edgekd", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "numpy"]
    out: dict[str, str | None] = {n: version_of(n) for n in names}
    out["python"] = platform.python_version()
    out["machine"] = platform.machine()
    out["cpu"] = _cpu_name()
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
