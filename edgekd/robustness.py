"""Accuracy under ImageNet-C-style corruptions (issue 20): teacher, FP32 student and int8 student on the same
corrupted test images.

The corruptions are the ImageNet-C set (Hendrycks & Dietterich, 2019) as the ``imagecorruptions`` package
implements them (the maintained fork ``imagecorruptions-imaug``), at the published parameters of severities 1-5.
Each is applied to the decoded RGB image (uint8 HxWx3) at the size the distill stage reads images at (the largest
input among student and teachers, never above the images' own size: `edgekd.data.base_preprocess`), before
normalisation, with a seed drawn from (seed, image content, corruption, severity). Every model compared sees the
very same corrupted pixels, resized to its own input as in distillation: a 64 px student on 32 px CIFAR images gets
the corrupted 32 px image upsampled, and the 32 px teacher gets it as it is (corrupting the upsampled 64 px image
instead and shrinking it back for the teacher blurred every image and cost the ResNet-56 11 points clean).
A rerun repeats the corruptions exactly.

Scores: accuracy per corruption and severity; per corruption the mean over severities; mCA (mean corruption
accuracy) the mean over every corruption and severity; relative robustness mCA / clean accuracy.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgekd.corruptions import (  # noqa: F401 - primitives live in the leaf module; re-exported here
    DEFAULT,
    DEFAULT_SAMPLES,
    LIBRARY,
    MIN_SIDE,
    NAMES,
    SEVERITIES,
    corrupt,
    library_version,
    parse_names,
    parse_severities,
)
from edgekd.errors import ConfigError


def image_seed(img: np.ndarray, name: str, severity: int, seed: int = 0) -> int:
    """The seed of one (image, corruption, severity): from the image's pixels, so it does not depend on the
    order or the number of images scored."""
    from edgekd.data.augment import sample_seed

    return sample_seed(seed, zlib.crc32(np.ascontiguousarray(img).tobytes()), NAMES.index(name), severity)


def corrupt_images(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Every image of a uint8 NxHxWx3 batch corrupted, each with its own seed (see :func:`image_seed`)."""
    return np.stack([corrupt(im, name, severity, image_seed(im, name, severity, seed)) for im in images])


# a model to score: (name, runtime, precision, logits of float32 NCHW inputs normalised for the student)
Scorer = tuple[str, str, str, Callable[[np.ndarray], np.ndarray]]


def score(images: np.ndarray, labels: np.ndarray, normalize: Callable[[np.ndarray], np.ndarray],
          models: list[Scorer], names: Sequence[str], severities: Sequence[int], seed: int = 0,
          progress: Callable[[str], None] | None = None) -> dict:
    """Accuracy of every model on ``images`` (uint8 NxHxWx3 at the input size), clean and under each corruption
    and severity. ``normalize`` turns a uint8 image into the float32 3xHxW input. The corrupted batch is made
    once per (corruption, severity) and fed to every model. Returns the report (see :func:`summarize`)."""
    labels = np.asarray(labels)
    correct: dict[str, dict] = {m[0]: {} for m in models}

    def run(batch: np.ndarray, key) -> None:
        x = np.stack([normalize(im) for im in batch]).astype(np.float32)
        for name, _, _, fn in models:
            correct[name][key] = float((np.asarray(fn(x)).argmax(1) == labels).mean() * 100)

    run(images, "clean")
    for c in names:
        for s in severities:
            if progress is not None:
                progress(f"{c} severity {s}")
            run(corrupt_images(images, c, s, seed), (c, s))
    rows = []
    for name, runtime, precision, _ in models:
        acc = correct[name]
        rows.append({"model": name, "runtime": runtime, "precision": precision, "clean": acc["clean"],
                     "accuracy": {c: {str(s): acc[(c, s)] for s in severities} for c in names}})
    return summarize({"samples": int(len(labels)), "seed": seed, "input_size": list(images.shape[1:3]),
                      "library": library_version(), "corruptions": list(names), "severities": list(severities),
                      "models": rows})


