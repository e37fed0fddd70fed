"""Segmentation folders: ``DIR/images/*.jpg`` + ``DIR/masks/*.png`` with the same stems (or ``DIR/train`` and
``DIR/val|test``, each holding ``images/`` + ``masks/``).

Masks are single-channel PNGs of class indices (0..K-1, 255 = ignore), or 0/255 for binary data (255 becomes
class 1). ``DIR/classes.txt`` (one name per line) names the classes; without it binary data is
``background, foreground`` and index masks are ``class0..``. Every image must have a mask of the same size.
A set of mostly 0/255 masks without ``classes.txt`` is binary: any other value in it is refused (file and value
named) rather than read as class indices. ``DIR/train`` alone is split into train, val and test like ``DIR``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.data.folder import IMAGE_EXTS, image_files, is_hidden
from edgekd.errors import DataError

log = logging.getLogger("edgekd")
MASK_EXTS = {".png", ".bmp", ".tif", ".tiff"}
LOSSY = {".jpg", ".jpeg", ".webp"}
IGNORE = 255
VALUE_SCAN = 200  # masks read up front to tell binary 0/255 from class-index data


def load_mask(path: Path, binary: bool) -> np.ndarray:
    """A mask file as uint8 HxW class indices (binary: 0 / 255 -> 0 / 1; 255 stays ignore otherwise)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "1", "I", "I;16"):
                raise DataError(f"{path}: mask mode {im.mode}; masks must be single-channel class indices "
                                f"(grayscale or palette PNG), not colour images")
            m = np.asarray(im)
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable mask ({exc})") from exc
    if m.dtype == bool:
        return m.astype(np.uint8)
    if m.max(initial=0) > 255:
        raise DataError(f"{path}: mask values up to {m.max()}; class indices must be 0..254 (255 = ignore)")
    m = m.astype(np.uint8)
    if not binary:
        return m
    odd = m[(m != 0) & (m != 255)]
    if odd.size:  # in a 0/255 set, anything else is a damaged mask, not a class
        raise DataError(f"{path}: mask value {', '.join(map(str, np.unique(odd)[:5].tolist()))} in a set of 0/255 "
                        f"binary masks; fix the mask (or add classes.txt when values are class indices)")
    return (m == 255).astype(np.uint8)


def _pairs(root: Path) -> tuple[list[Path], list[Path]]:
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"{root}: no {d.name}/ folder (a segmentation folder holds images/ and masks/ with "
                            f"the same file stems)")
    images = image_files(img_dir)
    if not images:
        raise DataError(f"{img_dir}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    lossy = [p for p in mask_dir.iterdir() if p.suffix.lower() in LOSSY and not is_hidden(p)]
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in MASK_EXTS and not is_hidden(p)}
    if lossy and not masks:
        raise DataError(f"{mask_dir}: masks are {lossy[0].suffix} (lossy compression changes class values); "
                        f"save masks as PNG")
    missing = [p for p in images if p.stem not in masks]
    if missing:
        raise DataError(f"{len(missing)} image(s) have no mask, e.g. {missing[0]} (expected "
                        f"{mask_dir / (missing[0].stem + '.png')})")
    orphans = set(masks) - {p.stem for p in images}
    if orphans:
        log.warning("%d mask(s) under %s have no image (ignored), e.g. %s", len(orphans), mask_dir, sorted(orphans)[0])
    mask_paths = [masks[p.stem] for p in images]
    for ip, mp in zip(images, mask_paths, strict=True):
        try:
            with Image.open(ip) as a, Image.open(mp) as b:
                if a.size != b.size:
                    raise DataError(f"{mp} is {b.size[0]}x{b.size[1]} but its image {ip.name} is "
                                    f"{a.size[0]}x{a.size[1]}; a mask must have its image's size")
        except (OSError, Image.DecompressionBombError) as exc:
            raise DataError(f"{ip} or its mask is not a readable image ({exc})") from exc
    return images, mask_paths


def _classes(root: Path, masks: list[Path]) -> tuple[list[str], bool]:
    found = [(p, set(np.unique(load_mask(p, False)).tolist())) for p in masks[:VALUE_SCAN]]
    values: set[int] = set().union(*(v for _, v in found))
    binary = values <= {0, 255}
    names_file = root / "classes.txt"
    names = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()] if names_file.is_file() else None
    pure = sum(v <= {0, 255} for _, v in found)
    if not binary and names is None and 255 in values and 2 * pure >= len(found):
        # mostly 0/255 masks: a stray value (a paint tool's anti-aliasing, one bad pixel) would otherwise make
        # the set index masks with up to 255 classes, and the run would train for classes that do not exist
        path, odd = next((p, sorted(v - {0, 255})) for p, v in found if not v <= {0, 255})
        raise DataError(f"{path}: mask value {', '.join(map(str, odd[:5]))} in a set of 0/255 binary masks ({pure} "
                        f"of {len(found)} masks hold only 0 and 255); fix the mask, or add {names_file} naming the "
                        f"classes when values are class indices (255 = ignore)")
    if binary:
        classes = names or ["background", "foreground"]
    else:
        n = max(values - {IGNORE}, default=0) + 1
        classes = names or [f"class{i}" for i in range(max(2, n))]
        if n > len(classes):
            raise DataError(f"{root}: masks hold class index {n - 1} but classes.txt names {len(classes)} classes")
    if len(classes) < 2:
        raise DataError(f"{root}: segmentation needs at least 2 classes (background and one more)")
    return classes, binary


def scan_seg_folder(root: Path, val_fraction: float, seed: int) -> dict:
    """Image/mask path lists for train/val/test, class names and whether masks are binary 0/255."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder")
    rng = np.random.default_rng(seed)
    out: dict = {}
    held = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and held is not None:
        imgs, masks = _pairs(root / "train")
        order = rng.permutation(len(imgs))
        k = int(round(len(imgs) * val_fraction))
        out["val"] = [(imgs[i], masks[i]) for i in sorted(order[:k])]
        out["train"] = [(imgs[i], masks[i]) for i in sorted(order[k:])]
        out["test"] = list(zip(*_pairs(held), strict=True))
        classes, binary = _classes(root, masks)
    else:  # DIR/ or DIR/train/ alone: test gets a split of its own, never the one that picked the best epoch
        if (root / "train").is_dir():
            log.warning("%s has train/ but no val/ or test/: holding out %g of train/ for validation and %g for "
                        "test", root, val_fraction, val_fraction)
        imgs, masks = _pairs(root / "train" if (root / "train").is_dir() else root)
        order = rng.permutation(len(imgs))
        k = int(round(len(imgs) * val_fraction))
        out["test"] = [(imgs[i], masks[i]) for i in sorted(order[:k])]
        out["val"] = [(imgs[i], masks[i]) for i in sorted(order[k:2 * k])]
        out["train"] = [(imgs[i], masks[i]) for i in sorted(order[2 * k:])]
        classes, binary = _classes(root, masks)
    out["classes"], out["binary"] = classes, binary
    return out


def seg_size(first: np.ndarray, image_size: int | None, stride: int = 32) -> tuple[int, int]:
    """Model input (H, W): the images' aspect with the long side ``image_size`` (default: the image's own long
    side, at most 512), both sides rounded to a multiple of ``stride``."""
    h, w = first.shape[:2]
    side = image_size or min(512, max(h, w))
    scale = side / max(h, w)

    def snap(v: float) -> int:
        return max(stride, int(round(v / stride)) * stride)

    return snap(h * scale), snap(w * scale)
