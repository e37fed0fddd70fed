"""Tiny image folders the tests build: one colour per class plus noise, so a tiny model tells them apart."""

from pathlib import Path

import numpy as np


def make_folder(root: Path, counts: dict[str, int], side: int = 32) -> Path:
    """A small ImageFolder: one colour per class plus noise, so a tiny model can tell them apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, (cls, n) in enumerate(counts.items()):
        d = root / cls
        d.mkdir(parents=True)
        col = np.array([200 if k == 0 else 40, 40, 40 if k == 0 else 200], np.float32)
        for i in range(n):
            a = (rng.normal(0, 30, (side, side, 3)) + col).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{i}.png")
    return root
