import pytest
import torch
import torch.nn.functional as F

from edgekd.distill.catalog import LOSSES, build_loss
from edgekd.distill.losses import DistillBatch, LossMix, kd_per_sample, pixels
from edgekd.distill.seg_losses import cwd_per_sample, soft_dice
from edgekd.errors import ConfigError

B, C, H, W = 2, 3, 8, 12


def batch(s, y, *teachers, pairs=(), prior=None):
    return DistillBatch(s, y, list(teachers), prior, list(pairs))


def mask(c=C, ignore=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (B, H, W), generator=g)
    if ignore:
        y[:, 0, :] = 255  # a void border row
        y[1, :, :3] = 255
    return y


def flat(x):
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def onehot_logits(y, c=C, scale=20.0):
    return F.one_hot(y.clamp_max(c - 1), c).permute(0, 3, 1, 2).float() * scale


# ---- pixels() and dense ce / kd / multi_teacher / dkd -------------------------------------------------------------

def test_pixels_flattens_drops_ignore_and_resizes_teachers():
    s, y, t = torch.randn(B, C, H, W), mask(), torch.randn(B, C, H // 2, W // 2)
    p = pixels(batch(s, y, t))
    keep = y.reshape(-1) != 255
    assert p.student.shape == (int(keep.sum()), C) and p.labels.shape == (int(keep.sum()),)
    assert torch.equal(p.student, flat(s)[keep]) and torch.equal(p.labels, y.reshape(-1)[keep])
    up = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
    assert torch.allclose(p.teachers[0], flat(up)[keep])
    assert (p.labels != 255).all()
    c2 = batch(torch.randn(4, C), torch.tensor([0, 1, 2, 0]))
    assert pixels(c2) is c2  # classification batches untouched


def test_dense_ce_ignores_void_and_equals_flattened():
    s, y = torch.randn(B, C, H, W, requires_grad=True), mask()
    got = build_loss("ce")(batch(s, y))
    assert got.item() == pytest.approx(F.cross_entropy(s, y, ignore_index=255).item(), rel=1e-6)
    keep = y.reshape(-1) != 255
    assert got.item() == pytest.approx(F.cross_entropy(flat(s)[keep], y.reshape(-1)[keep]).item(), rel=1e-6)
    got.backward()
    assert s.grad is not None and s.grad[0, :, 0, :].abs().sum() == 0  # void pixels get no gradient


@pytest.mark.parametrize("name,params", [("kd", {"temperature": 2.0, "alpha": 0.7}),
                                         ("multi_teacher", {"temperature": 2.0, "alpha": 0.7}),
                                         ("dkd", {"temperature": 2.0})])
def test_dense_logit_losses_equal_the_same_loss_on_flattened_pixels(name, params):
    s, y = torch.randn(B, C, H, W), mask()
    t1, t2 = torch.randn(B, C, H, W), torch.randn(B, C, H, W)
    prior = torch.tensor([0.6, 0.4])
    loss = build_loss(name, **params)
    keep = y.reshape(-1) != 255
    want = loss(batch(flat(s)[keep], y.reshape(-1)[keep], flat(t1)[keep], flat(t2)[keep], prior=prior))
    got = loss(batch(s, y, t1, t2, prior=prior))
    assert torch.isfinite(got) and got.item() == pytest.approx(want.item(), rel=1e-5)


def test_dense_kd_resizes_low_resolution_teacher_logits():
    s, y, t = torch.randn(B, C, H, W), mask(ignore=False), torch.randn(B, C, H // 4, W // 4)
    kd = build_loss("kd", temperature=1.0, alpha=1.0)
    up = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
    assert kd(batch(s, y, t)).item() == pytest.approx(kd(batch(s, y, up)).item(), rel=1e-6)
    # a teacher copied at low resolution and upsampled matches a student equal to the upsampled teacher
    assert kd(batch(up.clone(), y, t)).item() == pytest.approx(0, abs=1e-6)


# ---- dice_ce --------------------------------------------------------------------------------------------------------

def test_dice_ce_near_zero_for_perfect_logits_and_large_for_inverted():
    y = mask(c=2)
    dice_only = build_loss("dice_ce", ce_weight=0.0, smooth=1e-6)
    perfect = onehot_logits(y, 2)
    assert dice_only(batch(perfect, y)).item() == pytest.approx(0, abs=1e-4)
    inverted = onehot_logits(1 - y.clamp_max(1), 2)
    assert dice_only(batch(inverted, y)).item() > 0.99
    full = build_loss("dice_ce")
    assert full(batch(perfect, y)).item() < 0.01 < 10 < full(batch(inverted, y)).item()


def test_dice_ce_matches_hand_computed_value_and_excludes_background():
    s, y = torch.randn(B, C, H, W), mask()
    keep = y.reshape(-1) != 255
    p, g = F.softmax(flat(s)[keep], 1), F.one_hot(y.reshape(-1)[keep], C).float()
    dice = [(2 * (p[:, c] * g[:, c]).sum() + 1) / (p[:, c].sum() + g[:, c].sum() + 1) for c in range(C)]
    want = F.cross_entropy(s, y, ignore_index=255) + 1 - (dice[1] + dice[2]) / 2
    assert build_loss("dice_ce")(batch(s, y)).item() == pytest.approx(want.item(), rel=1e-5)
    assert torch.allclose(soft_dice(flat(s)[keep], y.reshape(-1)[keep]), torch.stack(dice), atol=1e-6)


def test_dice_ce_class_weights_and_void_pixels():
    s, y = torch.randn(B, C, H, W), mask()
    weights = [0.2, 1.0, 3.0]
    got = build_loss("dice_ce", dice_weight=0.0, class_weights=weights)(batch(s, y)).item()
    assert got == pytest.approx(F.cross_entropy(s, y, weight=torch.tensor(weights), ignore_index=255).item(),
                                rel=1e-6)
    # changing the logits of void pixels changes nothing
    s2 = s.clone()
    s2[:, :, 0, :] = torch.randn(B, C, W) * 50
    loss = build_loss("dice_ce")
    assert loss(batch(s, y)).item() == pytest.approx(loss(batch(s2, y)).item(), rel=1e-6)


def test_dice_ce_gradients_flow():
    s = torch.randn(B, 2, H, W, requires_grad=True)
    build_loss("dice_ce", ce_weight=0.0)(batch(s, mask(c=2))).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_dice_ce_bad_parameters():
    s, y = torch.randn(B, C, H, W), mask()
    with pytest.raises(ConfigError, match="class_weights"):
        build_loss("dice_ce", class_weights=[1.0, 2.0])(batch(s, y))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_loss("dice_ce")(batch(torch.randn(B, 1, H, W), torch.zeros(B, H, W, dtype=torch.long)))
    with pytest.raises(ConfigError):
        build_loss("dice_ce", smooth=-1)
    with pytest.raises(ConfigError, match="parameters are"):
        build_loss("dice_ce", weights=[1, 2])


# ---- pixel_kd -------------------------------------------------------------------------------------------------------

def test_pixel_kd_zero_for_identical_logits_positive_otherwise():
    s, y = torch.randn(B, C, H, W), mask()
    kd = build_loss("pixel_kd", alpha=1.0)
    assert kd(batch(s, y, s.clone())).item() == pytest.approx(0, abs=1e-6)
    assert kd(batch(s, y, torch.randn(B, C, H, W))).item() > 0


def test_pixel_kd_hand_computed_with_two_teachers_and_task_term():
    s, y = torch.randn(B, C, H, W, requires_grad=True), mask()
    t1, t2 = torch.randn(B, C, H // 2, W // 2), torch.randn(B, C, H, W)
    keep = y.reshape(-1) != 255
    up = F.interpolate(t1, size=(H, W), mode="bilinear", align_corners=False)
    soft = (0.25 * kd_per_sample(flat(s)[keep], flat(up)[keep], 2.0)
            + 0.75 * kd_per_sample(flat(s)[keep], flat(t2)[keep], 2.0)).mean()
    task = build_loss("dice_ce")(batch(s, y))
    two = batch(s, y, t1, t2, prior=torch.tensor([0.25, 0.75]))
    got = build_loss("pixel_kd", temperature=2.0, alpha=0.3, balance=False)(two)
    assert got.item() == pytest.approx((0.3 * soft + 0.7 * task).item(), rel=1e-5)
    got.backward()
    assert s.grad.abs().sum() > 0
    # balanced (the default): the per-pixel KL averaged within each ground-truth class, then over the classes
    per = (0.25 * kd_per_sample(flat(s)[keep], flat(up)[keep], 2.0)
           + 0.75 * kd_per_sample(flat(s)[keep], flat(t2)[keep], 2.0))
    labels = y.reshape(-1)[keep]
    balanced = torch.stack([per[labels == c].mean() for c in range(C)]).mean()
    got = build_loss("pixel_kd", temperature=2.0, alpha=0.3)(two)
    assert got.item() == pytest.approx((0.3 * balanced + 0.7 * task).item(), rel=1e-5)


def test_pixel_kd_balance_gives_a_rare_class_the_weight_of_a_common_one():
    y = torch.zeros(1, H, W, dtype=torch.long)
    y[0, 3, 4] = 1  # one "crack" pixel among H*W
    t = onehot_logits(y, 2, scale=4.0)
    s = t.clone()
    s[0, :, 3, 4] = 0.0  # the student disagrees with the teacher on the crack pixel only
    kl = kd_per_sample(s[0, :, 3, 4][None], t[0, :, 3, 4][None], 1.0).item()
    plain = build_loss("pixel_kd", alpha=1.0, balance=False)(batch(s, y, t)).item()
    balanced = build_loss("pixel_kd", alpha=1.0)(batch(s, y, t)).item()
    assert plain == pytest.approx(kl / (H * W), rel=1e-5)
    assert balanced == pytest.approx(kl / 2, rel=1e-5)  # (background mean 0 + crack mean kl) / 2 classes


def test_pixel_kd_bad_parameters():
    for params in ({"temperature": 0}, {"alpha": 1.5}, {"alpha": -0.1}):
        with pytest.raises(ConfigError):
            build_loss("pixel_kd", **params)


# ---- cwd ------------------------------------------------------------------------------------------------------------

def test_cwd_matches_hand_written_reference():
    s = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]], [[0.5, 0.5], [3.0, 0.0]]]])  # [1, 2, 2, 2]
    t = torch.tensor([[[[0.0, 1.0], [2.0, 0.0]], [[1.0, -1.0], [0.0, 2.0]]]])
    temp = 2.0
    total = 0.0
    for c in range(2):
        ps = torch.softmax(s[0, c].reshape(-1) / temp, 0)
        pt = torch.softmax(t[0, c].reshape(-1) / temp, 0)
        total += float((pt * (pt / ps).log()).sum())
    want = temp * temp * total / 2
    loss = build_loss("cwd", temperature=temp)
    assert loss(batch(s, torch.zeros(1, 2, 2, dtype=torch.long), t)).item() == pytest.approx(want, rel=1e-5)
    assert cwd_per_sample(s, t, temp).item() == pytest.approx(want, rel=1e-5)


