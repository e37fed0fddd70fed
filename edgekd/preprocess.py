"""Image preprocessing shared by training, verify, bench and the on-device runner.

Torch-free on purpose (numpy + Pillow only): the bundle's runner must apply exactly what training applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``size`` (H, W), RGB, scale to [0, 1], then (x - mean) / std, NCHW float32."""

    size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    color: str = "RGB"
    layout: str = field(default="NCHW")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"], d["mean"], d["std"] = list(self.size), list(self.mean), list(self.std)
        d["scale"] = 1 / 255
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(size=tuple(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   interpolation=d.get("interpolation", "bilinear"), color=d.get("color", "RGB"),
                   layout=d.get("layout", "NCHW"))

    def resize(self, img: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 at any size -> uint8 at ``size``."""
        h, w = self.size
        if img.shape[:2] == (h, w):
            return img
        resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}
        return np.asarray(Image.fromarray(img).resize((w, h), resample[self.interpolation]))

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        """uint8 HxW class indices -> ``size`` (nearest: class values are never blended)."""
        h, w = self.size
        if mask.shape[:2] == (h, w):
            return mask
        return np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))

    def normalize(self, img: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 (already at ``size``) -> float32 3xHxW."""
        x = img.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.normalize(self.resize(img))

    def batch(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([self(im) for im in images])


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB (Pillow raises on corrupt files)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
