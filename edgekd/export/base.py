"""The exporter interface and its registry."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

from edgekd.artifacts import ExportedModel
from edgekd.registry import Registry


class Exporter(Protocol):
    """Turns the FP32 ONNX graph (the one source every format derives from) into a format's files."""

    name: ClassVar[str]

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel: ...


EXPORTERS: Registry[type] = Registry("exporter")


def get_exporter(name: str) -> Exporter:
    # importing the backend modules registers them; each imports its heavy backend lazily
    from edgekd.export import onnx, openvino, qonnx  # noqa: F401

    return EXPORTERS.get(name)()
