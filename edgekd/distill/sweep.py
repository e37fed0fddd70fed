"""The loss sweep before distilling (issue 20): a small grid of temperature / alpha (/ dkd's beta) values, each
trained briefly from the student's start and scored on validation; the best one is the full run's.

This module holds the pure parts (the grid, the configured values, the winner, the words); the short runs
themselves are ``engine.loss_sweep``, next to the teacher check they resemble.
"""

from __future__ import annotations

import inspect
import itertools

from edgekd.config import LossTerm, StageSpec


def grid(sweep: dict[str, list[float]]) -> list[dict[str, float]]:
    """Every combination of the sweep's values, the first key varying slowest:
    ``{"temperature": [1, 4], "alpha": [0.5, 0.9]}`` -> (1, 0.5), (1, 0.9), (4, 0.5), (4, 0.9)."""
    keys = list(sweep)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweep[k] for k in keys))]


def configured(term: LossTerm, keys) -> dict[str, float]:
    """The values of ``keys`` the run would train with without a sweep: the loss term's own, else its loss's
    defaults (dkd's beta is already in the term, set for the class count by ``config.with_loss_defaults``)."""
    from edgekd.distill.catalog import LOSSES

    sig = inspect.signature(LOSSES.get(term.name).__init__).parameters
    out = {}
    for k in keys:
        if k in term.params:
            out[k] = float(term.params[k])
        elif k in sig and sig[k].default is not inspect.Parameter.empty:
            out[k] = float(sig[k].default)
    return out


def pick(results: list[dict], defaults: dict[str, float]) -> int:
    """The index of the winner among ``results`` ({"params": {...}, "val": score} in grid order): the best
    validation score; among equal scores the configured values (``defaults``) first (the combination that keeps
    the most of them: an equal score is no reason to move away from them), then the smaller temperature, then
    the earlier combination."""
    if not results:
        raise ValueError("no sweep results to pick from")
    best = max(r["val"] for r in results)
    tied = [i for i, r in enumerate(results) if r["val"] == best]

    def key(i: int) -> tuple:
        params = results[i]["params"]
        kept = sum(defaults.get(k) == v for k, v in params.items())
        return (-kept, params.get("temperature", 0.0), i)

    return min(tied, key=key)


def alpha_caution(loss: str, sweep: dict[str, list[float]]) -> str | None:
    """One warning line when a sweep ranks several KD ``alpha`` values (kd, multi_teacher: the hard-label share):
    short runs favour the lower alpha, which need not last. Measured by ``benchmarks/sweep_effect.py`` (CIFAR-10,
    3,000 training images, 30 epochs): sweep runs of 3 or 10 epochs picked alpha 0.5 over the configured 0.9 in 3
    of 5 sweeps, and each of those full runs lost 2.2-2.6 points against 0.9; temperature 4 (configured) won every
    time. ``None`` when there is nothing to say."""
    if loss not in ("kd", "multi_teacher") or len(sweep.get("alpha", ())) < 2:
        return None
    return ("sweep ranks alpha by short runs, which favour the lower alpha (the hard labels are learned faster "
            "early on); on CIFAR-10 that pick lost 2.2-2.6 points at the full schedule (benchmarks/sweep_effect.py). "
            "Sweep temperature only, or check the pick with a full run")


def with_params(stage: StageSpec, params: dict[str, float]) -> StageSpec:
    """The single-loss stage with its loss term's ``params`` replaced (temperature, alpha, beta)."""
    term = stage.losses[0]
    return stage.model_copy(update={"losses": [LossTerm(**{**term.model_dump(), **params})]})


def words(params: dict[str, float]) -> str:
    """``{"temperature": 4.0, "alpha": 0.9}`` -> ``temperature 4, alpha 0.9``."""
    return ", ".join(f"{k} {v:g}" for k, v in params.items())


def slug(params: dict[str, float]) -> str:
    """A folder name for one combination's short run: ``temperature4-alpha0.9``."""
    return "-".join(f"{k}{v:g}" for k, v in params.items())
