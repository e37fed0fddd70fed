"""``Corrupt``: ImageNet-C corruptions as a training augmentation (a torchvision v2 transform).

In a recipe's ``augment:`` list: ``{name: Corrupt, names: [gaussian_noise, fog], severity: [1, 3], p: 0.5}``:
with probability ``p`` one of ``names`` (default: edgekd.corruptions.DEFAULT) at a severity drawn from the range
(or a fixed one), applied to the uint8 image (place it before any ToDtype / Normalize). Its draws come from
torch's RNG, which the loader seeds per sample from (run seed, epoch or view, index): the same sample in the
same epoch gets the same corruption whatever the number of workers. Masks pass through untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from edgekd.errors import ConfigError


class Corrupt(v2.Transform):
    def __init__(self, names=None, severity=(1, 3), p: float = 0.5) -> None:
        from edgekd.corruptions import SEVERITIES, parse_names

        super().__init__()
        self.names = parse_names(names, "augment Corrupt names")
        sev = [severity] if isinstance(severity, int) else list(severity)
        if len(sev) == 1:
            sev = sev * 2
        if len(sev) != 2 or not all(isinstance(s, int) and s in SEVERITIES for s in sev) or sev[0] > sev[1]:
            raise ConfigError(f"augment Corrupt severity {severity!r}: give one severity 1-5 or a range [lo, hi] "
                              f"within 1-5")
        if not 0 <= p <= 1:
            raise ConfigError(f"augment Corrupt p {p!r}: a probability, 0-1")
        self.severity, self.p = (sev[0], sev[1]), float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        # every draw is made, used or not, so one sample's later transforms do not depend on whether it was hit
        hit = bool(torch.rand(()) < self.p)
        name = self.names[int(torch.randint(len(self.names), ()))]
        severity = int(torch.randint(self.severity[0], self.severity[1] + 1, ()))
        seed = int(torch.randint(0, 1 << 62, ()))
        return {"hit": hit, "name": name, "severity": severity, "seed": seed}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["hit"] or not isinstance(inpt, tv_tensors.Image):
            return inpt
        if inpt.dtype != torch.uint8 or inpt.ndim != 3:
            raise ConfigError(f"augment Corrupt takes uint8 CxHxW images, got {inpt.dtype} {list(inpt.shape)}: "
                              f"place it before ToDtype / Normalize")
        from edgekd.corruptions import corrupt

        img = np.ascontiguousarray(inpt.permute(1, 2, 0).numpy())
        out = corrupt(img, params["name"], params["severity"], params["seed"])
        return tv_tensors.wrap(torch.from_numpy(out).permute(2, 0, 1).contiguous(), like=inpt)
