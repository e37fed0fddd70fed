"""Distillation losses, registered by name and combined with weights in a recipe.

Every loss is a small ``nn.Module`` with ``forward(batch: DistillBatch) -> scalar``. Logit losses read the
teachers' logits; feature losses read the aligned feature pairs (student map, teacher map) that the trainer
taps from named layers. ``needs`` says what a loss reads, so a recipe that asks an ONNX (logits-only) teacher
for features is refused before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")


@dataclass
class DistillBatch:
    """What one training step hands to the losses.

    ``teachers`` holds one [B, C] logit tensor per teacher; ``prior`` the fixed teacher weights (sum 1).
    ``pairs`` holds one (student map, teacher map, teacher index) per feature pair, maps in NCHW.
    Segmentation: ``student`` [B, C, H, W], ``labels`` [B, H, W] (255 = ignore), teachers [B, C, h, w] at any
    size; ``pixels`` turns such a batch into a per-pixel one for the logit losses.
    """

    student: torch.Tensor
    labels: torch.Tensor
    teachers: list[torch.Tensor] = field(default_factory=list)
    prior: torch.Tensor | None = None
    pairs: list[tuple[torch.Tensor, torch.Tensor, int]] = field(default_factory=list)

    def prior_weights(self) -> torch.Tensor:
        k = len(self.teachers) or 1 + max((p[2] for p in self.pairs), default=0)
        p = self.prior if self.prior is not None else torch.full((k,), 1.0 / k)
        return p.to(self.student.device, torch.float32)


WEIGHTINGS = ("fixed", "entropy", "label")


def teacher_weights(batch: DistillBatch, mode: str = "fixed") -> torch.Tensor:
    """Per-sample teacher weights [B, K] that sum to 1 over teachers.

    ``fixed``: the recipe's weights for every sample. ``entropy``: prior * exp(-H(p_k)), renormalised, so a
    teacher that is sure of a sample (low entropy of its softmax) counts more on that sample, right or wrong.
    ``label``: prior * exp(-CE(p_k, y)), renormalised: with hard labels exp(-CE) is the teacher's probability of
    the true class, so a teacher that is confidently wrong on a sample counts less there (the label-aware
    weighting of CA-MKD, Zhang et al. ICASSP 2022, in its softmax form); soft (MixUp / CutMix) labels give the
    expected cross-entropy.
    """
    prior = batch.prior_weights()
    b = batch.student.shape[0]
    if mode == "fixed" or not batch.teachers:
        return prior.expand(b, -1)
    if mode not in WEIGHTINGS:
        raise ConfigError(f"teacher weighting {mode!r}: use {', '.join(WEIGHTINGS)}")
    if mode == "entropy":
        cost = torch.stack([-(F.softmax(t, 1) * F.log_softmax(t, 1)).sum(1) for t in batch.teachers], 1)  # [B, K]
    else:
        y = batch.labels if batch.labels.dtype == torch.long else batch.labels.float()
        cost = torch.stack([F.cross_entropy(t.float(), y, reduction="none") for t in batch.teachers], 1)
    # exp(-cost) normalised over teachers, computed from the row minimum so a large cost does not underflow to 0/0
    w = prior * torch.exp(-(cost - cost.min(1, keepdim=True).values))
    return (w / w.sum(1, keepdim=True)).detach()


def kd_per_sample(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per sample; the T^2 keeps gradients independent of T."""
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher.detach() / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1) * temperature * temperature


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(hw) else F.interpolate(x, size=hw, mode="bilinear",
                                                                    align_corners=False)


def pixels(b: DistillBatch, ignore_index: int = 255) -> DistillBatch:
    """A dense batch (logits [B, C, H, W]) as a per-pixel one: logits [P, C], labels [P] over the P labelled
    pixels (``ignore_index`` dropped), teacher logits resized bilinearly to the student's H, W first.
    Classification batches (2-D logits) come back unchanged."""
    if b.student.dim() != 4:
        return b
    hw = b.student.shape[-2:]

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    labels = b.labels.reshape(-1).long()
    keep = labels != ignore_index
    return DistillBatch(flat(b.student)[keep], labels[keep], [flat(_resize(t, hw))[keep] for t in b.teachers],
                        b.prior, b.pairs)


