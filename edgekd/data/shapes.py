"""shapes10: the built-in dataset, drawn procedurally, offline and deterministic.

Ten bright shape classes on dark gradients with clutter lines, occluders, blur and noise, upright with a
little jitter and squash. 15 % of the images hold a tiny, heavily blurred shape where pentagon, hexagon,
circle and star run together: a good teacher lands well below 100 %, and its soft targets on those
ambiguous images are what a student can learn from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = (
    "circle", "square", "triangle", "pentagon", "hexagon", "star", "cross", "ring", "crescent", "arrow",
)
# each class is drawn upright (small jitter only): shapes differ by outline, not by pose
CANONICAL_ROT = {"circle": 0.0, "square": math.pi / 4, "triangle": -math.pi / 2, "pentagon": -math.pi / 2,
                 "hexagon": 0.0, "star": -math.pi / 2, "cross": 0.0, "ring": 0.0, "crescent": 0.0, "arrow": 0.0}
SPLIT_SEEDS = {"train": 1_000_003, "val": 2_000_003, "test": 3_000_017}


def _polygon(n: int, r: float, rot: float, inner: float | None = None) -> list[tuple[float, float]]:
    pts = []
    k = 2 * n if inner is not None else n
    for i in range(k):
        rr = r if (inner is None or i % 2 == 0) else r * inner
        a = rot + 2 * math.pi * i / k
        pts.append((rr * math.cos(a), rr * math.sin(a)))
    return pts


def _shape_points(cls: str, r: float, rot: float) -> list[tuple[float, float]] | None:
    """Outline of a polygonal class centred on 0, or None for the round classes drawn with ellipses."""
    if cls == "square":
        return _polygon(4, r, rot)
    if cls == "triangle":
        return _polygon(3, r, rot)
    if cls == "pentagon":
        return _polygon(5, r, rot)
    if cls == "hexagon":
        return _polygon(6, r, rot)
    if cls == "star":
        return _polygon(5, r, rot, inner=0.45)
    if cls in ("cross", "arrow"):
        w = r * 0.36
        if cls == "cross":
            base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w),
                    (-r, -w), (-w, -w)]
        else:
            base = [(-r, -w), (0.1 * r, -w), (0.1 * r, -2.2 * w), (r, 0), (0.1 * r, 2.2 * w), (0.1 * r, w),
                    (-r, w)]
        c, s = math.cos(rot), math.sin(rot)
        return [(x * c - y * s, x * s + y * c) for x, y in base]
    return None


@dataclass(frozen=True)
class Difficulty:
    """Nuisances of the drawing; the defaults define shapes10."""

    noise: float = 10.0  # max std of pixel noise
    blur: float = 1.0  # max Gaussian blur radius (applied to half the images)
    lines: int = 1  # max clutter lines
    occluders: int = 1  # max occluding rectangles
    radius: tuple[float, float] = (0.14, 0.42)  # shape radius / image side
    rotation: float = 0.3  # max jitter around the upright pose, radians (pi: any pose)
    hard_fraction: float = 0.15  # share of tiny, heavily blurred shapes that even a good model confuses
    hard_radius: tuple[float, float] = (0.06, 0.11)
    hard_blur: tuple[float, float] = (1.0, 1.8)


DEFAULT = Difficulty()


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark two-colour gradient: the bright shape always stands out in luminance."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0, 90, 3), rng.uniform(0, 90, 3)
    ang = rng.uniform(0, 2 * math.pi)
    t = (np.cos(ang) * xx + np.sin(ang) * yy)[..., None]
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    return c0 * (1 - t) + c1 * t


def _bright(rng: np.random.Generator) -> tuple[int, int, int]:
    c = rng.uniform(60, 255, 3)
    c[rng.integers(0, 3)] = rng.uniform(200, 255)
    return tuple(int(v) for v in c)


def draw_sample(label: int, rng: np.random.Generator, size: int = 64, d: Difficulty = DEFAULT) -> np.ndarray:
    """Draw one image of class ``label`` as uint8 HxWx3 (RGB)."""
    ss = 2  # supersampling for anti-aliased edges
    big = size * ss
    bg = np.clip(_background(rng, big), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(bg)
    draw = ImageDraw.Draw(canvas)
    colour = _bright(rng)
    for _ in range(rng.integers(0, d.lines + 1)):  # clutter under the shape
        draw.line(list(rng.uniform(0, big, 4)), fill=_bright(rng), width=int(rng.integers(1, 3)))
    cls = CLASSES[label]
    hard = rng.random() < d.hard_fraction
    r = rng.uniform(*(d.hard_radius if hard else d.radius)) * big
    cx, cy = rng.uniform(r, big - r, 2)
    rot = CANONICAL_ROT[cls] + rng.uniform(-d.rotation, d.rotation)
    sx, sy = rng.uniform(0.85, 1.15, 2)
    pts = _shape_points(cls, r, rot)
    box = [cx - r * sx, cy - r * sy, cx + r * sx, cy + r * sy]
    if pts is not None:
        draw.polygon([(cx + x * sx, cy + y * sy) for x, y in pts], fill=colour)
    elif cls == "circle":
        draw.ellipse(box, fill=colour)
    elif cls == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r * rng.uniform(0.25, 0.45))))
    else:  # crescent: a disc with a background-coloured bite
        draw.ellipse(box, fill=colour)
        off = r * rng.uniform(0.45, 0.75)
        bx, by = cx + off * math.cos(rot), cy + off * math.sin(rot)
        bite = tuple(int(v) for v in bg[int(np.clip(by, 0, big - 1)), int(np.clip(bx, 0, big - 1))])
        draw.ellipse([bx - r, by - r, bx + r, by + r], fill=bite)
    for _ in range(rng.integers(0, d.occluders + 1)):  # occluders over the shape
        w, h = rng.uniform(0.05, 0.2, 2) * big
        x0, y0 = rng.uniform(0, big - w), rng.uniform(0, big - h)
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.uniform(0, 90, 3)))
    img = canvas.resize((size, size), Image.BOX)
    if hard:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*d.hard_blur)))
    elif rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, d.blur)))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0, rng.uniform(0, d.noise), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def make_split(split: str, n: int, size: int = 64, d: Difficulty = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` samples of a split: (uint8 N x H x W x 3, int64 labels). Same n, same images."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    for i in range(n):
        rng = np.random.default_rng([SPLIT_SEEDS[split], i])
        images[i] = draw_sample(int(labels[i]), rng, size, d)
    return images, labels
