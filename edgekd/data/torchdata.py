"""torch Dataset/DataLoader over an ImageSet (the only place data meets torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.data import ImageSet
from edgekd.preprocess import Preprocess


class TorchImageSet(Dataset):
    """Yields (float32 CHW tensor, label, index, view); for segmentation sets the label is the mask (int64 HxW at
    the input size), augmented jointly with the image (the same flip and crop).

    ``index`` and ``view`` let the trainer look up cached teacher outputs. Augmentation is a random horizontal
    flip + random crop after reflect-padding by 1/8 of the side; with ``views=K`` it is drawn from K fixed
    (flip, crop) views instead, so teacher outputs can be computed once per view. ``fixed_view`` renders one
    view for every image (the caching pass).
    """

    def __init__(self, src: ImageSet, pre: Preprocess, augment: bool = False, seed: int = 0, views: int = 0,
                 fixed_view: int | None = None) -> None:
        self.src, self.pre, self.augment, self.views, self.fixed_view = src, pre, augment, views, fixed_view
        self.rng = np.random.default_rng(seed)
        n = max(views, (fixed_view or 0) + 1)
        self.offsets = view_offsets(pre.size[0], n) if views or fixed_view is not None else []

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int):
        img = self.pre.resize(self.src.image(i))
        mask = self.pre.resize_mask(self.src.mask(i)) if self.src.masks is not None else None
        view, how = 0, None
        if self.fixed_view is not None or (self.augment and self.views):
            view = self.fixed_view if self.fixed_view is not None else int(self.rng.integers(self.views))
            how = (view % 2 == 1, *self.offsets[view // 2])
        elif self.augment:
            p = _pad(img)
            dy, dx = self.rng.integers(0, 2 * p + 1, 2)
            how = (bool(self.rng.random() < 0.5), int(dy), int(dx))
        if how is not None:
            img = _flip_crop(img, *how)
            mask = None if mask is None else _flip_crop(mask, *how)
        x = torch.from_numpy(self.pre.normalize(img))
        if mask is not None:
            return x, torch.from_numpy(mask.astype(np.int64)), i, view
        return x, int(self.src.labels[i]), i, view


def _pad(img: np.ndarray) -> int:
    return max(1, img.shape[0] // 8)


def view_offsets(side: int, views: int) -> list[tuple[int, int]]:
    """The crop offsets of a K-view bank: the centre first, then the rest of the (2p+1)^2 grid in a fixed
    shuffled order (the same list on every machine)."""
    p = max(1, side // 8)
    grid = [(y, x) for y in range(2 * p + 1) for x in range(2 * p + 1) if (y, x) != (p, p)]
    order = np.random.default_rng(1234).permutation(len(grid))
    return [(p, p)] + [grid[i] for i in order][: max(0, (views + 1) // 2 - 1)]


def _flip_crop(img: np.ndarray, flip: bool, dy: int, dx: int) -> np.ndarray:
    if flip:
        img = img[:, ::-1]
    h, w = img.shape[:2]
    p = _pad(img)
    padded = np.pad(img, ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2), mode="reflect")
    return padded[dy:dy + h, dx:dx + w]


def loader(src: ImageSet, pre: Preprocess, batch_size: int, shuffle: bool, augment: bool = False,
           seed: int = 0, views: int = 0, fixed_view: int | None = None) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TorchImageSet(src, pre, augment, seed, views, fixed_view), batch_size=batch_size,
                      shuffle=shuffle, generator=g, num_workers=0)
