"""Helpers more than one stage uses."""

from __future__ import annotations

import numpy as np

from edgekd.run_context import Run


def inputs(r: Run, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n preprocessed samples of a split (class-balanced), as float32 NCHW + labels (segmentation:
    masks [n, H, W] at the input size)."""
    src = getattr(r.data, split).head(n)
    return r.data.preprocess.batch([src.image(i) for i in range(len(src))]), src.targets(r.data.preprocess)
