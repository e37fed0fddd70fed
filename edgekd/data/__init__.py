"""The one data path: a spec (``builtin:shapes10`` or a folder) -> train/val/test image sets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.errors import DataError
from edgekd.preprocess import Preprocess, load_image

BUILTIN_PREFIX = "builtin:"
BUILTIN_SIZES = {"train": 6000, "val": 500, "test": 1000}


@dataclass
class Loading:
    """How loaders read a set: worker processes (None: the cores available) and the decoded-image cache
    (``auto``: in memory while the run's cached images fit ``cache_mb``, else memory-mapped files under
    ``cache_dir``; ``memory``; ``disk``; ``off``: decode every epoch)."""

    workers: int | None = None
    cache: str = "auto"
    cache_mb: int = 2048
    cache_dir: Path | None = None
    used_mb: float = 0.0  # what the in-memory cache of this run holds so far


@dataclass(eq=False)
class ImageSet:
    """Images held in memory (uint8 NHWC) or as file paths, with integer labels (classification) or mask files
    (segmentation: ``labels`` are then zeros, one per image; ``mask_arrays`` once decoded)."""

    labels: np.ndarray
    images: np.ndarray | None = None
    paths: list[Path] | None = None
    masks: list[Path] | None = None
    binary_masks: bool = False
    mask_arrays: np.ndarray | None = None
    loading: Loading | None = None
    _decoded: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        return self.images[i] if self.images is not None else load_image(self.paths[i])

    def mask(self, i: int) -> np.ndarray:
        """uint8 HxW class indices of sample i (segmentation sets only)."""
        if self.mask_arrays is not None:
            return self.mask_arrays[i]
        from edgekd.data.segfolder import load_mask

        return load_mask(self.masks[i], self.binary_masks)

    def decoded(self, size: tuple[int, int]) -> ImageSet:
        """This set with every image decoded and resized to ``size`` once (uint8; masks too), kept for the rest
        of the process. Sets already in memory are returned as they are."""
        if self.images is not None:
            return self
        if size not in self._decoded:
            from edgekd.data.cache import decode_all

            self._decoded[size] = decode_all(self, size, self.loading or Loading())
        return self._decoded[size]

    def targets(self, pre: Preprocess) -> np.ndarray:
        """Labels [N], or masks [N, H, W] at the model's input size (nearest resize)."""
        if self.masks is None:
            return self.labels
        return np.stack([pre.resize_mask(self.mask(i)) for i in range(len(self))])

    def head(self, n: int | None) -> ImageSet:
        """The first ``n`` samples, spread over classes (sets are stored class-interleaved or shuffled)."""
        if n is None or n >= len(self):
            return self
        idx = _spread(self.labels, n)
        return ImageSet(
            labels=self.labels[idx],
            images=None if self.images is None else self.images[idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            masks=None if self.masks is None else [self.masks[i] for i in idx],
            binary_masks=self.binary_masks,
            mask_arrays=None if self.mask_arrays is None else self.mask_arrays[idx],
            loading=self.loading,
        )


def _spread(labels: np.ndarray, n: int) -> np.ndarray:
    """Deterministic, class-balanced pick of n indices (round robin over classes)."""
    per_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < n:
        for lst in per_class:
            if lst and len(out) < n:
                out.append(lst.pop(0))
    return np.asarray(sorted(out))


@dataclass
class DataSplits:
    name: str
    classes: list[str]
    preprocess: Preprocess
    train: ImageSet
    val: ImageSet
    test: ImageSet
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    task: str = "classify"

    @property
    def eval_batch(self) -> int:
        """Batch size of evaluation loaders: dense segmentation maps are ~1000x a classifier's activations."""
        return 16 if self.task == "segment" else 256


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


def _builtin_split(name: str, split: str, n: int) -> ImageSet:
    from edgekd.data import shapes

    path = cache_dir() / name / f"{split}-{n}.npz"
    if path.is_file():
        with np.load(path) as z:
            return ImageSet(labels=z["labels"], images=z["images"])
    images, labels = shapes.make_split(split, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    tmp.replace(path)
    return ImageSet(labels=labels, images=images)


def load_data(spec: str, image_size: int | None = None, val_fraction: float = 0.1, seed: int = 0,
              max_train: int | None = None, max_eval: int | None = None, task: str = "classify",
              loading: Loading | None = None, min_classes: int = 2) -> DataSplits:
    """Load a dataset by spec (see :func:`_load`); ``loading`` (workers, decoded-image cache) is attached to
    every split for the loaders that read it. ``min_classes=1`` accepts a one-class folder (calibration images,
    whose labels are not used); training refuses it."""
    data = _load(spec, image_size, val_fraction, seed, max_train, max_eval, task, min_classes)
    loading = loading or Loading()
    for s in (data.train, data.val, data.test):
        s.loading = loading
    return data


def _load(spec: str, image_size: int | None, val_fraction: float, seed: int, max_train: int | None,
          max_eval: int | None, task: str, min_classes: int = 2) -> DataSplits:
    """Load a dataset by spec.

    Args:
        spec: ``builtin:shapes10`` or a folder (ImageFolder layout; for ``task="segment"`` images/ + masks/).
        image_size: model input side; default: 64 for the built-in set, else the images' own size rounded
            up to a multiple of 32 (at least 64, at most 256) so strided students fit.
        val_fraction: share of train held out for model selection.
        seed: split seed.
        max_train: keep at most this many training samples (tiny runs); max_eval: same for val/test.
        task: ``classify`` or ``segment`` (then ``image_size`` is the long side, the aspect is kept and both
            sides are multiples of 32).
    """
    if task == "segment":
        return _load_seg(spec, image_size, val_fraction, seed, max_train, max_eval)
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        if name != "shapes10":
            raise DataError(f"unknown built-in dataset {name!r}; known: shapes10")
        from edgekd.data.shapes import CLASSES

        sizes = dict(BUILTIN_SIZES)
        if max_train:
            sizes["train"] = min(sizes["train"], max_train)
        if max_eval:
            sizes["val"], sizes["test"] = min(sizes["val"], max_eval), min(sizes["test"], max_eval)
        splits = {s: _builtin_split(name, s, n) for s, n in sizes.items()}
        size = image_size or 64
        return DataSplits(name=spec, classes=list(CLASSES), preprocess=Preprocess(size=(size, size)), **splits)

    from edgekd.data.folder import scan_folder

    found = scan_folder(Path(spec), val_fraction, seed, min_classes)
    sets = {k: ImageSet(labels=np.asarray(found[k][1], np.int64), paths=list(found[k][0]))
            for k in ("train", "val", "test")}
    for k, s in sets.items():
        if len(s) == 0:
            raise DataError(_empty_split(spec, k, val_fraction))
    sets["train"] = sets["train"].head(max_train)
    sets["val"], sets["test"] = sets["val"].head(max_eval), sets["test"].head(max_eval)
    if image_size is None:
        h, w = sets["train"].image(0).shape[:2]
        image_size = int(min(256, max(64, -(-max(h, w) // 32) * 32)))
    return DataSplits(name=str(spec), classes=found["classes"], preprocess=Preprocess(size=(image_size, image_size)),
                      skipped=found["skipped"], **sets)


def _empty_split(spec: str, split: str, val_fraction: float) -> str:
    """Why a split came out empty, with the option that fixes it (``--val-fraction``, recipe ``val_fraction``)."""
    if split == "train":
        return f"{spec}: the train split is empty; add images or lower --val-fraction (now {val_fraction})"
    return (f"{spec}: the {split} split is empty: {val_fraction:g} of each class's images rounds to none; add "
            f"images or raise --val-fraction (recipe key val_fraction; now {val_fraction:g}, at most 0.49)")


def _load_seg(spec: str, image_size: int | None, val_fraction: float, seed: int, max_train: int | None,
              max_eval: int | None) -> DataSplits:
    from edgekd.data.segfolder import scan_seg_folder, seg_size

    if spec.startswith(BUILTIN_PREFIX):
        raise DataError(f"{spec} is a classification set; --task segment needs a folder with images/ and masks/")
    found = scan_seg_folder(Path(spec), val_fraction, seed)
    sets = {}
    for k in ("train", "val", "test"):
        pairs = found[k][: (max_train if k == "train" else max_eval) or None]
        if not pairs:
            raise DataError(_empty_split(spec, k, val_fraction))
        sets[k] = ImageSet(labels=np.zeros(len(pairs), np.int64), paths=[p for p, _ in pairs],
                           masks=[m for _, m in pairs], binary_masks=found["binary"])
    size = seg_size(sets["train"].image(0), image_size)
    return DataSplits(name=str(spec), classes=found["classes"], preprocess=Preprocess(size=size), task="segment",
                      **sets)


def base_preprocess(data: DataSplits, sides: list[int]) -> Preprocess:
    """The size the training loader reads images at when models see different sizes: the largest side any
    model needs, but never above the images' own size (a 32 px teacher sees the original 32 px image, a 64 px
    student an upsampled view made on the batch). Normalisation stays the student's."""
    from dataclasses import replace

    if data.task == "segment":  # dense models are fully convolutional: every model sees the student's view
        return data.preprocess
    raw = max(data.train.image(0).shape[:2])
    side = min(max(sides), raw) if sides else data.preprocess.size[0]
    return replace(data.preprocess, size=(side, side))
