import math

import pytest
import torch
import torch.nn.functional as F

from edgekd.distill.catalog import LOSSES, build_loss
from edgekd.distill.features import FeatureTap, to_map
from edgekd.distill.losses import DistillBatch, LossMix, kd_per_sample, teacher_weights
from edgekd.errors import ConfigError


def batch(s, y, *teachers, pairs=(), prior=None):
    return DistillBatch(s, y, list(teachers), prior, list(pairs))


# ---- kd ------------------------------------------------------------------------------------------------------------

def test_kd_of_identical_logits_is_zero():
    logits = torch.randn(8, 10)
    kd = build_loss("kd", temperature=4.0, alpha=1.0)
    assert kd(batch(logits, torch.zeros(8, dtype=torch.long), logits.clone())).item() == pytest.approx(0, abs=1e-6)


def test_kd_matches_hand_computed_value_with_t_squared_scaling():
    s, t, temp = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 2.0
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = ps[::-1]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
    kd = build_loss("kd", temperature=temp, alpha=1.0)
    assert kd(batch(s, torch.tensor([0]), t)).item() == pytest.approx(kl * temp * temp, rel=1e-5)
    # T^2 scaling: the soft term at T equals T^2 times the plain KL of the softened distributions
    assert kd_per_sample(s, t, temp).item() == pytest.approx(4 * kl, rel=1e-5)


def test_kd_mixes_hard_label_cross_entropy_with_alpha():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    kd = build_loss("kd", temperature=3.0, alpha=0.25)
    b = batch(s, y, t)
    expected = 0.25 * kd.soft(b) + 0.75 * F.cross_entropy(s, y)
    assert kd(b).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kd_gradient_does_not_flow_into_teacher():
    s, t = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    build_loss("kd")(batch(s, torch.tensor([0, 1]), t)).backward()
    assert s.grad is not None and t.grad is None


def test_kd_with_two_teachers_averages_with_fixed_weights():
    s, t1, t2, y = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
    kd = build_loss("kd", temperature=2.0, alpha=1.0)
    got = kd(batch(s, y, t1, t2, prior=torch.tensor([0.75, 0.25]))).item()
    want = (0.75 * kd_per_sample(s, t1, 2.0) + 0.25 * kd_per_sample(s, t2, 2.0)).mean().item()
    assert got == pytest.approx(want, rel=1e-6)


def test_ce_ignores_teacher():
    s, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert build_loss("ce")(batch(s, y)).item() == pytest.approx(F.cross_entropy(s, y).item())


# ---- dkd -----------------------------------------------------------------------------------------------------------

def test_dkd_of_identical_logits_is_only_the_ce_term():
    s, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    assert build_loss("dkd", ce_weight=0.0)(batch(s, y, s.clone())).item() == pytest.approx(0, abs=1e-5)
    assert build_loss("dkd")(batch(s, y, s.clone())).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-4)


def test_dkd_matches_hand_computed_tckd_and_nckd():
    # student uniform over 3 classes; teacher p = [0.5, 0.25, 0.25]; target 0, T = 1
    s, t, y = torch.zeros(1, 3), torch.tensor([[math.log(2.0), 0.0, 0.0]]), torch.tensor([0])
    tckd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))  # binary (target, rest)
    dkd = build_loss("dkd", alpha=1.0, beta=8.0, temperature=1.0, ce_weight=0.0)
    assert dkd(batch(s, y, t)).item() == pytest.approx(tckd, rel=1e-4)  # non-target parts are equal: NCKD = 0
    # now only the non-target distribution differs: TCKD = 0, NCKD = KL([.8,.2] || [.5,.5])
    t2 = torch.tensor([[0.0, math.log(0.8), math.log(0.2)]])
    s2 = torch.tensor([[0.0, math.log(0.5), math.log(0.5)]])
    nckd = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    dkd2 = build_loss("dkd", alpha=1.0, beta=2.0, temperature=1.0, ce_weight=0.0)
    assert dkd2(batch(s2, y, t2)).item() == pytest.approx(2.0 * nckd, rel=1e-4)


# ---- multi_teacher -------------------------------------------------------------------------------------------------

