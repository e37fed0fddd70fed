"""Segmentation metrics in numpy: a confusion matrix, then mIoU, Dice, pixel accuracy and per-class scores.

The ``fg_*`` scores average over the foreground classes 1..C-1; on binary data (background + crack) they are
the thin class's own scores, which is what matters there (background IoU is ~99 % whatever the model does).
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import DataError


def confusion(pred: np.ndarray, mask: np.ndarray, n_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixel counts [n, n], int64: rows = true class, columns = predicted class; ``ignore_index`` pixels skipped."""
    pred, mask = np.asarray(pred), np.asarray(mask)
    if pred.shape != mask.shape:
        raise DataError(f"prediction shape {pred.shape} differs from mask shape {mask.shape}")
    keep = mask != ignore_index
    truth, guess = mask[keep].astype(np.int64), pred[keep].astype(np.int64)
    for name, v in (("mask", truth), ("prediction", guess)):
        if v.size and (v.min() < 0 or v.max() >= n_classes):
            raise DataError(f"{name} values {v.min()}..{v.max()} outside 0..{n_classes - 1} "
                            f"(and {ignore_index} = ignore)")
    return np.bincount(truth * n_classes + guess, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def _mean(v: np.ndarray, keep: np.ndarray) -> float:
    return float(v[keep].mean()) if keep.any() else 0.0


def seg_scores(conf: np.ndarray, classes: list[str] | None = None) -> dict:
    """Scores in percent from a confusion matrix. Means run over the classes present in truth or prediction
    (union > 0); ``fg_*`` over such classes among 1..C-1. A zero denominator gives 0.0."""
    conf = np.asarray(conf, dtype=np.int64)
    n = conf.shape[0]
    tp = np.diag(conf).astype(np.float64)
    support, predicted = conf.sum(1).astype(np.float64), conf.sum(0).astype(np.float64)
    union = support + predicted - tp
    iou, dice = 100 * _ratio(tp, union), 100 * _ratio(2 * tp, support + predicted)
    precision, recall = 100 * _ratio(tp, predicted), 100 * _ratio(tp, support)
    present = union > 0
    fg = present & (np.arange(n) > 0)
    total = conf.sum()
    names = list(classes) if classes is not None else list(range(n))
    if len(names) != n:
        raise DataError(f"{len(names)} class names for a {n}x{n} confusion matrix")
    return {
        "miou": _mean(iou, present),
        "pixel_acc": float(100 * tp.sum() / total) if total else 0.0,
        "mean_dice": _mean(dice, present),
        "fg_iou": _mean(iou, fg),
        "fg_dice": _mean(dice, fg),
        "fg_precision": _mean(precision, fg),
        "fg_recall": _mean(recall, fg),
        "per_class": [{"class": names[c], "iou": float(iou[c]), "dice": float(dice[c]),
                       "precision": float(precision[c]), "recall": float(recall[c]), "support": int(support[c])}
                      for c in range(n)],
    }


def miou(logits: np.ndarray, masks: np.ndarray) -> float:
    """Mean IoU (percent) of logits [N, C, H, W] against masks [N, H, W] (255 = ignore)."""
    return seg_scores(confusion(np.asarray(logits).argmax(1), masks, logits.shape[1]))["miou"]
