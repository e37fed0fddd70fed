"""Classification metrics in numpy: top-1, macro-F1 and a per-class report (for imbalanced sets)."""

from __future__ import annotations

import numpy as np

METRIC_LABEL = {"top1": "top-1", "macro_f1": "macro-F1", "miou": "mIoU"}  # how each task metric is printed


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(1) == labels).mean() * 100)


def per_class(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> list[dict]:
    """Precision, recall, F1 (percent) and support of each class."""
    rows = []
    for c in range(n_classes):
        tp = int(((pred == c) & (labels == c)).sum())
        fp, fn = int(((pred == c) & (labels != c)).sum()), int(((pred != c) & (labels == c)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"class": c, "precision": 100 * p, "recall": 100 * r, "f1": 100 * f1, "support": tp + fn})
    return rows


def macro_f1(logits: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over classes present in ``labels`` or predicted (percent)."""
    n = n_classes or logits.shape[1]
    pred = logits.argmax(1)
    rows = [r for r in per_class(pred, labels, n) if r["support"] or (pred == r["class"]).any()]
    return float(np.mean([r["f1"] for r in rows])) if rows else 0.0


def report(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    pred = logits.argmax(1)
    rows = per_class(pred, labels, len(classes))
    for r in rows:
        r["class"] = classes[r["class"]]
    return {"top1": top1(logits, labels), "macro_f1": macro_f1(logits, labels, len(classes)), "per_class": rows}
