"""torch Dataset/DataLoader over an ImageSet (the only place data meets torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.data import ImageSet
from edgekd.preprocess import Preprocess


class TorchImageSet(Dataset):
    """Yields (float32 CHW tensor, label, index); index lets the trainer look up cached teacher outputs."""

    def __init__(self, src: ImageSet, pre: Preprocess, augment: bool = False, seed: int = 0) -> None:
        self.src, self.pre, self.augment = src, pre, augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int):
        img = self.pre.resize(self.src.image(i))
        if self.augment:
            img = _flip_crop(img, self.rng)
        return torch.from_numpy(self.pre.normalize(img)), int(self.src.labels[i]), i


def _flip_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip + random crop after reflect-padding by 1/8 of the side."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    h, w = img.shape[:2]
    p = max(1, h // 8)
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")
    y, x = rng.integers(0, 2 * p + 1, 2)
    return padded[y:y + h, x:x + w]


def loader(src: ImageSet, pre: Preprocess, batch_size: int, shuffle: bool, augment: bool = False,
           seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TorchImageSet(src, pre, augment, seed), batch_size=batch_size, shuffle=shuffle,
                      generator=g, num_workers=0)
