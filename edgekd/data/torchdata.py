"""torch Dataset/DataLoader over an ImageSet (the only place data meets torch).

The data path of every training and evaluation loop:

- images are decoded and resized once (``ImageSet.decoded``: uint8 in memory within a budget, else a
  memory-mapped file in the run folder), so epochs after the first never decode a JPEG;
- augmentation is torchvision transforms v2 (:mod:`edgekd.data.augment`), seeded per sample from (seed,
  epoch, index): a run is reproducible whatever the number of workers;
- training loaders use worker processes (default: the cores this process may use), kept alive across epochs,
  with pinned memory on CUDA; the sampler (:class:`EpochSampler`) draws each epoch's order from (seed, epoch),
  optionally class-balanced.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgekd.data import ImageSet
from edgekd.data import augment as aug
from edgekd.preprocess import Preprocess


class TorchImageSet(Dataset):
    """Yields (float32 CHW tensor, label, index, view); for segmentation sets the label is the mask (int64 HxW at
    the input size), augmented jointly with the image.

    Keys are sample indices or ``(epoch, index)`` pairs from :class:`EpochSampler`. ``augment`` is a preset
    name, ``True`` (= ``light``) or a list of v2 transforms. With ``views=K`` each sample is drawn from K fixed
    views (view 0: the plain image; view v: the augmentation seeded by (seed, v, index)), so teacher outputs
    can be computed once per view; ``fixed_view`` renders one view for every image (the caching pass).
    """

    def __init__(self, src: ImageSet, pre: Preprocess, augment=False, seed: int = 0, views: int = 0,
                 fixed_view: int | None = None, task: str | None = None, crop_scale=None) -> None:
        self.src, self.pre, self.seed, self.views, self.fixed_view = src, pre, seed, views, fixed_view
        task = task or ("segment" if src.masks is not None or src.mask_arrays is not None else "classify")
        if fixed_view is not None and not aug.is_on(augment):
            augment = "light"  # the view bank's historical augmentation
        self.tf = aug.build(augment, tuple(pre.size), task, crop_scale)
        self.mean = torch.tensor(pre.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(pre.std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        img = self.pre.resize(self.src.image(i))
        has_mask = self.src.masks is not None or self.src.mask_arrays is not None
        mask = self.pre.resize_mask(self.src.mask(i)) if has_mask else None
        view, seed = 0, None
        if self.tf is not None:
            if self.fixed_view is not None:
                view = self.fixed_view
            elif self.views:
                view = aug.sample_seed(self.seed, epoch, i, 7) % self.views
            if self.fixed_view is not None or self.views:
                seed = None if view == 0 else aug.sample_seed(self.seed, 1 << 20, view, i)
            else:
                seed = aug.sample_seed(self.seed, epoch, i)
        if seed is None:
            x = torch.from_numpy(self.pre.normalize(img))
        else:
            t, m = aug.apply(self.tf, img, mask, seed)
            x = (t.float() / 255.0 - self.mean) / self.std
            mask = m
        if mask is not None:
            m = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(mask.astype(np.int64))
            return x, m.long(), i, view
        return x, int(self.src.labels[i]), i, view


class EpochSampler(Sampler):
    """Sample keys ``(epoch, index)``: the order of epoch e drawn from (seed, e), so a resumed run repeats it.

    ``balanced``: draws n indices with replacement, each class equally likely (a class-balanced sampler for
    imbalanced sets); otherwise a permutation (``shuffle``) or the set's order.
    """

    def __init__(self, labels: np.ndarray, shuffle: bool = True, seed: int = 0, balanced: bool = False) -> None:
        self.n, self.shuffle, self.seed, self.epoch = len(labels), shuffle, seed, 0
        self.weights = None
        if balanced:
            lab = np.asarray(labels)
            counts = np.bincount(lab)
            self.weights = torch.from_numpy(1.0 / counts[lab]).double()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = range(self.n)
        return iter([(self.epoch, i) for i in order])


def default_workers() -> int:
    """Loader worker processes: ``EDGEKD_NUM_WORKERS`` when set, else the cores this process may use (at most
    8)."""
    if os.environ.get("EDGEKD_NUM_WORKERS", "").isdigit():
        return int(os.environ["EDGEKD_NUM_WORKERS"])
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores))


def worker_context():
    """Start method of loader workers: ``forkserver`` where there is one. Forking the training process itself
    copies the thread pools of runtimes loaded in it (OpenVINO, onnxruntime, NNCF: pre-flight loads them), which
    is unsafe after threads exist; workers forked from a clean server process hold none (a precaution)."""
    import multiprocessing as mp

    return mp.get_context("forkserver") if "forkserver" in mp.get_all_start_methods() else None


def _worker_init(worker_id: int) -> None:
    # numpy and random in each worker from torch's per-worker seed (the transforms themselves are seeded per
    # sample, so this only keeps any other randomness apart between workers)
    import random

    s = torch.initial_seed() % (1 << 32)
    np.random.seed(s)
    random.seed(s)


def loader(src: ImageSet, pre: Preprocess, batch_size: int, shuffle: bool, augment=False, seed: int = 0,
           views: int = 0, fixed_view: int | None = None, workers: int | None = None, balanced: bool = False,
           crop_scale=None, task: str | None = None) -> DataLoader:
    """A DataLoader over ``src`` at ``pre``'s size.

    Images are read from the decoded cache when the set's loading options allow it (``src.loading``).
    ``workers``: worker processes (default: the set's loading option, else :func:`default_workers` for
    training loaders (``shuffle``) and none for evaluation loaders over cached images).
    """
    load = src.loading
    if load is not None and load.cache != "off":
        src = src.decoded(tuple(pre.size))
    if workers is None:
        if shuffle or augment or src.images is None:
            workers = load.workers if load is not None and load.workers is not None else default_workers()
        else:
            workers = 0
    ds = TorchImageSet(src, pre, augment, seed, views, fixed_view, task, crop_scale)
    sampler = EpochSampler(src.labels, shuffle, seed, balanced) if shuffle or balanced else None
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                      worker_init_fn=_worker_init if workers > 0 else None,
                      multiprocessing_context=worker_context() if workers > 0 else None)