def summarize(report: dict) -> dict:
    """Add the means to each model row: per corruption (over severities), per severity (over corruptions), mCA
    (over both) and relative robustness (mCA / clean)."""
    for m in report["models"]:
        acc = m["accuracy"]
        m["corruption_mean"] = {c: float(np.mean(list(v.values()))) for c, v in acc.items()}
        m["severity_mean"] = {str(s): float(np.mean([acc[c][str(s)] for c in acc])) for s in report["severities"]}
        m["mca"] = float(np.mean([a for v in acc.values() for a in v.values()]))
        m["relative"] = m["mca"] / m["clean"] if m["clean"] > 0 else None
    return report


SHORT = {"gaussian_noise": "noise", "shot_noise": "shot", "impulse_noise": "impulse", "defocus_blur": "defocus",
         "glass_blur": "glass", "motion_blur": "motion", "zoom_blur": "zoom", "elastic_transform": "elastic",
         "jpeg_compression": "JPEG", "speckle_noise": "speckle", "gaussian_blur": "gauss blur"}


def markdown(report: dict) -> str:
    """The table: one row per model; clean, each corruption's mean over severities, mCA and mCA / clean."""
    names = report["corruptions"]
    head = ["model", "runtime", "clean %"] + [f"{SHORT.get(c, c)} %" for c in names] + ["mCA %", "mCA / clean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in report["models"]:
        rel = "-" if m["relative"] is None else f"{m['relative']:.3f}"
        cells = [m["model"], f"{m['runtime']} {m['precision']}", f"{m['clean']:.2f}"]
        cells += [f"{m['corruption_mean'][c]:.2f}" for c in names] + [f"{m['mca']:.2f}", rel]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption(report: dict) -> str:
    sev = report["severities"]
    run = len(sev) > 1 and sev == list(range(sev[0], sev[-1] + 1))
    sevs = f"{sev[0]}-{sev[-1]}" if run else ",".join(map(str, sev))
    h, w = report["input_size"]
    return (f"Top-1 % on {report['samples']} test images at {h}x{w}, clean and under {len(report['corruptions'])} "
            f"ImageNet-C corruptions ({report['library']}), each the mean over severities {sevs}; mCA: mean over "
            f"every corruption and severity; seed {report['seed']}.")


def plot(report: dict, out: Path) -> Path:
    """Accuracy vs severity, one line per model: the mean over corruptions, then one panel per corruption
    (severity 0 = clean)."""
    from edgekd.report import _plt

    plt = _plt()
    names = report["corruptions"]
    panels = ["mean over corruptions", *names]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.6), squeeze=False, sharey=True)
    xs = [0, *report["severities"]]
    for k, title in enumerate(panels):
        ax = axes[k // cols][k % cols]
        for i, m in enumerate(report["models"]):
            src = m["severity_mean"] if k == 0 else m["accuracy"][title]
            ys = [m["clean"], *(src[str(s)] for s in report["severities"])]
            ax.plot(xs, ys, marker="o", ms=3, color=f"C{i % 10}", label=f"{m['model']} ({m['precision']})")
        ax.set_title(title if k == 0 else SHORT.get(title, title), fontsize=9)
        ax.set_xticks(xs, ["clean", *map(str, report["severities"])], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel("top-1 %", fontsize=8)
    for k in range(len(panels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
    fig.suptitle(f"Accuracy under corruptions ({report['samples']} test images; x: severity)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07 + 0.02 * (len(labels) > 3), 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def write(report: dict, json_path: Path | None, plot_path: Path | None) -> dict:
    """Write the JSON and the plot (each when a path is given); returns the paths written."""
    from edgekd.errors import writing

    out = {}
    if json_path is not None:
        with writing(json_path):
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=2))
        out["json"] = str(json_path)
    if plot_path is not None:
        with writing(plot_path):
            plot(report, plot_path)
        out["plot"] = str(plot_path)
    return out


def _batched(fn: Callable[[np.ndarray], np.ndarray], step: int = 50) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.concatenate([np.asarray(fn(x[i:i + step])) for i in range(0, len(x), step)])


def _torch_fn(teacher) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return teacher(torch.from_numpy(x)).float().numpy()

    return fn


def read_preprocess(r):
    """The Preprocess the run's test images are read (and corrupted) at: the distill stage's read size."""
    from edgekd.data import base_preprocess

    pre = r.data.preprocess
    sides = [pre.size[0]] + [c["view"]["size"][0] for c in r.results["teacher"].teachers]
    return base_preprocess(r.data, sides)


def _resized(fn: Callable[[np.ndarray], np.ndarray], src, dst) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` (a model at the ``dst`` view) fed batches normalised for the ``src`` view, resized as in training."""
    if src == dst:
        return fn
    import torch

    from edgekd.distill.teachers import to_view

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fn(np.ascontiguousarray(to_view(torch.from_numpy(x), src, dst).numpy()))

    return run


def run_scorers(r, stack, only: Sequence[str] | None = None, src=None) -> list[Scorer]:
    """The models of a finished run, opened on ``stack`` (an ExitStack): its teachers (PyTorch or ONNX) and every
    FP32 / int8 export with a runtime here, each fed batches normalised for the ``src`` Preprocess (default: the
    student's) and resized to its own input as in distillation. ``only``: keys to keep (``teacher``,
    ``onnx-fp32``, ``openvino-int8``...)."""
    from edgekd.distill.engine import load_teachers
    from edgekd.distill.teachers import View
    from edgekd.formats import timed_runtime
    from edgekd.runtimes import runtime_for

    res = r.results
    found: list[tuple[str, Scorer]] = []
    cards = res["teacher"].teachers
    src_view, student_view = View.of(src or r.data.preprocess), View.of(r.data.preprocess)
    for k, (card, t) in enumerate(zip(cards, load_teachers(cards, r.data, src_view), strict=True)):
        key = "teacher" if len(cards) == 1 else f"teacher{k}"
        runtime = "onnxruntime" if card["kind"] == "onnx" else "torch"
        found.append((key, (f"teacher {card['arch']}", runtime, "fp32", _batched(_torch_fn(t)))))
    for exp in res["export"] + res["quantize"]:
        runtime = timed_runtime(exp.format)
        if runtime is None:
            continue
        if only is not None and exp.key not in only:
            continue
        rt = stack.enter_context(runtime_for(exp.path, runtime, r.target.threads,
                                             r.target.openvino_inference_precision))
        found.append((exp.key, (f"student {res['distill'].arch} {exp.key}", runtime,
                                exp.precision, _batched(_resized(rt, src_view, student_view)))))
    if only is not None:
        unknown = [k for k in only if k not in {key for key, _ in found}]
        if unknown:
            have = ", ".join(key for key, _ in found)
            raise ConfigError(f"--models: {', '.join(unknown)} not in this run; it has {have}")
    return [s for key, s in found if only is None or key in only]


def score_run(r, names: Sequence[str], severities: Sequence[int], samples: int = DEFAULT_SAMPLES, seed: int = 0,
              only: Sequence[str] | None = None) -> dict:
    """Score a finished run's teacher and exported students on its first ``samples`` test images (class-balanced,
    as verify picks them) under each corruption and severity."""
    from contextlib import ExitStack

    from edgekd.progress import console

    if r.cfg.task != "classify":
        raise ConfigError("corruption scoring covers classifiers; this run is a segmentation run")
    pre = read_preprocess(r)
    if min(pre.size) < MIN_SIDE:
        raise ConfigError(f"corruptions need images of at least {MIN_SIDE}x{MIN_SIDE}; this run reads them at "
                          f"{pre.size[0]}x{pre.size[1]}")
    src = r.data.test.head(samples)
    images = np.stack([pre.resize(src.image(i)) for i in range(len(src))])
    with ExitStack() as stack:
        models = run_scorers(r, stack, only, pre)
        console.print(f"robustness: {len(models)} models x {len(names)} corruptions x {len(severities)} severities "
                      f"on {len(images)} test images ({library_version()})")
        total, done = len(names) * len(severities), [0]

        def progress(what: str) -> None:
            done[0] += 1
            console.print(f"  [{done[0]}/{total}] {what}", highlight=False)

        return score(images, src.labels, pre.normalize, models, names, severities, seed, progress)