class Loss(nn.Module):
    needs: frozenset[str] = frozenset()  # subset of {"teacher", "features"}
    # per-class weights [C] of the hard-label cross-entropy (``class_weights: balanced``); see set_class_weight
    class_weight: torch.Tensor | None = None

    def hard_ce(self, logits: torch.Tensor, labels: torch.Tensor, **kw) -> torch.Tensor:
        """Cross-entropy against the labels, weighted by class when ``class_weight`` is set."""
        w = self.class_weight
        return F.cross_entropy(logits, labels, weight=None if w is None else w.to(logits.device, logits.dtype), **kw)

    def bind(self, pairs: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
        """Called once with the (student, teacher) NCHW shapes of each feature pair before training."""


@LOSSES.register("ce")
class CrossEntropy(Loss):
    """Hard labels only (the no-teacher baseline)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, b: DistillBatch) -> torch.Tensor:
        b = pixels(b)  # dense: ignore_index=255 pixels dropped
        return self.hard_ce(b.student, b.labels, label_smoothing=self.label_smoothing)


@LOSSES.register("kd")
class HintonKD(Loss):
    """Hinton et al. 2015: alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE(student, y).

    With several teachers the soft term is their fixed-weight average (see ``multi_teacher`` for per-sample
    uncertainty weighting).
    """

    needs = frozenset({"teacher"})
    weighting = "fixed"

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ConfigError(f"{type(self).__name__} needs temperature > 0 and 0 <= alpha <= 1")
        self.temperature, self.alpha = temperature, alpha

    def soft(self, b: DistillBatch) -> torch.Tensor:
        b = pixels(b)
        w = teacher_weights(b, self.weighting)
        per = torch.stack([kd_per_sample(b.student, t, self.temperature) for t in b.teachers], 1)
        return (w * per).sum(1).mean()

    def forward(self, b: DistillBatch) -> torch.Tensor:
        b = pixels(b)
        soft = self.soft(b)
        if self.alpha == 1:
            return soft
        return self.alpha * soft + (1 - self.alpha) * self.hard_ce(b.student, b.labels)


@LOSSES.register("multi_teacher")
class MultiTeacherKD(HintonKD):
    """KD from several teachers with per-sample weights: ``weighting: label`` (default) trusts, per image, the
    teacher that gives the true class the most probability; ``entropy`` the one whose prediction is most certain,
    right or wrong; ``fixed`` uses the recipe's teacher weights (see :func:`teacher_weights`).

    ``label`` is the default because it scored at least as well as ``entropy`` on both seeds of
    ``benchmarks/distill_cifar10.py`` (runs (d), (e): 71.02 / 68.82 against 70.66 / 68.05, a margin inside the
    benchmark's machine-to-machine spread) and, unlike ``entropy``, does not follow a confidently wrong teacher."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, weighting: str = "label") -> None:
        super().__init__(temperature, alpha)
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"multi_teacher weighting {weighting!r}: use {', '.join(WEIGHTINGS)}")
        self.weighting = weighting


@LOSSES.register("dkd")
class DecoupledKD(Loss):
    """Decoupled KD (Zhao et al. 2022): alpha * TCKD + beta * NCKD (+ ce_weight * CE), both terms * T^2.

    TCKD is the KL between binary (target, rest) distributions; NCKD the KL among non-target classes only.
    ``beta`` defaults to 8 here (the paper's CIFAR-100 value); in a run, a dkd term without ``beta`` gets
    ``config.dkd_beta(classes)``: 8 from 100 classes on, scaled by log(C - 1) / log(99) below (4 for 10 classes,
    1 for 2-3), a heuristic explained there. An explicit beta is kept.
    """

    needs = frozenset({"teacher"})

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
                 ce_weight: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0 or alpha < 0 or beta < 0:
            raise ConfigError("dkd needs temperature > 0, alpha >= 0 and beta >= 0")
        self.alpha, self.beta, self.temperature, self.ce_weight = alpha, beta, temperature, ce_weight

    def per_sample(self, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        temp = self.temperature
        gt = F.one_hot(y, s.shape[1]).bool()
        p_s, p_t = F.softmax(s / temp, 1), F.softmax(t.detach() / temp, 1)
        b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], 1).clamp_min(1e-8)
        b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], 1).clamp_min(1e-8)
        tckd = (b_t * (b_t.log() - b_s.log())).sum(1)
        big = torch.finfo(s.dtype).max / 4
        log_q_s = F.log_softmax(s / temp - gt * big, 1)
        log_q_t = F.log_softmax(t.detach() / temp - gt * big, 1)
        nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(gt, 0).sum(1)
        return (self.alpha * tckd + self.beta * nckd) * temp * temp

    def forward(self, b: DistillBatch) -> torch.Tensor:
        b = pixels(b)
        w = teacher_weights(b, "fixed")
        per = torch.stack([self.per_sample(b.student, t, b.labels) for t in b.teachers], 1)
        loss = (w * per).sum(1).mean()
        if self.ce_weight:
            loss = loss + self.ce_weight * self.hard_ce(b.student, b.labels)
        return loss


