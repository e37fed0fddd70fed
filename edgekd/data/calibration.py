"""Inputs for the stand-alone commands that take a model file: its preprocessing (from an edgekd checkpoint card or
the ONNX file's metadata) and calibration images from a data folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.errors import ConfigError
from edgekd.preprocess import Preprocess


def preprocess_for(model: Path, reference: Path | None) -> Preprocess:
    """Preprocessing from a checkpoint card, or from an edgekd ONNX file's metadata."""
    if reference is not None:
        card = reference.with_suffix(".json")
        if not card.is_file():
            raise ConfigError(f"{reference}: its card {card.name} is missing")
        return Preprocess.from_dict(json.loads(card.read_text())["preprocess"])
    onnx_file = model if model.suffix == ".onnx" else None
    if onnx_file is not None:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
        if "edgekd.preprocess" in props:
            return Preprocess.from_dict(json.loads(props["edgekd.preprocess"]))
    raise ConfigError(f"{model}: no preprocessing recorded in the file; pass --reference CHECKPOINT")


def calibration(data: str, pre: Preprocess, n: int) -> np.ndarray:
    from edgekd.data import load_data

    seg = (Path(data) / "images").is_dir() and (Path(data) / "masks").is_dir()  # calibrate on images, not masks
    d = load_data(data, max(pre.size) if seg else pre.size[0], max_train=n, max_eval=1,
                  task="segment" if seg else "classify", min_classes=1)
    src = d.train.head(n)
    return pre.batch([src.image(i) for i in range(len(src))])
