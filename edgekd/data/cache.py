"""The decoded-image cache: every image of a set decoded and resized once, kept as uint8.

Held in memory while the run's cached images fit the loading budget (``Loading.cache_mb``), else in a
memory-mapped file under ``Loading.cache_dir`` (the run folder's ``cache/``), so epochs after the first
never decode a JPEG. Decoding runs in the loader's worker processes. An image that cannot be decoded is
dropped from the set, counted and logged (a folder scan only checks headers).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from edgekd.errors import DataError
from edgekd.preprocess import Preprocess

log = logging.getLogger("edgekd")


class _Decode(Dataset):
    def __init__(self, src, size: tuple[int, int]) -> None:
        self.src, self.pre = src, Preprocess(size=size)
        self.seg = src.masks is not None

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int):
        try:
            img = self.pre.resize(self.src.image(i))
        except (OSError, ValueError) as exc:  # truncated / corrupt image data
            return i, None, None, str(exc)
        mask = self.pre.resize_mask(self.src.mask(i)) if self.seg else None
        return i, img, mask, None


def _collate(items):
    return items


def decode_all(src, size: tuple[int, int], loading):
    """A copy of ``src`` (an ImageSet read from files) with images [N, H, W, 3] uint8 at ``size`` (and masks)."""
    from edgekd.data import ImageSet
    from edgekd.data.torchdata import default_workers, worker_context
    from edgekd.progress import track

    n, (h, w) = len(src), size
    seg = src.masks is not None
    mb = n * h * w * (3 + seg) / 2**20
    memory = loading.cache == "memory" or (loading.cache == "auto" and loading.used_mb + mb <= loading.cache_mb)
    if memory:
        images = np.empty((n, h, w, 3), np.uint8)
        masks = np.empty((n, h, w), np.uint8) if seg else None
        loading.used_mb += mb
    else:
        root = Path(loading.cache_dir or tempfile.mkdtemp(prefix="edgekd-cache-"))
        root.mkdir(parents=True, exist_ok=True)
        stem = root / f"images-{n}x{h}x{w}-{id(src):x}"
        images = np.lib.format.open_memmap(f"{stem}.npy", "w+", np.uint8, (n, h, w, 3))
        masks = np.lib.format.open_memmap(f"{stem}-masks.npy", "w+", np.uint8, (n, h, w)) if seg else None
    workers = loading.workers if loading.workers is not None else default_workers()
    dl = DataLoader(_Decode(src, size), batch_size=16, num_workers=workers, collate_fn=_collate,
                    multiprocessing_context=worker_context() if workers > 0 else None)
    bad: list[int] = []
    where = "memory" if memory else "a memory-mapped file"
    for batch in track(dl, len(dl), f"decode {n} images at {h}x{w} ({mb:.0f} MB, {where})"):
        for i, img, mask, err in batch:
            if err is not None:
                bad.append(i)
                log.warning("skipped unreadable image %s (%s)", src.paths[i], err)
                continue
            images[i] = img
            if seg:
                masks[i] = mask
    keep = np.setdiff1d(np.arange(n), bad) if bad else None
    if keep is not None and len(keep) == 0:
        raise DataError(f"none of the {n} images could be decoded")

    def pick(a):
        return a if keep is None or a is None else a[keep]

    return ImageSet(labels=pick(src.labels), images=pick(images),
                    paths=None if src.paths is None else [src.paths[i] for i in (keep if keep is not None
                                                                                 else range(n))],
                    masks=src.masks if keep is None or src.masks is None else [src.masks[i] for i in keep],
                    binary_masks=src.binary_masks, mask_arrays=pick(masks), loading=src.loading)
