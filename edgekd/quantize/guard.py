"""The accuracy guard: keep the most sensitive layers of an int8 model in FP32 until it is within a bound.

Sensitivity is measured, not guessed: for each layer (the quantizers on one op's inputs, weights and outputs,
grouped by the op's name) the guard switches that layer's quantizers off and measures how much closer the
model's outputs come to the FP32 model's (KL divergence on a fixed set of validation images). Layers are then
returned to FP32 in that order, doubling their number, then bisecting to the fewest that meet the bound, with
the validation metric measured at every step. A switched-off quantizer is the identity, so the exported graphs
carry no Q/DQ (or FakeQuantize) for that layer and the runtimes compute it in floating point.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.progress import track
from edgekd.quantize.qad import quantizers

_SUFFIX = re.compile(r"(__\d+)?\.\d+$")


def layer_of(hook_name: str) -> str:
    """``pre_hooks.stages/1/0/conv1_1x1/conv/conv2d/0__1.0`` -> ``stages/1/0/conv1_1x1/conv/conv2d/0``."""
    name = hook_name.split(".", 1)[1] if hook_name.startswith(("pre_hooks.", "post_hooks.")) else hook_name
    return _SUFFIX.sub("", name)


def layer_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    groups: dict[str, list[nn.Module]] = {}
    for name, q in quantizers(model).items():
        groups.setdefault(layer_of(name), []).append(q)
    return groups


def set_fp32(groups: dict[str, list[nn.Module]], layers: list[str], fp32: bool) -> None:
    for layer in layers:
        for q in groups[layer]:
            if fp32:
                q.disable_quantization()
            else:
                q.enable_quantization()


def _kl(model: nn.Module, x: torch.Tensor, ref_logp: torch.Tensor) -> float:
    with torch.no_grad():
        logp = F.log_softmax(model(x).float(), 1)  # classes: dim 1 of [N, C] and [N, C, H, W]
    return float(F.kl_div(logp, ref_logp, log_target=True, reduction="batchmean"))


def rank_layers(model: nn.Module, fp32_logits: torch.Tensor, x: torch.Tensor) -> list[tuple[str, float]]:
    """Layers by how much int8 noise each adds: the KL reduction when that layer alone runs in FP32."""
    groups = layer_groups(model)
    ref = F.log_softmax(fp32_logits.float(), 1)
    model.eval()
    base = _kl(model, x, ref)
    scores = []
    for layer in track(list(groups), len(groups), "rank layers by int8 sensitivity"):
        set_fp32(groups, [layer], True)
        scores.append((layer, base - _kl(model, x, ref)))
        set_fp32(groups, [layer], False)
    return sorted(scores, key=lambda s: -s[1])


@dataclass
class GuardResult:
    met: bool
    fp32_metric: float
    int8_metric: float  # with ``kept`` in FP32
    kept: list[str]
    tried: list[dict] = field(default_factory=list)  # every (k, metric, drop) measured

    @property
    def drop(self) -> float:
        return self.fp32_metric - self.int8_metric


def search(model: nn.Module, ranking: list[tuple[str, float]], evaluate: Callable[[], float], fp32_metric: float,
           max_drop: float, max_layers: int) -> GuardResult:
    """Fewest top-ranked layers in FP32 that bring the drop within ``max_drop``; leaves ``model`` set that way.

    When even ``max_layers`` layers do not suffice, the model is left in the best state seen (the smallest
    drop) and ``met`` is False.
    """
    groups = layer_groups(model)
    order = [name for name, _ in ranking]
    cache: dict[int, float] = {}

    def metric_with(k: int) -> float:
        if k not in cache:
            set_fp32(groups, order, False)
            set_fp32(groups, order[:k], True)
            cache[k] = evaluate()
        return cache[k]

    limit = min(max_layers, len(order))
    k, prev, hi = 0, 0, None
    while True:  # 0, 1, 2, 4, ... layers in FP32 until the bound holds or the limit is reached
        if fp32_metric - metric_with(k) <= max_drop:
            hi = k
            break
        if k >= limit:
            break
        prev, k = k, min(limit, max(1, 2 * k))
    if hi is not None:  # bisect between the last failing count and the first passing one
        lo = prev
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fp32_metric - metric_with(mid) <= max_drop:
                hi = mid
            else:
                lo = mid
        best = hi
    else:
        best = max(cache, key=lambda n: (cache[n], -n))
    set_fp32(groups, order, False)  # leave the model in the chosen state
    set_fp32(groups, order[:best], True)
    tried = [{"fp32_layers": n, "metric": m, "drop": fp32_metric - m} for n, m in sorted(cache.items())]
    return GuardResult(hi is not None, fp32_metric, cache[best], order[:best], tried)
