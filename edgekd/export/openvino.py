"""OpenVINO IR (xml + bin) from the FP32 ONNX graph."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from edgekd._deps import require
from edgekd.artifacts import ExportedModel
from edgekd.export.base import EXPORTERS


def save_ir(model, xml: Path) -> tuple[str, str]:
    """Save an ov.Model as IR atomically. Weights stay FP32: ``save_model`` compresses to FP16 by default,
    which would silently change an "FP32" model."""
    ov = require("openvino")
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = xml.with_name(xml.stem + ".tmp.xml")
    ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp_xml, xml)
    return str(xml), str(xml.with_suffix(".bin"))


@EXPORTERS.register("openvino")
class OpenVinoExporter:
    name: ClassVar[str] = "openvino"

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        ov = require("openvino")
        files = save_ir(ov.convert_model(str(onnx_path)), out_dir / f"{stem}.xml")
        return ExportedModel("openvino", "fp32", files[0], files)