def test_cwd_zero_for_identical_maps_and_invariant_to_per_channel_shift():
    s, t, y = torch.randn(B, C, H, W), torch.randn(B, C, H, W), mask()
    loss = build_loss("cwd")
    assert loss(batch(s, y, s.clone())).item() == pytest.approx(0, abs=1e-6)
    shift = torch.randn(B, C, 1, 1) * 10
    assert loss(batch(s + shift, y, t)).item() == pytest.approx(loss(batch(s, y, t)).item(), rel=1e-4)
    assert loss(batch(s, y, t)).item() > 0


def test_cwd_logits_resizes_teacher_and_weights_teachers():
    s, y = torch.randn(B, C, H, W, requires_grad=True), mask()
    t1, t2 = torch.randn(B, C, H // 2, W // 2), torch.randn(B, C, H, W)
    up = F.interpolate(t1, size=(H, W), mode="bilinear", align_corners=False)
    loss = build_loss("cwd", temperature=1.0)
    got = loss(batch(s, y, t1, t2, prior=torch.tensor([0.2, 0.8])))
    want = (0.2 * cwd_per_sample(s, up, 1.0) + 0.8 * cwd_per_sample(s, t2, 1.0)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert s.grad.abs().sum() > 0
    assert loss.needs == frozenset({"teacher"})


def test_cwd_on_features_uses_adapters_and_needs_features():
    loss = build_loss("cwd", maps="features", temperature=1.0)
    assert loss.needs == frozenset({"teacher", "features"})
    assert LossMix([("cwd", 1.0, loss)]).needs == frozenset({"teacher", "features"})
    fs, ft = torch.randn(B, 8, H, W, requires_grad=True), torch.randn(B, 16, H // 2, W // 2)
    loss.bind([(tuple(fs.shape), tuple(ft.shape))])
    b = batch(torch.randn(B, C, H, W), mask(), torch.randn(B, C, H, W), pairs=[(fs, ft, 0)])
    v = loss(b)
    s_a = F.interpolate(loss.adapters[0](fs), size=(H // 2, W // 2), mode="bilinear", align_corners=False)
    assert v.item() == pytest.approx(cwd_per_sample(s_a, ft, 1.0).mean().item(), rel=1e-5)
    v.backward()
    assert fs.grad is not None and loss.adapters[0].weight.grad.abs().sum() > 0
    # the class default still says logits-only, so the registry's class is usable as-is
    assert LOSSES.get("cwd").needs == frozenset({"teacher"})


def test_cwd_bad_parameters():
    with pytest.raises(ConfigError, match="logits or features"):
        build_loss("cwd", maps="x")
    with pytest.raises(ConfigError, match="temperature"):
        build_loss("cwd", temperature=0)


# ---- hint on segmentation-shaped pairs -----------------------------------------------------------------------------

def test_hint_works_on_segmentation_feature_pairs():
    fs, ft = torch.randn(B, 8, H // 2, W // 2, requires_grad=True), torch.randn(B, 16, H // 4, W // 4)
    hint = build_loss("hint")
    hint.bind([(tuple(fs.shape), tuple(ft.shape))])
    b = batch(torch.randn(B, C, H, W), mask(), torch.randn(B, C, H, W), pairs=[(fs, ft, 0)])
    v = hint(b)
    assert v.item() > 0
    v.backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0


def test_seg_losses_registered_through_losses_module():
    for name in ("dice_ce", "pixel_kd", "cwd"):
        assert name in LOSSES
    assert "teacher" not in build_loss("dice_ce").needs
    assert build_loss("pixel_kd").needs == frozenset({"teacher"})
