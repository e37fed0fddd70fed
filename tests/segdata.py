"""A small synthetic segmentation folder (images/ + masks/): dark thin lines ("cracks") on a noisy texture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_seg_folder(root: Path, n: int = 40, size: tuple[int, int] = (96, 64), seed: int = 0,
                    binary: bool = True) -> Path:
    """``n`` JPEG images of ``size`` (W, H) with PNG masks: 0/255 (binary) or class indices 0..2 (a second class
    drawn as filled discs)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        base = rng.normal(150, 18, (h, w, 1)) + rng.normal(0, 6, (h, w, 3))
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        mask = Image.new("L", (w, h), 0)
        di, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(1, 4))):
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            dark = int(rng.integers(30, 70))
            di.line(pts, fill=(dark, dark, dark), width=2)
            dm.line(pts, fill=255 if binary else 1, width=2)
        if not binary:
            cx, cy, r = int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8)), int(rng.integers(4, 8))
            di.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(220, 60, 60))
            dm.ellipse((cx - r, cy - r, cx + r, cy + r), fill=2)
        img.save(root / "images" / f"{i:03d}.jpg", quality=95)
        mask.save(root / "masks" / f"{i:03d}.png")
    return root