class _Adapted(Loss):
    """Feature losses with a learned 1x1-conv adapter per pair (student channels -> teacher channels).

    Token sequences were already turned into maps by the trainer, so on tokens the 1x1 conv is a linear layer.
    """

    needs = frozenset({"teacher", "features"})

    def __init__(self, weighting: str = "fixed", normalize: bool = True) -> None:
        super().__init__()
        self.weighting, self.normalize = weighting, normalize
        self.adapters = nn.ModuleList()

    def bind(self, pairs):
        self.adapters = nn.ModuleList(nn.Conv2d(s[1], t[1], 1, bias=False) for s, t in pairs)

    def aligned(self, b: DistillBatch, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, t, _ = b.pairs[i]
        t = t.detach().float()
        if self.normalize:  # teacher scale varies by orders of magnitude across layers
            t = t / t.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)
        return _resize(self.adapters[i](s.float()), t.shape[-2:]), t

    def combine(self, b: DistillBatch, per_pair: list[torch.Tensor]) -> torch.Tensor:
        w = teacher_weights(b, self.weighting) * (b.prior_weights().numel())  # mean weight 1 per teacher
        return torch.stack([(w[:, b.pairs[i][2]] * v).mean() for i, v in enumerate(per_pair)]).sum()


@LOSSES.register("hint")
class Hint(_Adapted):
    """FitNets (Romero et al. 2015): MSE between adapter(student map) and the teacher map, per pair."""

    def forward(self, b: DistillBatch) -> torch.Tensor:
        per = []
        for i in range(len(b.pairs)):
            s, t = self.aligned(b, i)
            per.append((s - t).pow(2).mean(dim=(1, 2, 3)))
        return self.combine(b, per)


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of a feature map: mean_c |f|^p, [B, H, W]."""
    return f.float().abs().pow(p).mean(1)


@LOSSES.register("attention")
class Attention(_Adapted):
    """Attention on feature maps, two modes.

    ``transfer`` (Zagoruyko & Komodakis 2017): || a_s/|a_s| - a_t/|a_t| ||^2 with a = mean_c |f|^p (no adapter,
    so channel counts may differ). ``masked`` (HumP-KD's spatial attention masking): the adapted feature MSE,
    each position weighted by the teacher's attention (normalised to mean 1), so the student copies the
    teacher where the teacher looks.
    """

    def __init__(self, mode: str = "transfer", p: float = 2.0, weighting: str = "fixed",
                 normalize: bool = True) -> None:
        super().__init__(weighting, normalize)
        if mode not in ("transfer", "masked"):
            raise ConfigError(f"attention mode {mode!r}: use transfer or masked")
        self.mode, self.p = mode, p

    def bind(self, pairs):
        if self.mode == "masked":
            super().bind(pairs)

    def forward(self, b: DistillBatch) -> torch.Tensor:
        per = []
        for i, (s, t, _) in enumerate(b.pairs):
            if self.mode == "transfer":
                a_t = attention_map(t.detach(), self.p)
                a_s = _resize(attention_map(s, self.p)[:, None], a_t.shape[-2:])[:, 0]
                a_s, a_t = F.normalize(a_s.flatten(1), dim=1), F.normalize(a_t.flatten(1), dim=1)
                per.append((a_s - a_t).pow(2).sum(1))
            else:
                s_a, t_n = self.aligned(b, i)
                mask = attention_map(t.detach(), self.p)
                mask = mask / mask.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
                per.append(((s_a - t_n).pow(2).mean(1) * mask).mean(dim=(1, 2)))
        return self.combine(b, per)


class LossMix(nn.Module):
    """Weighted sum of named losses; ``parts`` keeps the last value of each for the progress bar."""

    def __init__(self, terms: list[tuple[str, float, Loss]], ramps: list[float] | None = None) -> None:
        super().__init__()
        self.names = [n for n, _, _ in terms]
        self.weights = [w for _, w, _ in terms]
        self.ramps = ramps or [0.0] * len(terms)
        self.terms = nn.ModuleList(m for _, _, m in terms)
        self.parts: dict[str, float] = {}
        self.epoch = 0.0  # set by the trainer (fractional epochs into the stage)

    def scale(self, i: int) -> float:
        """Weight multiplier of term i now: 1, or epoch / ramp_epochs while a ramp is running (DKD's warm-up)."""
        return min(1.0, self.epoch / self.ramps[i]) if self.ramps[i] > 0 else 1.0

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(m.needs for m in self.terms))

    def bind(self, pairs) -> None:
        for m in self.terms:
            m.bind(pairs)

    def forward(self, b: DistillBatch) -> torch.Tensor:
        total = b.student.new_zeros(())
        for i, (name, w, m) in enumerate(zip(self.names, self.weights, self.terms, strict=True)):
            v = m(b)
            self.parts[name] = float(v.detach())
            total = total + w * self.scale(i) * v
        return total


def balanced_class_weights(counts) -> torch.Tensor:
    """Per-class weights inversely proportional to the training images of each class, normalised to mean 1
    (a class without images counts as one image: it never is a label, so its weight never applies)."""
    n = torch.as_tensor([float(c) for c in counts]).clamp_min(1.0)
    w = 1.0 / n
    return w / w.mean()


def set_class_weight(loss: nn.Module, weight: torch.Tensor | None) -> None:
    """Weight by class the hard-label cross-entropy of every loss in ``loss`` (a LossMix or one loss)."""
    for m in loss.modules():
        if isinstance(m, Loss):
            m.class_weight = weight
