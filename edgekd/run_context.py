"""What a pipeline stage runs in: the run's options, target, folder, loaded data and earlier stages' results
(``Run``), and this process's rank under torchrun / accelerate. Stages import this, not the pipeline that runs
them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from edgekd.config import RunConfig
from edgekd.targets import Target


@dataclass
class Run:
    """Everything a stage needs: options, target, folders, loaded data, earlier stages' results."""

    cfg: RunConfig
    target: Target
    root: Path
    results: dict[str, Any] = field(default_factory=dict)
    # the running stage's option hash: training folders are named by it, so a killed run resumes its own
    # checkpoints while a changed config never picks up another config's
    stage_key: str = "0"
    # the latency budget's student choice (students.for_run), when the run has a budget
    budget: dict | None = None

    @cached_property
    def data(self):
        from edgekd.data import Loading, load_data

        cfg = self.cfg
        loading = Loading(cfg.num_workers, cfg.image_cache, cfg.image_cache_mb, self.root / "cache")
        return load_data(cfg.data, cfg.image_size, cfg.val_fraction,
                         cfg.seed if cfg.split_seed is None else cfg.split_seed,
                         cfg.max_train_samples, cfg.max_eval_samples, cfg.task, loading)

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))
