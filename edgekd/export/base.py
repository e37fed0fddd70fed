"""The exporter interface and its registry (backends register on import; ``export/catalog.py`` imports them all)."""

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
