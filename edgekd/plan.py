"""What a training stage is about to do, said in words before it starts (one console line), and the few words
that follow a test report. Torch-free: counts come from the data's label arrays."""

from __future__ import annotations

import numpy as np

from edgekd.distill.metrics import METRIC_LABEL

LIST_CLASSES = 6  # up to this many classes are listed with their counts; beyond, the smallest and largest
LIST_F1 = 12  # up to this many classes are listed in the per-class F1 line; beyond, the weakest ones


def class_counts(data) -> dict[str, int]:
    """Training images per class (classification; in class order)."""
    n = np.bincount(np.asarray(data.train.labels, np.int64), minlength=len(data.classes))
    return {c: int(k) for c, k in zip(data.classes, n.tolist(), strict=False)}


def _counts_words(counts: dict[str, int]) -> str:
    if len(counts) <= LIST_CLASSES:
        return ", ".join(f"{c} {n}" for c, n in counts.items()) + " in train"
    (small, ns), (big, nb) = min(counts.items(), key=lambda kv: kv[1]), max(counts.items(), key=lambda kv: kv[1])
    return f"{ns}-{nb} per class in train: {small} fewest, {big} most"


def _epochs_words(epochs: int, patience: int, keep: str) -> str:
    n = f"{epochs} epoch{'s' * (epochs != 1)}"
    if keep == "then":
        return f"{n} (keeps the last; the next stage goes on from it)"
    if keep == "last":
        return f"{n} (keeps the last)"
    if 0 < patience < epochs:
        return f"up to {n} (early stop after {patience} without improvement)"
    return n


def plan_line(what: str, data, epochs: int, batch: int, select: str, patience: int = 0, keep: str = "best",
              extra: list[str] | None = None) -> str:
    """One line: ``what`` (e.g. "teacher mobilevit_s") on which data, for how long, how the epoch is chosen
    (``keep``: ``best`` by ``select``, ``last``, or ``then``: the last, for the next stage to go on from)."""
    seg = data.task == "segment"
    unit = "image-mask pairs" if seg else "images"
    parts = [f"plan: {what} on {len(data.train)} train / {len(data.val)} val / {len(data.test)} test {unit}"
             + ("" if seg else f" ({_counts_words(class_counts(data))})")]
    h, w = data.preprocess.size
    parts.append(f"{len(data.classes)} classes")
    parts.append(f"input {h} px" if h == w else f"input {h}x{w} px")
    parts.append(_epochs_words(epochs, patience, keep))
    parts.append(f"batch {batch}")
    parts += extra or []
    if keep == "best":
        parts.append(f"select by {METRIC_LABEL.get(select, select)}")
    return ", ".join(parts)


def weights_words(weights, classes: list[str]) -> str:
    """How the class weights of a weighted cross-entropy read in a plan line."""
    w = [float(x) for x in weights]
    if len(w) <= LIST_CLASSES:
        return "class-weighted CE (" + ", ".join(f"{c} {x:.2f}" for c, x in zip(classes, w, strict=True)) + ")"
    return f"class-weighted CE (weights {min(w):.2f}-{max(w):.2f})"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``1 h 05 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta_line(seconds_per_epoch: float, epochs_left: int, epochs: int, may_stop: bool) -> str:
    """The estimated time left after the first epoch."""
    more = ", fewer if it stops early" if may_stop else ""
    return (f"  ~{duration(seconds_per_epoch * epochs_left)} left at {seconds_per_epoch:.1f} s/epoch "
            f"({epochs_left} more of {epochs} epochs{more})")


def per_class_f1_line(rows: list[dict]) -> str:
    """``per-class F1: ants 91.2, bees 88.0`` from a classification test report's ``per_class`` rows."""
    if len(rows) <= LIST_F1:
        return "per-class F1: " + ", ".join(f"{r['class']} {r['f1']:.1f}" for r in rows)
    low = sorted(rows, key=lambda r: r["f1"])[:LIST_F1 // 2]
    return (f"per-class F1 (the {len(low)} lowest of {len(rows)}): " + ", ".join(f"{r['class']} {r['f1']:.1f}"
                                                                             for r in low)
            + f"; median {float(np.median([r['f1'] for r in rows])):.1f}")
