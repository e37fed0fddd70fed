"""The parity gate: every exported model against its PyTorch reference on held-out samples."""

from __future__ import annotations

import numpy as np

from edgekd.artifacts import ExportedModel, ParityResult
from edgekd.errors import ConfigError
from edgekd.formats import FORMATS
from edgekd.progress import track
from edgekd.runtimes import runtime_for
from edgekd.runtimes.base import Runtime
from edgekd.targets import ParityThresholds, Target


def run_batches(rt: Runtime, inputs: np.ndarray, batch: int = 50, desc: str | None = None) -> np.ndarray:
    """Outputs of ``rt`` over ``inputs`` (N x C x H x W), batched (graphs are exported with a dynamic batch)."""
    chunks = range(0, len(inputs), batch)
    it = chunks if desc is None else track(chunks, len(chunks), desc)
    return np.concatenate([rt(inputs[i:i + batch]) for i in it])


def parity(model: str, runtime: str, precision: str, executed: str, ref: np.ndarray, out: np.ndarray,
            labels: np.ndarray, th: ParityThresholds) -> ParityResult:
    """Compare logits ``out`` with reference logits ``ref``: classifier [N, C] (top-1 agreement and accuracy) or
    segmenter [N, C, H, W] (pixel agreement of the masks and mIoU against ``labels`` masks), in percent."""
    diff = np.abs(out.astype(np.float64) - ref)
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    num = (out * ref).sum(1)
    cos = float(np.mean(num / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)))
    if ref.ndim == 4:
        from edgekd.distill.seg_metrics import miou

        metric, ref_metric, what = miou(out, labels), miou(ref, labels), "mIoU"
    else:
        metric = float((out.argmax(1) == labels).mean() * 100)
        ref_metric, what = float((ref.argmax(1) == labels).mean() * 100), "accuracy"
    delta = metric - ref_metric
    reasons = []
    if agree < th.min_top1_agreement:
        reasons.append(f"{'pixel' if ref.ndim == 4 else 'top-1'} agreement {agree:.4f} < {th.min_top1_agreement}")
    if th.max_abs_diff is not None and diff.max() > th.max_abs_diff:
        reasons.append(f"max |diff| {diff.max():.3g} > {th.max_abs_diff}")
    if -delta > th.max_metric_drop:
        reasons.append(f"{what} drop {-delta:.2f} points > {th.max_metric_drop}")
    return ParityResult(model=model, runtime=runtime, precision=precision, executed_precision=executed,
                        samples=len(ref), top1_agreement=agree, max_abs_diff=float(diff.max()),
                        mean_abs_diff=float(diff.mean()), cosine=cos, metric=metric, reference_metric=ref_metric,
                        metric_delta=delta, passed=not reasons, reason="; ".join(reasons) or "ok")


def verify_model(exp: ExportedModel, inputs: np.ndarray, labels: np.ndarray, ref: np.ndarray,
                 target: Target) -> ParityResult:
    """Run ``exp`` in its format's runtime (``edgekd/formats.py``) on ``inputs`` and compare with ``ref`` under the
    target's thresholds. A format with a ``verify_samples`` cap is checked on that many first inputs only
    (QONNX: qonnx's node-by-node reference executor takes ~1 s per image); ``ParityResult.samples`` says how
    many."""
    fmt = FORMATS[exp.format]
    runtime, cap = fmt.runtime, fmt.verify_samples
    if cap is not None:
        inputs, labels, ref = inputs[:cap], labels[:cap], ref[:cap]
    with runtime_for(exp.path, runtime, target.threads, target.openvino_inference_precision) as rt:
        out = run_batches(rt, inputs, 8 if ref.ndim == 4 else 50, desc=f"verify {exp.key}")
        executed = rt.executed_precision
    # sub-8-bit weights (QONNX "w4a8") are held to the int8 thresholds: the target has no others
    th = target.parity.get("int8" if exp.precision.startswith("w") else exp.precision)
    if th is None:
        raise ConfigError(f"target {target.name} has no parity thresholds for {exp.precision}")
    return parity(exp.key, runtime, exp.precision, executed, ref, out, labels, th)
