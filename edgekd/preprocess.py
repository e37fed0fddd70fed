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
    """Read an image file as uint8 HxWx3 RGB.

    16-bit and 32-bit grayscale (PNG, TIFF) are scaled by their bit depth: Pillow's ``convert("RGB")`` clips
    them, which turns a 16-bit photo near-white. Raises OSError on corrupt files and ValueError on images too
    large to decode (Pillow's decompression-bomb limit).
    """
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except Image.DecompressionBombError as exc:  # not an OSError: callers that skip bad files would crash
        raise ValueError(f"{str(exc).rstrip('.')}; downscale it") from exc


def to_rgb(im: Image.Image) -> np.ndarray:
    """A Pillow image as uint8 HxWx3 RGB, high-bit-depth grayscale scaled to 8 bits."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        top = 65535
        if im.mode == "I":  # 32-bit integers: what the decoder widened (8 or 16 bits), rarely full-range data
            peak = a.max(initial=0)
            top = 255 if peak <= 255 else 65535 if peak <= 65535 else 2**31 - 1
        g = np.clip(np.round(a * (255 / top)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "F":  # float TIFF: [0, 1] or [0, 255]
        a = np.asarray(im, np.float64)
        g = np.clip(np.round(a * 255 if a.max(initial=0) <= 1.0 else a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))
