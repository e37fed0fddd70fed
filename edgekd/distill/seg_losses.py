"""Dense (segmentation) losses, registered into the same ``LOSSES`` registry as the classification ones.

Batches carry logits [B, C, H, W], masks [B, H, W] (255 = ignore) and teacher logits [B, C, h, w] at any size
(resized bilinearly to the student's). ``dice_ce`` is the class-imbalance-aware task loss for thin structures
(cracks, vessels), ``pixel_kd`` the per-pixel KD and ``cwd`` channel-wise distillation on logits or features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distill.losses import (
    LOSSES,
    DistillBatch,
    HintonKD,
    Loss,
    _Adapted,
    _resize,
    kd_per_sample,
    pixels,
    teacher_weights,
)
from edgekd.errors import ConfigError


def soft_dice(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice of each class, [C], from per-pixel logits [P, C] and labels [P] (sums over all pixels)."""
    p = F.softmax(logits.float(), 1)
    g = F.one_hot(labels, logits.shape[1]).float()
    return (2 * (p * g).sum(0) + smooth) / (p.sum(0) + g.sum(0) + smooth)


@LOSSES.register("dice_ce")
class DiceCE(Loss):
    """ce_weight * CE (ignore 255, optional class weights) + dice_weight * (1 - soft Dice).

    The Dice term averages over the foreground classes 1..C-1 only: background dominates thin-structure data
    (a crack is ~1-3 % of the pixels), so a Dice that counts it is near 1 whatever the student does there.
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, class_weights: list[float] | None = None,
                 smooth: float = 1.0) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or smooth < 0:
            raise ConfigError("dice_ce needs ce_weight >= 0, dice_weight >= 0 and smooth >= 0")
        if class_weights is not None and (not class_weights or min(class_weights) < 0):
            raise ConfigError(f"dice_ce class_weights {class_weights}: give one weight >= 0 per class")
        self.ce_weight, self.dice_weight, self.smooth = ce_weight, dice_weight, smooth
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def forward(self, b: DistillBatch) -> torch.Tensor:
        b = pixels(b)
        c = b.student.shape[1]
        if c < 2:
            raise ConfigError(f"dice_ce needs at least 2 classes (background + foreground); the logits have {c}")
        weight = None
        if self.class_weights is not None:
            if len(self.class_weights) != c:
                raise ConfigError(f"dice_ce class_weights has {len(self.class_weights)} values; the model has {c} "
                                  f"classes")
            weight = torch.tensor(self.class_weights, device=b.student.device, dtype=b.student.dtype)
        loss = b.student.new_zeros(())
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(b.student, b.labels, weight=weight)
        if self.dice_weight:
            loss = loss + self.dice_weight * (1 - soft_dice(b.student, b.labels, self.smooth)[1:].mean())
        return loss


@LOSSES.register("pixel_kd")
class PixelKD(HintonKD):
    """Pixel-wise KD (Liu et al. 2019, Structured KD): alpha * T^2 * KL(teacher || student) averaged over the
    labelled pixels (several teachers: fixed weights) + (1 - alpha) * dice_ce (default parameters).

    ``balance`` (default on) averages the KL per ground-truth class first, then over the classes present: a plain
    pixel mean is ~98 % background on crack data, so the thin class barely counts in it. Balanced, each class
    weighs the same, as in the Dice term of the task loss (on CrackForest it gave higher crack recall and test
    mIoU than the plain mean; see the CrackForest benchmark in docs/segmentation.md)."""

    def __init__(self, temperature: float = 1.0, alpha: float = 0.5, balance: bool = True) -> None:
        super().__init__(temperature, alpha)
        self.balance = balance
        self.task = DiceCE()

    def soft(self, b: DistillBatch) -> torch.Tensor:
        if not self.balance:
            return super().soft(b)
        b = pixels(b)
        w = teacher_weights(b, self.weighting)
        per = (w * torch.stack([kd_per_sample(b.student, t, self.temperature) for t in b.teachers], 1)).sum(1)
        present = torch.unique(b.labels)
        return torch.stack([per[b.labels == c].mean() for c in present]).mean()

    def forward(self, b: DistillBatch) -> torch.Tensor:
        b = pixels(b)
        soft = self.soft(b)
        if self.alpha == 1:
            return soft
        return self.alpha * soft + (1 - self.alpha) * self.task(b)


def cwd_per_sample(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Channel-wise distillation per sample, [B]: T^2 * mean over channels of KL(phi(t_c) || phi(s_c)), with
    phi(y_c) = softmax of y_c / T over the H*W positions. Maps [B, C, H, W] of the same shape."""
    log_p_s = F.log_softmax(student.float().flatten(2) / temperature, dim=2)
    log_p_t = F.log_softmax(teacher.detach().float().flatten(2) / temperature, dim=2)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(2).mean(1) * temperature * temperature


@LOSSES.register("cwd")
class ChannelWise(_Adapted):
    """Channel-wise distillation (Shu et al., ICCV 2021): each channel as a distribution over positions, so the
    student copies where the teacher puts each class (logits) or each feature (features).

    ``maps: logits``: student vs teacher logits (teachers resized to the student's size, fixed teacher weights).
    ``maps: features``: per feature pair, a learned 1x1 conv maps the student's channels to the teacher's (map
    resized to the teacher's size). ``normalize`` rescales teacher maps to unit RMS first (off: the paper's raw
    maps, whose scale sets how sharp the target distribution is at a given T).
    """

    needs = frozenset({"teacher"})

    def __init__(self, temperature: float = 4.0, maps: str = "logits", normalize: bool = False) -> None:
        super().__init__("fixed", normalize)
        if temperature <= 0:
            raise ConfigError(f"cwd needs temperature > 0 (got {temperature})")
        # (not ``on``: YAML 1.1 reads the key ``on`` as the boolean true)
        if maps not in ("logits", "features"):
            raise ConfigError(f"cwd maps {maps!r}: use logits or features")
        self.temperature, self.maps = temperature, maps
        self.needs = frozenset({"teacher"}) if maps == "logits" else frozenset({"teacher", "features"})

    def bind(self, pairs):
        if self.maps == "features":
            super().bind(pairs)

    def forward(self, b: DistillBatch) -> torch.Tensor:
        if self.maps == "logits":
            w = teacher_weights(b, "fixed")
            hw = b.student.shape[-2:]
            per = torch.stack([cwd_per_sample(b.student, _resize(t, hw), self.temperature) for t in b.teachers], 1)
            return (w * per).sum(1).mean()
        per = []
        for i in range(len(b.pairs)):
            s, t = self.aligned(b, i)
            per.append(cwd_per_sample(s, t, self.temperature))
        return self.combine(b, per)
