"""ImageFolder trees: ``DIR/<class>/*.jpg`` or ``DIR/train`` + ``DIR/val|test``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.errors import DataError

log = logging.getLogger("edgekd")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# folders that archivers, file managers and operating systems add; never classes
SYSTEM_DIRS = {"__MACOSX", "__pycache__", "$RECYCLE.BIN", "System Volume Information", "@eaDir", "lost+found"}


def is_hidden(p: Path) -> bool:
    """Hidden or system entries (``.DS_Store``, ``._x.jpg`` AppleDouble files, ``__MACOSX/``...): skipped."""
    return p.name.startswith(".") or p.name in SYSTEM_DIRS


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder, sorted, hidden ones left out."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not is_hidden(p))


def _scan(root: Path, classes: list[str] | None = None,
          min_classes: int = 2) -> tuple[list[Path], list[int], list[str], int]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not is_hidden(d))
    if not dirs:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/*.jpg)")
    names = [d.name for d in dirs]
    if classes is not None and names != classes:
        raise DataError(f"{root}: class folders {names} differ from the training classes {classes}")
    paths, labels, bad = [], [], 0
    for idx, d in enumerate(dirs):
        files = image_files(d)
        if not files:
            raise DataError(f"{d}: class folder has no images ({', '.join(sorted(IMAGE_EXTS))})")
        ok = 0
        for p in files:
            try:
                with Image.open(p) as im:
                    im.verify()
            except Exception:  # noqa: BLE001 - any decode failure means: skip and count
                bad += 1
                continue
            paths.append(p)
            labels.append(idx)
            ok += 1
        if ok == 0:
            raise DataError(f"{d}: none of its {len(files)} images could be read")
    if classes is None and len(names) < min_classes:
        raise DataError(f"{root}: only one class folder ({names[0]}); classification needs at least 2 (a "
                        f"one-class model scores 100% by answering the same every time)")
    return paths, labels, names, bad


def scan_folder(root: Path, val_fraction: float, seed: int, min_classes: int = 2) -> dict:
    """Find train/val/test file lists; splits a flat tree deterministically (stratified). Fewer than
    ``min_classes`` class folders is an error (1 for calibration images, where labels are not used)."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder")
    if not any(root.iterdir()):
        raise DataError(f"data folder {root} is empty")
    rng = np.random.default_rng(seed)
    out: dict = {"skipped": 0}
    if (root / "train").is_dir():
        paths, labels, classes, bad = _scan(root / "train", min_classes=min_classes)
        out["skipped"] += bad
        held = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        if held is not None:
            tr, va = _split(labels, val_fraction, rng)
            out["train"] = ([paths[i] for i in tr], [labels[i] for i in tr])
            out["val"] = ([paths[i] for i in va], [labels[i] for i in va])
            hp, hl, _, hbad = _scan(held, classes)
            out["skipped"] += hbad
            out["test"] = (hp, hl)
        else:  # a test split of its own: scoring on the split that picked the best epoch would flatter the model
            log.warning("%s has train/ but no val/ or test/: holding out %g of train/ for validation and %g for "
                        "test", root, val_fraction, val_fraction)
            out.update(_three_way(paths, labels, val_fraction, rng))
    else:
        paths, labels, classes, bad = _scan(root, min_classes=min_classes)
        out["skipped"] += bad
        out.update(_three_way(paths, labels, val_fraction, rng))
    if out["skipped"]:
        log.warning("skipped %d unreadable image(s) under %s", out["skipped"], root)
    out["classes"] = classes
    return out


def _three_way(paths: list[Path], labels: list[int], val_fraction: float, rng: np.random.Generator) -> dict:
    """Stratified train / val / test lists, ``val_fraction`` of each class for val and for test."""
    rest, te = _split(labels, val_fraction, rng)
    tr, va = _split([labels[i] for i in rest], val_fraction / (1 - val_fraction), rng)
    rest_p, rest_l = [paths[i] for i in rest], [labels[i] for i in rest]
    return {"train": ([rest_p[i] for i in tr], [rest_l[i] for i in tr]),
            "val": ([rest_p[i] for i in va], [rest_l[i] for i in va]),
            "test": ([paths[i] for i in te], [labels[i] for i in te])}


def _split(labels: list[int], frac: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Stratified split of indices into (keep, held) with ~frac of each class held out."""
    labels_a = np.asarray(labels)
    keep, held = [], []
    for c in np.unique(labels_a):
        idx = np.flatnonzero(labels_a == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * frac)) if len(idx) > 1 else 0
        held.extend(idx[:k].tolist())
        keep.extend(idx[k:].tolist())
    return sorted(keep), sorted(held)