def test_entropy_weighting_trusts_the_certain_teacher():
    s, y = torch.zeros(1, 2), torch.tensor([0])
    unsure, sure = torch.tensor([[0.0, 0.0]]), torch.tensor([[60.0, 0.0]])  # entropies ln 2 and ~0
    w = teacher_weights(batch(s, y, unsure, sure), "entropy")
    assert w[0].tolist() == pytest.approx([1 / 3, 2 / 3], rel=1e-4)  # exp(-ln2) : exp(0) = 1 : 2
    assert teacher_weights(batch(s, y, unsure, sure), "fixed")[0].tolist() == pytest.approx([0.5, 0.5])


def test_label_weighting_trusts_the_teacher_that_is_right_not_the_confident_one():
    s, y = torch.zeros(2, 2), torch.tensor([0, 1])
    wrong_and_sure = torch.tensor([[0.0, 60.0], [0.0, 60.0]])  # sure of class 1: wrong on sample 0, right on 1
    unsure = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # p(true class) = 1/2 on both
    w = teacher_weights(batch(s, y, wrong_and_sure, unsure), "label")
    assert w[0].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)  # exp(-60) : 1/2
    assert w[1].tolist() == pytest.approx([2 / 3, 1 / 3], rel=1e-4)  # p(y) 1 : 1/2
    assert teacher_weights(batch(s, y, wrong_and_sure, unsure), "entropy")[0, 0] > 0.6  # entropy trusts it
    # with a prior: prior * p_k(y), renormalised
    wp = teacher_weights(batch(s, y, wrong_and_sure, unsure, prior=torch.tensor([0.2, 0.8])), "label")
    assert wp[1].tolist() == pytest.approx([0.2 / 0.6, 0.4 / 0.6], rel=1e-4)
    # soft (MixUp) labels: the expected cross-entropy; a one-hot soft label equals its hard label
    soft = F.one_hot(y, 2).float()
    assert torch.allclose(teacher_weights(batch(s, soft, wrong_and_sure, unsure), "label"), w, atol=1e-6)


def test_unknown_weighting_is_a_config_error():
    with pytest.raises(ConfigError, match="use fixed, entropy, label"):
        build_loss("multi_teacher", weighting="vote")
    with pytest.raises(ConfigError, match="use fixed, entropy, label"):
        teacher_weights(batch(torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 2)), "vote")


def test_multi_teacher_equals_weighted_kd():
    s, y = torch.randn(2, 2), torch.tensor([0, 1])
    t1, t2 = torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([[60.0, 0.0], [0.0, 60.0]])
    mt = build_loss("multi_teacher", temperature=1.0, alpha=1.0, weighting="entropy")
    want = ((kd_per_sample(s, t1, 1.0) + 2 * kd_per_sample(s, t2, 1.0)) / 3).mean()
    assert mt(batch(s, y, t1, t2)).item() == pytest.approx(want.item(), rel=1e-4)



def test_multi_teacher_defaults_to_label_weighting_so_a_confidently_wrong_teacher_is_not_followed():
    y = torch.tensor([0])
    wrong_and_sure, right = torch.tensor([[0.0, 60.0]]), torch.tensor([[3.0, 0.0]])
    s = right.clone()  # a student that already matches the right teacher
    b = batch(s, y, wrong_and_sure, right)
    default = build_loss("multi_teacher", temperature=1.0, alpha=1.0)
    assert default.weighting == "label"
    # the wrong teacher's weight is ~exp(-60): nothing left to learn; entropy weighting (0.55 to the wrong,
    # surer teacher) pulls the student towards class 1
    assert default(b).item() == pytest.approx(0.0, abs=1e-5)
    entropy = build_loss("multi_teacher", temperature=1.0, alpha=1.0, weighting="entropy")
    assert entropy(b).item() > 1.0

# ---- features: layouts, hint, attention ----------------------------------------------------------------------------

def test_to_map_handles_cnn_swin_and_vit_layouts():
    x = torch.randn(2, 8, 4, 4)
    assert to_map(x) is x
    assert torch.equal(to_map(x.permute(0, 2, 3, 1), "nhwc"), x)
    tokens = torch.cat([torch.randn(2, 1, 8), x.flatten(2).transpose(1, 2)], 1)  # class token + 16 patches
    assert torch.equal(to_map(tokens), x)
    with pytest.raises(ConfigError, match="square grid"):
        to_map(torch.randn(2, 15, 8))


def test_hint_is_zero_when_the_adapter_maps_student_onto_teacher():
    t = torch.randn(2, 4, 3, 3)
    t_n = t / t.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    hint = build_loss("hint")
    hint.bind([((2, 4, 3, 3), (2, 4, 3, 3))])
    with torch.no_grad():
        hint.adapters[0].weight.copy_(torch.eye(4).view(4, 4, 1, 1))
    b = batch(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3), pairs=[(t_n, t, 0)])
    assert hint(b).item() == pytest.approx(0, abs=1e-6)


