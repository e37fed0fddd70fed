"""ImageNet-C corruptions, the primitives: names, severities, and one image corrupted deterministically.

A leaf module (numpy and the errors only; the library, ``imagecorruptions-imaug``, is imported when an image is
corrupted) so that the config's validation, the Corrupt training augmentation and the robustness scoring all use it
without importing each other. Scoring lives in ``edgekd/robustness.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekd.errors import ConfigError

LIBRARY = "imagecorruptions-imaug"  # the pip distribution; its module is `imagecorruptions`
# every corruption of the library, in its own order (the 15 ImageNet-C ones, then its 4 validation ones); a
# corruption's seed uses its position here, so choosing a subset never changes another one's pixels
NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
         "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
         "speckle_noise", "gaussian_blur", "spatter", "saturate")
# the degraded inputs: sensor noise, defocus and motion blur, low contrast (ImageNet-C has no darkening:
# `contrast` is its low-light stand-in), JPEG artefacts, fog/smoke
DEFAULT = ("gaussian_noise", "defocus_blur", "motion_blur", "contrast", "jpeg_compression", "fog")
SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SAMPLES = 200  # test images scored by default: 6 corruptions x 5 severities x 3 models stay minutes on 2 cores
MIN_SIDE = 32  # the library refuses smaller images
_OWN_SEED = {"glass_blur", "impulse_noise"}  # take a `seed` argument instead of numpy's global RNG


def parse_names(spec: str | Sequence[str] | None, option: str = "--corruption-set") -> list[str]:
    """Corruption names from a comma list or a sequence (None: the default set); unknown names are a
    ConfigError naming the known ones."""
    if spec is None:
        return list(DEFAULT)
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n).strip() for n in spec]
    names = [n for n in names if n]
    if names == ["all"]:
        return list(NAMES)
    if not names:
        raise ConfigError(f"{option}: no corruption named; known: {', '.join(NAMES)} (or all)")
    for n in names:
        if n not in NAMES:
            raise ConfigError(f"{option}: unknown corruption {n!r}; known: {', '.join(NAMES)} (or all)")
    return list(dict.fromkeys(names))


def parse_severities(spec: str | Sequence[int] | None, option: str = "--severities") -> list[int]:
    """Severities from a comma list (``1,3,5``), a range (``1-5``) or a sequence; each must be 1-5."""
    if spec is None:
        return list(SEVERITIES)
    items: list[int] = []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    for p in parts:
        text = str(p).strip()
        try:
            if "-" in text.lstrip("-") and isinstance(p, str):
                lo, hi = (int(v) for v in text.split("-", 1))
                items += list(range(lo, hi + 1)) if lo <= hi else [lo]
            else:
                items.append(int(text))
        except ValueError as exc:
            raise ConfigError(f"{option}: {text!r} is not a severity (integers 1-5, e.g. 1,3,5 or 1-5)") from exc
    if not items:
        raise ConfigError(f"{option}: no severity given (integers 1-5, e.g. 1,3,5 or 1-5)")
    for s in items:
        if s not in SEVERITIES:
            raise ConfigError(f"{option}: severity {s} is out of range; ImageNet-C severities are 1-5")
    return sorted(set(items))


def _lib():
    from edgekd._deps import require

    return require("imagecorruptions", LIBRARY)


def library_version() -> str:
    from edgekd._deps import version_of

    return f"{LIBRARY} {version_of(LIBRARY) or '(not installed)'}"


def corrupt(img: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``img`` (uint8 HxWx3, at least 32x32) under corruption ``name`` at ``severity`` (1-5), deterministic for
    ``seed``; numpy's global RNG, which the library draws from, is left as it was."""
    if name not in NAMES:
        raise ConfigError(f"unknown corruption {name!r}; known: {', '.join(NAMES)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity {severity} is out of range; ImageNet-C severities are 1-5")
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"corruptions take uint8 HxWx3 images, not {img.dtype} {list(img.shape)}")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ConfigError(f"corruptions need images of at least {MIN_SIDE}x{MIN_SIDE} pixels (the model input is "
                          f"{img.shape[0]}x{img.shape[1]})")
    lib = _lib()
    s32 = seed % (1 << 32)
    state = np.random.get_state()
    try:
        np.random.seed(s32)
        out = lib.corrupt(np.ascontiguousarray(img), severity=severity, corruption_name=name,
                          **({"seed": s32} if name in _OWN_SEED else {}))
    finally:
        np.random.set_state(state)
    return np.require(out, np.uint8, ["C", "W"])  # JPEG comes back as a read-only view of a Pillow image
