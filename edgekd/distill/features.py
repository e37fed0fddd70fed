"""Tap intermediate features of a model by module name and bring them to NCHW maps.

CNN stages give NCHW maps, Swin stages give NHWC maps, ViTs give token sequences [B, N, C] (with class or
register tokens in front). ``to_map`` turns all three into NCHW so one adapter and one loss serve all of them.
"""

from __future__ import annotations

import difflib
import math

import torch
from torch import nn

from edgekd.errors import ConfigError

LAYOUTS = ("auto", "nchw", "nhwc", "tokens")


def to_map(x: torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """A feature tensor -> [B, C, H, W]. ``auto``: 3-D is tokens, 4-D is NCHW (say ``nhwc`` for Swin)."""
    if layout == "auto":
        layout = "tokens" if x.dim() == 3 else "nchw"
    if layout == "nchw" and x.dim() == 4:
        return x
    if layout == "nhwc" and x.dim() == 4:
        return x.permute(0, 3, 1, 2)
    if layout == "tokens" and x.dim() == 3:
        b, n, c = x.shape
        for extra in (0, 1, 2, 4, 5):  # none, class, class + distillation, registers (+ class) lead
            side = math.isqrt(max(0, n - extra))
            if side * side == n - extra:
                return x[:, extra:].transpose(1, 2).reshape(b, c, side, side)
        raise ConfigError(f"cannot arrange {n} tokens on a square grid; tap a layer with a square token count")
    raise ConfigError(f"a {x.dim()}-D feature cannot have layout {layout!r} (expected 4-D NCHW/NHWC or 3-D tokens)")


class FeatureTap:
    """Forward hooks on named modules; ``maps()`` returns the last outputs as NCHW maps, in the given order."""

    def __init__(self, model: nn.Module, layers: list[str], layouts: list[str], owner: str) -> None:
        modules = dict(model.named_modules())
        for name in layers:
            if name not in modules:
                close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
                hint = f"; close: {', '.join(close)}" if close else ""
                raise ConfigError(f"{owner} has no layer {name!r}{hint} (list them with `edgekd layers`)")
        self.layouts = layouts
        self._out: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in layers]
        self.layers = layers

    def _hook(self, name: str):
        def hook(_m, _inp, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            self._out[name] = out

        return hook

    def maps(self) -> list[torch.Tensor]:
        return [to_map(self._out[n], lay) for n, lay in zip(self.layers, self.layouts, strict=True)]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def layer_table(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str, str]]:
    """(name, module type, output shape) for every named module, from one forward pass of ``x``."""
    shapes: dict[str, str] = {}
    handles = []
    for name, m in model.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            t = out[0] if isinstance(out, (tuple, list)) and out else out
            shapes[name] = "x".join(str(d) for d in t.shape) if isinstance(t, torch.Tensor) else "-"

        handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return [(n, type(m).__name__, shapes.get(n, "-")) for n, m in model.named_modules() if n]
