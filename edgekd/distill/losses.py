"""Distillation losses, registered by name. Each is a small nn.Module:
``forward(student_logits, teacher_logits, labels) -> scalar``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")


@LOSSES.register("ce")
class CrossEntropy(nn.Module):
    """Hard labels only (the no-teacher baseline); ignores the teacher."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(student, labels, label_smoothing=self.label_smoothing)


@LOSSES.register("kd")
class HintonKD(nn.Module):
    """Hinton et al. 2015: alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y).

    The T^2 factor keeps the soft term's gradient scale independent of T.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError("kd needs temperature > 0 and 0 <= alpha <= 1")
        self.temperature, self.alpha = temperature, alpha

    def soft(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_p_s = F.log_softmax(student / t, dim=1)
        log_p_t = F.log_softmax(teacher / t, dim=1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        soft = self.soft(student, teacher.detach())
        if self.alpha == 1:
            return soft
        return self.alpha * soft + (1 - self.alpha) * F.cross_entropy(student, labels)


def build_loss(name: str, **kwargs: float) -> nn.Module:
    return LOSSES.get(name)(**kwargs)