def test_hint_aligns_channels_and_spatial_size_and_trains_the_adapter():
    s = torch.randn(2, 8, 4, 4, requires_grad=True)
    t = torch.randn(2, 16, 8, 8)
    hint = build_loss("hint", normalize=False)
    hint.bind([(tuple(s.shape), tuple(t.shape))])
    b = batch(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3), pairs=[(s, t, 0)])
    loss = hint(b)
    adapted = F.interpolate(hint.adapters[0](s), size=(8, 8), mode="bilinear", align_corners=False)
    assert loss.item() == pytest.approx((adapted - t).pow(2).mean().item(), rel=1e-5)
    loss.backward()
    assert hint.adapters[0].weight.grad is not None and s.grad is not None


def test_attention_transfer_hand_computed():
    # teacher attends to one position, student is uniform: a_t = e_0, a_s = (1,1,1,1)/2 -> ||a_s - a_t||^2
    t = torch.zeros(1, 3, 2, 2)
    t[0, :, 0, 0] = 1.0
    s = torch.ones(1, 5, 2, 2)
    at = build_loss("attention", mode="transfer")
    b = batch(torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 2), pairs=[(s, t, 0)])
    want = (0.5 - 1) ** 2 + 3 * 0.5 ** 2
    assert at(b).item() == pytest.approx(want, rel=1e-5)
    assert at(batch(torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 2), pairs=[(t, t, 0)])).item() == \
        pytest.approx(0, abs=1e-6)


def test_masked_attention_counts_only_where_the_teacher_looks():
    t = torch.zeros(1, 2, 2, 2)
    t[0, :, 1, 1] = 2.0  # all attention on position (1, 1)
    m = build_loss("attention", mode="masked", normalize=False)
    m.bind([((1, 2, 2, 2), (1, 2, 2, 2))])
    with torch.no_grad():
        m.adapters[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    s = t.clone()
    s[0, :, 0, 0] = 5.0  # error where the teacher does not look: masked out
    b = batch(torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 2), pairs=[(s, t, 0)])
    assert m(b).item() == pytest.approx(0, abs=1e-6)
    s[0, :, 1, 1] = 3.0  # error of 1 per channel at the attended position; mask there = 4 (mean 1 over 4 cells)
    assert m(b).item() == pytest.approx(1.0 * 4 / 4, rel=1e-5)


# ---- mixing, names, parameters -------------------------------------------------------------------------------------

def test_loss_mix_is_the_weighted_sum():
    s, t, y = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
    kd, ce = build_loss("kd", alpha=1.0), build_loss("ce")
    mix = LossMix([("kd", 0.3, kd), ("ce", 2.0, ce)])
    b = batch(s, y, t)
    assert mix(b).item() == pytest.approx(0.3 * kd(b).item() + 2.0 * ce(b).item(), rel=1e-6)
    assert mix.needs == {"teacher"} and set(mix.parts) == {"kd", "ce"}


def test_unknown_loss_suggests_a_name():
    with pytest.raises(ConfigError, match="Did you mean 'kd'"):
        LOSSES.get("kdd")


def test_wrong_loss_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="its parameters are: temperature, alpha"):
        build_loss("kd", temprature=3.0)


def test_feature_tap_missing_layer_is_one_clear_error():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU())
    with pytest.raises(ConfigError, match="student has no layer 'O'"):
        FeatureTap(net, ["O"], ["auto"], "student")
    tap = FeatureTap(net, ["0"], ["auto"], "student")
    net(torch.randn(1, 3, 2, 2))
    assert tap.maps()[0].shape == (1, 4, 2, 2)


def test_loss_mix_ramps_a_term_in_over_epochs():
    s, t, y = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
    kd, ce = build_loss("kd", alpha=1.0), build_loss("ce")
    mix = LossMix([("kd", 2.0, kd), ("ce", 1.0, ce)], ramps=[4.0, 0.0])
    b = batch(s, y, t)
    for epoch, f in [(0.0, 0.0), (1.0, 0.25), (4.0, 1.0), (9.0, 1.0)]:
        mix.epoch = epoch
        assert mix(b).item() == pytest.approx(2.0 * f * kd(b).item() + ce(b).item(), rel=1e-6)
