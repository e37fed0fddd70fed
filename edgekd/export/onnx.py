"""ONNX export from PyTorch: the root graph every other format is derived from."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import ClassVar

from edgekd.artifacts import ExportedModel
from edgekd.errors import ModelError
from edgekd.export.base import EXPORTERS

INPUT_NAME, OUTPUT_NAME = "input", "logits"


def export_torch(model, sample, out: Path, metadata: dict, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Export ``model`` to ONNX at ``out`` (atomically) with preprocessing and labels in metadata_props.

    The TorchScript-based exporter is used: it exports timm's MobileViT/EfficientNet in under a second where
    the dynamo exporter takes ~10 s for the same graph on 2 cores.
    """
    import onnx
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (sample,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
    proto = onnx.load(str(tmp))
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return out


@EXPORTERS.register("onnx")
class OnnxExporter:
    """FP32 ONNX is produced by :func:`export_torch`; this exporter just records it as a model."""

    name: ClassVar[str] = "onnx"

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        return ExportedModel("onnx", "fp32", str(onnx_path), (str(onnx_path),))
