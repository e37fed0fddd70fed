"""ONNX export from PyTorch: the root graph every other format is derived from."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

from edgekd.artifacts import ExportedModel
from edgekd.errors import ModelError, WriteError, reason, writing
from edgekd.export.base import EXPORTERS

INPUT_NAME, OUTPUT_NAME = "input", "logits"


# above this much weight data the graph goes to external data: one protobuf cannot exceed 2 GB
EXTERNAL_DATA_MB = 1800.0


def export_torch(model, sample, out: Path, metadata: dict, opset: int = 17, dynamic_batch: bool = True,
                 simplify: bool = False, external_data_mb: float | None = EXTERNAL_DATA_MB) -> Path:
    """Export ``model`` to ONNX at ``out`` (atomically) with preprocessing and labels in metadata_props.

    The TorchScript-based exporter is used: it exports timm's MobileViT/EfficientNet in under a second where
    the dynamo exporter takes ~10 s for the same graph on 2 cores.

    Args:
        model: the torch module (put in eval mode).
        sample: an input tensor of the exported shape (batch 1).
        out: the ``.onnx`` file to write.
        metadata: written into ``metadata_props`` (non-strings as JSON).
        opset: the ONNX opset.
        dynamic_batch: batch as a symbolic dimension (else the sample's batch size).
        simplify: run onnxslim (constant folding, dead-node removal, op fusions) on the exported graph.
        external_data_mb: when the weights exceed this many MB, write them to ``<out>.data`` beside the graph
            (ONNX external data; needed above protobuf's 2 GB); None never does.
    """
    import onnx
    import torch

    tmp = out.with_name(out.name + ".tmp")
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    model.eval()
    weight_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    external = external_data_mb is not None and weight_mb > external_data_mb

    def _export(f) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (sample,), f, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes)

    if not external:  # in memory: a failure here is the model's, never the disk's (that shows in onnx.save below)
        buf = io.BytesIO()
        try:
            _export(buf)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"ONNX export failed: {reason(exc)}") from exc
        proto = onnx.load_from_string(buf.getvalue())
    else:
        # torch writes a >2 GB model as one file per tensor beside the graph: keep those in a folder of their own
        with writing(out):
            raw_dir = tempfile.mkdtemp(dir=out.parent)
        try:
            raw = Path(raw_dir) / "raw.onnx"
            try:
                _export(str(raw))
            except OSError as exc:
                raise WriteError(f"cannot write {raw}: {exc.strerror or reason(exc)}") from exc
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"ONNX export failed: {reason(exc)}") from exc
            proto = onnx.load(str(raw))
        finally:
            shutil.rmtree(raw_dir, ignore_errors=True)
    if simplify:
        proto = _slim(proto)
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    data = out.with_name(out.name + ".data")
    if not external:
        onnx.checker.check_model(proto)
    with writing(out, tmp):
        if data.exists():
            data.unlink()  # onnx appends to an existing external-data file
        if external:
            onnx.save(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=data.name, size_threshold=1024)
        else:
            onnx.save(proto, str(tmp))
    if external:
        onnx.checker.check_model(str(tmp))  # by path: a >2 GB proto cannot be checked in memory
    with writing(out, tmp):
        os.replace(tmp, out)
    return out


def _slim(proto):
    """onnxslim's graph simplification; numerics are unchanged (it folds constants and removes dead or
    identity nodes; tests/test_export_options.py checks outputs against the unsimplified graph)."""
    from edgekd._deps import require

    onnxslim = require("onnxslim")
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"onnxslim could not simplify the graph: {reason(exc)}") from exc


def onnx_files(path: Path) -> tuple[str, ...]:
    """The ONNX file and its external-data files, if any."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    side = {e.value for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data if e.key == "location"}
    return (str(path), *(str(path.parent / s) for s in sorted(side)))


@EXPORTERS.register("onnx")
class OnnxExporter:
    """FP32 ONNX is produced by :func:`export_torch`; this exporter just records it as a model."""

    name: ClassVar[str] = "onnx"

    def export(self, onnx_path: Path, out_dir: Path, stem: str) -> ExportedModel:
        return ExportedModel("onnx", "fp32", str(onnx_path), onnx_files(Path(onnx_path)))
