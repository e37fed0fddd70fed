"""Training augmentation from torchvision's transforms v2: named presets or a recipe's own list.

Presets (``augment:`` in a recipe, ``--augment`` on the command line):

- ``none``: the image resized to the input size, nothing else.
- ``light``: random crop after reflect-padding by 1/8 of the side + horizontal flip (the CIFAR recipe; what
  ``augment: true`` always meant).
- ``standard`` (the default for folder data): random-resized crop (scale 0.35-1), horizontal flip, colour
  jitter 0.3, random erasing p=0.25 (classification).
- ``strong``: random-resized crop (scale 0.08-1), flip, TrivialAugmentWide, random erasing p=0.25
  (classification); segmentation gets crop 0.25-1, flip and stronger colour jitter.

A list names ``torchvision.transforms.v2`` classes with their arguments, e.g.
``[{name: RandomResizedCrop, scale: [0.5, 1.0]}, {name: RandomHorizontalFlip}, {name: ColorJitter, brightness:
0.4}]``; ``size`` is filled in with the input size where a transform takes one. Besides v2's classes, edgekd's
``Corrupt`` adds ImageNet-C corruptions (``{name: Corrupt, names: [gaussian_noise, fog], severity: [1, 3], p: 0.5}``,
see :mod:`edgekd.data.corrupt`).

Segmentation: image and mask are one sample (``tv_tensors.Image`` + ``tv_tensors.Mask``), so geometric
transforms move both together (the mask resampled nearest) and photometric ones touch the image only.

Randomness: every sample draws from torch's RNG seeded by (run seed, epoch or view, sample index), so a
run's augmentation is the same whatever the number of loader workers, and a resumed run repeats it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from edgekd.errors import ConfigError

PRESETS = ("none", "light", "standard", "strong")
SIZED = {"RandomResizedCrop", "RandomCrop", "Resize", "CenterCrop", "RandomIoUCrop"}  # take the input size


def preset_name(spec) -> str | None:
    """``True``/``False`` and preset names as a preset name; None for a list."""
    if spec is True:
        return "light"
    if spec is False or spec is None:
        return "none"
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(f"augment {spec!r}: use one of {', '.join(PRESETS)} or a list of transforms")
        return spec
    return None


def is_on(spec) -> bool:
    return preset_name(spec) != "none"


def build(spec, size: tuple[int, int], task: str = "classify",
          crop_scale: Sequence[float] | None = None) -> Callable | None:
    """The v2 transform of ``spec`` at ``size`` (H, W): it takes and returns uint8 tensors (an Image, or an
    (Image, Mask) pair); None for ``none``."""
    from torchvision.transforms import v2

    name = preset_name(spec)
    if name == "none":
        return None
    seg = task == "segment"
    if name is None:
        return v2.Compose([_from_dict(d, size) for d in spec])
    h, w = size
    if name == "light":
        ops = [v2.RandomCrop(size, padding=[max(1, w // 8), max(1, h // 8)], padding_mode="reflect"),
               v2.RandomHorizontalFlip()]
    elif name == "standard":
        scale = tuple(crop_scale or ((0.5, 1.0) if seg else (0.35, 1.0)))
        ops = [v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip(),
               v2.ColorJitter(0.3, 0.3, 0.3)]
        if not seg:
            ops.append(v2.RandomErasing(p=0.25, value=0))
    else:  # strong
        scale = tuple(crop_scale or ((0.25, 1.0) if seg else (0.08, 1.0)))
        ops = [v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()]
        ops += [v2.ColorJitter(0.4, 0.4, 0.4, 0.05)] if seg else [v2.TrivialAugmentWide(),
                                                                  v2.RandomErasing(p=0.25, value=0)]
    return v2.Compose(ops)


def _from_dict(d, size: tuple[int, int]):
    from torchvision.transforms import v2

    if not isinstance(d, dict) or "name" not in d:
        raise ConfigError(f"augment list item {d!r}: expected a mapping with name: <torchvision v2 transform>")
    kwargs = {k: v for k, v in d.items() if k != "name"}
    if d["name"] == "Corrupt":  # edgekd's own: ImageNet-C corruptions (edgekd.data.corrupt)
        from edgekd.data.corrupt import Corrupt

        try:
            return Corrupt(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"augment: Corrupt({kwargs}): {exc}; it takes names, severity and p") from exc
    cls = getattr(v2, str(d["name"]), None)
    if not (isinstance(cls, type) and issubclass(cls, v2.Transform)):
        raise ConfigError(f"augment: {d['name']!r} is not a torchvision.transforms.v2 transform")
    if d["name"] in SIZED and "size" not in kwargs:
        kwargs["size"] = list(size)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"augment: {d['name']}({kwargs}): {exc}") from exc


def check(spec, size: tuple[int, int], task: str, crop_scale=None) -> None:
    """Build the transform once and run it on a blank image, so a bad recipe fails before any training."""
    tf = build(spec, size, task, crop_scale)
    if tf is not None:
        try:
            apply(tf, np.zeros((*size, 3), np.uint8), np.zeros(size, np.uint8) if task == "segment" else None, 0)
        except Exception as exc:  # noqa: BLE001 - any failure of a user's transform list is a config error
            raise ConfigError(f"augment: the transforms fail on a {size[0]}x{size[1]} image ({exc})") from exc


def sample_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, epoch/view, index): well mixed, the same on every machine."""
    return int(np.random.SeedSequence([p % (1 << 32) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def apply(tf: Callable, img: np.ndarray, mask: np.ndarray | None, seed: int) -> tuple[torch.Tensor,
                                                                                        torch.Tensor | None]:
    """``tf`` on one uint8 HxWx3 image (and HxW mask) with torch's RNG seeded by ``seed`` (the caller's RNG
    state is left as it was). Returns a uint8 3xHxW tensor and the int64 mask."""
    from torchvision import tv_tensors

    x = tv_tensors.Image(torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1))  # writable
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if mask is None:
            return tf(x), None
        x, m = tf(x, tv_tensors.Mask(torch.from_numpy(np.array(mask, copy=True))))
    return x, m.as_subclass(torch.Tensor).long()


def batch_mixer(mixup: float, cutmix: float, num_classes: int) -> Callable | None:
    """MixUp / CutMix on a batch (torchvision v2): (x, labels) -> (mixed x, soft labels [B, C]). With both,
    each batch picks one of them at random. None when both alphas are 0."""
    from torchvision.transforms import v2

    ops = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + \
          ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
