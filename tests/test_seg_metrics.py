import numpy as np
import pytest

from edgekd.distill.seg_metrics import confusion, miou, seg_scores
from edgekd.errors import DataError


def tiny():
    # truth / prediction on a 2x4 image, one void pixel (255) whose prediction must not count
    mask = np.array([[0, 0, 1, 1], [0, 1, 255, 0]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0]])
    return pred, mask


def test_confusion_hand_computed_and_skips_ignore():
    pred, mask = tiny()
    conf = confusion(pred, mask, 2)
    # truth 0: pixels (0,0)->0, (0,1)->1, (1,0)->0, (1,3)->0 ; truth 1: (0,2)->1, (0,3)->1, (1,1)->0
    assert conf.dtype == np.int64
    assert conf.tolist() == [[3, 1], [1, 2]]
    assert conf.sum() == 7  # 8 pixels minus the void one


def test_seg_scores_hand_computed():
    s = seg_scores(confusion(*tiny(), 2), ["background", "crack"])
    # background: tp 3, fn 1, fp 1 -> IoU 3/5, Dice 6/8 ; crack: tp 2, fn 1, fp 1 -> IoU 2/4, Dice 4/6
    assert s["miou"] == pytest.approx(100 * (3 / 5 + 2 / 4) / 2)
    assert s["mean_dice"] == pytest.approx(100 * (6 / 8 + 4 / 6) / 2)
    assert s["pixel_acc"] == pytest.approx(100 * 5 / 7)
    assert s["fg_iou"] == pytest.approx(50.0)
    assert s["fg_dice"] == pytest.approx(100 * 4 / 6)
    assert s["fg_precision"] == pytest.approx(100 * 2 / 3) and s["fg_recall"] == pytest.approx(100 * 2 / 3)
    crack = s["per_class"][1]
    assert crack["class"] == "crack" and crack["support"] == 3
    assert crack["iou"] == pytest.approx(50.0) and crack["dice"] == pytest.approx(100 * 4 / 6)
    assert s["per_class"][0]["support"] == 4


def test_absent_class_excluded_from_means_and_zero_division_is_zero():
    conf = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])  # class 2 neither true nor predicted
    s = seg_scores(conf)
    assert s["miou"] == pytest.approx(100 * (5 / 8 + 2 / 5) / 2)
    assert s["fg_iou"] == pytest.approx(100 * 2 / 5)
    absent = s["per_class"][2]
    assert absent["class"] == 2 and absent["iou"] == absent["precision"] == absent["recall"] == 0.0
    # predicted but never true: IoU 0, counted in the means; recall 0 (no support), precision 0
    s2 = seg_scores(np.array([[3, 1], [0, 0]]))
    assert s2["fg_iou"] == 0.0 and s2["miou"] == pytest.approx(100 * 3 / 4 / 2)
    assert s2["per_class"][1]["recall"] == 0.0 and s2["per_class"][1]["support"] == 0
    empty = seg_scores(np.zeros((2, 2), dtype=np.int64))
    assert empty["miou"] == empty["pixel_acc"] == empty["fg_dice"] == 0.0


def test_confusion_matches_loop_on_random_data():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (3, 10, 12))
    mask[rng.random(mask.shape) < 0.1] = 255
    pred = rng.integers(0, 4, mask.shape)
    want = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(mask.ravel(), pred.ravel(), strict=True):
        if t != 255:
            want[t, p] += 1
    assert np.array_equal(confusion(pred, mask, 4), want)


def test_miou_from_logits():
    pred, mask = tiny()
    logits = np.stack([pred == 0, pred == 1]).astype(np.float32)[None]  # [1, 2, 2, 4]
    assert miou(logits, mask[None]) == pytest.approx(100 * (3 / 5 + 2 / 4) / 2)
    perfect = np.stack([mask == 0, mask == 1]).astype(np.float32)[None]
    assert miou(perfect, mask[None]) == pytest.approx(100.0)


def test_confusion_refuses_bad_input():
    with pytest.raises(DataError, match="outside"):
        confusion(np.zeros((2, 2), dtype=int), np.full((2, 2), 3), 2)
    with pytest.raises(DataError, match="shape"):
        confusion(np.zeros((2, 2), dtype=int), np.zeros((2, 3), dtype=int), 2)


def test_seg_metrics_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgekd.distill.seg_metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
