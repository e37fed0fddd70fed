"""The exporter interface and its registry (backends register on import; ``export/catalog.py`` imports them all)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

from edgekd.artifacts import ExportedModel
from edgekd.registry import Registry


class Exporter(Protocol):
    """Writes one format's files from an ONNX graph: ``export(onnx_path, out_dir, stem)``.

    Which graph ``onnx_path`` must be is the format's ``export_from`` in ``edgekd/formats.py``: the FP32 root
    graph ``export.onnx.export_torch`` writes (onnx, openvino, tensorrt), or the int8 Q/DQ graph of the quantize
    stage (qonnx, which refuses an FP32 graph with ModelError). Callers check ``export_from`` before calling (the
    export stage calls only the FP32 ones). The ``onnx`` exporter writes nothing: the root graph already is the
    ONNX model, so it records it (with its external-data files). The result's format is the exporter's name, its
    precision one of the format's ``precisions`` and its path ends in the format's suffix
    (tests/test_formats.py checks this for every backend importable here).
    """

    name: ClassVar[str]

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel: ...


EXPORTERS: Registry[type] = Registry("exporter")
