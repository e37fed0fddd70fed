"""OpenVINO IR (xml + bin) from the FP32 ONNX graph."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from edgekd._deps import require
from edgekd.artifacts import ExportedModel
from edgekd.errors import ConfigError, reason, writing
from edgekd.export.base import EXPORTERS
from edgekd.formats import suffix_of


def save_ir(model, xml: Path, compress_to_fp16: bool = False) -> tuple[str, str]:
    """Save an ov.Model as IR atomically. Weights stay FP32 unless ``compress_to_fp16``: ``save_model``
    compresses to FP16 by default, which would silently change an "FP32" model."""
    ov = require("openvino")
    tmp_xml = xml.with_name(xml.stem + ".tmp.xml")
    with writing(xml, tmp_xml):
        xml.parent.mkdir(parents=True, exist_ok=True)
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        except BaseException:
            tmp_xml.with_suffix(".bin").unlink(missing_ok=True)
            raise
    os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp_xml, xml)
    return str(xml), str(xml.with_suffix(".bin"))


@EXPORTERS.register("openvino")
class OpenVinoExporter:
    """IR from the FP32 ONNX.

    Args:
        precision: "fp32" keeps FP32 weights; "fp16" stores them as FP16 (half the size; the CPU plugin
            decompresses them and still computes at its inference precision, f32 when pinned).
        input_shape: a static input shape, e.g. (1, 3, 224, 224); None keeps the ONNX's (dynamic batch).
            Static shapes let NPU/GPU plugins and some CPU paths compile a specialised graph.
    """

    name: ClassVar[str] = "openvino"

    def __init__(self, precision: str = "fp32", input_shape: tuple[int, ...] | None = None) -> None:
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"OpenVINO export precision must be fp32 or fp16 (int8 comes from quantize), "
                              f"got {precision!r}")
        self.precision, self.input_shape = precision, input_shape

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        ov = require("openvino")
        kw = {"input": [list(self.input_shape)]} if self.input_shape else {}
        try:
            model = ov.convert_model(str(onnx_path), **kw)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"OpenVINO cannot convert {onnx_path} with input shape {self.input_shape}: "
                              f"{reason(exc)}") from exc
        files = save_ir(model, out_dir / suffix_of("openvino", stem), compress_to_fp16=self.precision == "fp16")
        return ExportedModel("openvino", self.precision, files[0], files)
