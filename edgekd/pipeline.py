"""pipeline.run: teacher -> distill -> export -> quantize -> verify -> bench -> bundle.

Each stage is a function ``(Run) -> JSON-able result``. Results are cached in ``RUN/stages/<stage>.json``
with a hash of the options that stage depends on, chained through the stages before it, so a rerun after a
kill (or with a changed option) redoes only the stages it must.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from edgekd.config import RunConfig
from edgekd.errors import ConfigError
from edgekd.progress import console
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


# (stage name, options it depends on, function); imported lazily so `edgekd --help` stays fast
STAGE_DEPS: list[tuple[str, tuple[str, ...]]] = [
    ("teacher", ("task", "data", "teachers", "teacher_arch", "teacher_epochs", "image_size", "val_fraction", "seed",
                 "teacher_arch_weights", "split_seed", "max_train_samples", "max_eval_samples", "augment",
                 "crop_scale", "mixup", "cutmix", "sampler", "patience", "select_metric", "class_weights")),
    ("distill", ("student", "epochs", "batch_size", "lr", "weight_decay", "loss", "temperature", "alpha",
                 "student_weights",
                 "losses", "features", "stages", "optimizer", "warmup_epochs", "select_metric", "augment",
                 "teacher_cache_views", "crop_scale", "mixup", "cutmix", "sampler", "patience", "class_weights")),
    ("export", ()),
    ("quantize", ("calib_samples", "quant_preset", "quantize_method", "quant_ignored_scope", "qad_epochs", "qad_lr",
                  "qad_losses", "max_accuracy_drop", "max_fp32_layers")),
    ("verify", ("verify_samples",)),
    ("bench", ("bench_iters", "bench_warmup")),
    ("bundle", ()),
]


def _stages() -> dict[str, Callable[[Run], Any]]:
    from edgekd import stages

    return {"teacher": stages.teacher, "distill": stages.distill, "export": stages.export,
            "quantize": stages.quantize, "verify": stages.verify, "bench": stages.bench, "bundle": stages.bundle}


def prepare_run_dir(root: Path, overwrite: bool) -> None:
    """Create or reuse a run folder; never delete anything that is not an edgekd run."""
    marker = root / "run.json"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not marker.is_file():
        raise ConfigError(f"--out {root} exists and is not an edgekd run folder; choose another --out")
    if overwrite and marker.is_file():
        shutil.rmtree(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {root} is not writable ({exc.strerror})") from exc


def rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def _wait_for(cache: Path, chain: str, poll_s: float = 2.0) -> Any:
    """Other ranks wait (without a collective timeout) for rank 0 to finish a stage."""
    import time

    while True:
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("hash") == chain:
                return saved["result"]
        time.sleep(poll_s)


def run(cfg: RunConfig, target: Target, root: Path, overwrite: bool = False, until: str | None = None) -> Run:
    """Run the stages in order (up to ``until``), reusing cached results whose options did not change."""
    from edgekd.config import resolve, resolve_for_data
    from edgekd.stages import preflight

    given = cfg
    cfg = resolve(cfg, target.device)  # the task's defaults, written to run.json as used
    r = Run(cfg, target, root)
    preflight(r)
    main = rank() == 0
    if main:
        prepare_run_dir(root, overwrite)
    if cfg.task == "classify" and given.select_metric is None:  # defaults that depend on the (loaded) data
        from edgekd.plan import class_counts

        cfg, notes = resolve_for_data(cfg, class_counts(r.data))
        r.cfg = cfg  # what the data loaded with is unchanged: resolve_for_data sets no data option
        for line in notes:
            console.print(line, soft_wrap=True, markup=False)
    if main:
        (root / "run.json").write_text(json.dumps({"config": cfg.model_dump(mode="json"), "target": target.name},
                                                  indent=2))
    funcs = _stages()
    chain = ""
    for name, deps in STAGE_DEPS:
        opts = {k: getattr(cfg, k) for k in deps}
        if name == "export":  # from export on, results depend on the target too (formats, thresholds, threads)
            opts["target"] = target.model_dump(mode="json")
        if name == "bundle":  # a new bundle layout rebuilds an older run's bundle instead of reusing it
            from edgekd.integrity import SCHEMA_VERSION

            opts["schema_version"] = SCHEMA_VERSION
        chain = hashlib.sha256((chain + name + json.dumps(opts, default=str, sort_keys=True)).encode()).hexdigest()
        cache = root / "stages" / f"{name}.json"
        if not main and name != "distill":  # distributed run: rank 0 does everything but the training itself
            if name != "teacher":
                break
            r.results[name] = _wait_for(cache, chain)
            continue
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("hash") == chain:
                console.print(f"[green]✓[/] {name}: reused (options unchanged)")
                r.results[name] = saved["result"]
                if name == until:
                    break
                continue
        console.rule(f"[bold]{name}")
        r.stage_key = chain[:12]
        r.results[name] = funcs[name](r)
        if not main:
            break
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"hash": chain, "result": r.results[name]}, indent=2))
        os.replace(tmp, cache)
        if name == until:
            break
    return r
