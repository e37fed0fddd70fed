"""Every loss edgekd has, by name. The classification losses (``losses.py``) and the dense ones (``seg_losses.py``)
register into ``LOSSES`` when their module is imported; this module imports both, so a name looked up here is
always known, and neither loss module has to import the other."""

from __future__ import annotations

import edgekd.distill.seg_losses  # noqa: F401 - registers dice_ce, pixel_kd, cwd
from edgekd.distill.losses import LOSSES, Loss
from edgekd.errors import ConfigError

__all__ = ["LOSSES", "build_loss"]


def build_loss(name: str, **kwargs) -> Loss:
    """One loss by name; wrong parameters become one clear line."""
    cls = LOSSES.get(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        import inspect

        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise ConfigError(f"loss {name!r}: {exc}; its parameters are: {', '.join(params) or 'none'}") from None
