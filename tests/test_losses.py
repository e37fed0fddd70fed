import math

import pytest
import torch
import torch.nn.functional as F

from edgekd.distill.losses import LOSSES, build_loss
from edgekd.errors import ConfigError


def test_kd_of_identical_logits_is_zero():
    logits = torch.randn(8, 10)
    kd = build_loss("kd", temperature=4.0, alpha=1.0)
    assert kd(logits, logits.clone(), torch.zeros(8, dtype=torch.long)).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_matches_hand_computed_value_with_t_squared_scaling():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    T = 2.0
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = ps[::-1]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
    kd = build_loss("kd", temperature=T, alpha=1.0)
    assert kd(s, t, torch.tensor([0])).item() == pytest.approx(kl * T * T, rel=1e-5)


def test_kd_mixes_hard_label_cross_entropy_with_alpha():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    kd = build_loss("kd", temperature=3.0, alpha=0.25)
    expected = 0.25 * kd.soft(s, t) + 0.75 * F.cross_entropy(s, y)
    assert kd(s, t, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kd_gradient_does_not_flow_into_teacher():
    s, t = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    build_loss("kd")(s, t, torch.tensor([0, 1])).backward()
    assert s.grad is not None and t.grad is None


def test_ce_ignores_teacher():
    s, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert build_loss("ce")(s, None, y).item() == pytest.approx(F.cross_entropy(s, y).item())


def test_unknown_loss_suggests_a_name():
    with pytest.raises(ConfigError, match="Did you mean 'kd'"):
        LOSSES.get("kdd")


def test_bad_kd_parameters_are_refused():
    with pytest.raises(ValueError):
        build_loss("kd", temperature=0.0)
