"""Every exporter edgekd has, by name: each backend module registers itself in ``EXPORTERS`` when imported (and
imports its heavy library only when it exports), so this module imports them all and ``base`` imports none."""

from __future__ import annotations

from edgekd.export import onnx, openvino, qonnx, tensorrt  # noqa: F401 - importing registers each exporter
from edgekd.export.base import EXPORTERS, Exporter

__all__ = ["EXPORTERS", "get_exporter"]


def get_exporter(name: str, **settings) -> Exporter:
    """The exporter registered as ``name`` (onnx, openvino, qonnx, tensorrt), built with ``settings``."""
    return EXPORTERS.get(name)(**settings)
