"""The pipeline's stages, declared once: ``STAGES`` is the one ordered list the runner (``pipeline.run``) iterates,
knowing no stage by name. Each stage lives in its own module here and takes the ``Run``, returning a JSON-able
result that the runner caches under RUN/stages/NAME.json, keyed by a hash of the options it depends on chained
onto the hashes of the stages before it.

Light on purpose: the stage functions are imported only when a stage runs, so ``edgekd --help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from edgekd.config import RunConfig
    from edgekd.run_context import Run

# options left out of a stage's hash while unset (None): runs from before they existed stay reusable
UNSET_KEEPS_HASH = frozenset({"sweep", "sweep_epochs", "onnx_exporter", "teacher_precision"})


@dataclass(frozen=True)
class Stage:
    name: str
    deps: tuple[str, ...]  # the RunConfig options its result depends on
    run: str  # "module:function", imported when the stage runs
    result: str  # its result's class in edgekd.results (to_json for the record, from_json on reuse)
    writes: tuple[str, ...] = ()  # its top-level entries in the run folder (what --overwrite clears)
    # distributed runs: "main" = rank 0 alone (the other ranks stop before it), "all" = every rank (training),
    # "shared" = rank 0 runs it and the other ranks wait for its record
    ranks: Literal["main", "all", "shared"] = "main"
    enabled: Callable[[RunConfig], bool] | None = None  # opt-in: off = skipped and left out of the hash chain
    cfg_extra: Callable[[RunConfig], dict] | None = None  # hash inputs derived from the options
    run_extra: Callable[[Run], dict] | None = None  # hash inputs from the run (target, bundle layout, budget)
    models: bool = False  # its result names models that later commands reopen (pipeline.open_run)

    def on(self, cfg: RunConfig) -> bool:
        return self.enabled is None or self.enabled(cfg)

    def options(self, cfg: RunConfig) -> dict[str, Any]:
        """The options that go into this stage's hash (before ``run_extra``)."""
        # options added after runs existed count only when set, so those runs keep their hashes
        opts = {k: getattr(cfg, k) for k in self.deps if k not in UNSET_KEEPS_HASH or getattr(cfg, k) is not None}
        return {**opts, **(self.cfg_extra(cfg) if self.cfg_extra else {})}

    def key(self, r: Run) -> dict[str, Any]:
        """Everything this stage's hash covers in run ``r``."""
        return {**self.options(r.cfg), **(self.run_extra(r) if self.run_extra else {})}

    def function(self) -> Callable[[Run], Any]:
        module, func = self.run.split(":")
        return getattr(importlib.import_module(module), func)

    def load(self, record: Any) -> Any:
        """The typed result from its JSON record."""
        from edgekd import results

        return getattr(results, self.result).from_json(record)


def _distill_beta(cfg: RunConfig) -> dict:
    """dkd's beta from the class count (config.dkd_beta): its rule is an option of the stages that train with it."""
    from edgekd.config import DKD_BETA_RULE, defaulted_dkd_beta, schedule

    return {"dkd_beta": DKD_BETA_RULE} if defaulted_dkd_beta([t for st in schedule(cfg) for t in st.losses]) else {}


def _seg_head(cfg: RunConfig) -> dict:
    """Segmentation models start their new head at the class prior (config.seg_head_prior): in the hash of the
    stages that build models, for segmentation runs only (classification hashes stay as they were)."""
    return {"seg_head_prior": cfg.seg_head_prior} if cfg.task == "segment" else {}


def _distill_extra(cfg: RunConfig) -> dict:
    return {**_distill_beta(cfg), **_seg_head(cfg)}


def _qad_beta(cfg: RunConfig) -> dict:
    from edgekd.config import DKD_BETA_RULE, defaulted_dkd_beta

    return ({"dkd_beta": DKD_BETA_RULE} if cfg.quantize_method == "qad" and defaulted_dkd_beta(list(cfg.qad_losses))
            else {})


def _target(r: Run) -> dict:
    """From export on, results depend on the target too (formats, thresholds, threads)."""
    return {"target": r.target.model_dump(mode="json")}


def _bundle_layout(r: Run) -> dict:
    """A new bundle layout rebuilds an older run's bundle; the manifest and report state the budget and choice."""
    from edgekd.integrity import SCHEMA_VERSION

    out: dict = {"schema_version": SCHEMA_VERSION}
    if r.budget is not None:
        out["budget"] = [r.cfg.budget_ms, r.cfg.budget_fps, r.budget.get("reason")]
    return out


STAGES: tuple[Stage, ...] = (
    Stage("teacher", ("task", "data", "teachers", "teacher_arch", "teacher_epochs", "image_size", "val_fraction",
                      "seed", "teacher_arch_weights", "split_seed", "max_train_samples", "max_eval_samples",
                      "augment", "crop_scale", "mixup", "cutmix", "sampler", "patience", "select_metric",
                      "class_weights", "select_epoch"),
          "edgekd.stages.teacher:teacher", "TeacherResult", writes=("teacher",), ranks="shared", models=True,
          cfg_extra=_seg_head),
    Stage("distill", ("student", "epochs", "batch_size", "lr", "weight_decay", "loss", "temperature", "alpha",
                      "student_weights", "losses", "features", "stages", "optimizer", "warmup_epochs",
                      "select_metric", "augment", "teacher_cache_views", "crop_scale", "mixup", "cutmix", "sampler",
                      "patience", "class_weights", "teacher_check", "stem_stride", "sweep", "sweep_epochs",
                      "select_epoch", "teacher_precision"),
          "edgekd.stages.distill:distill", "StudentResult", writes=("student",), ranks="all", cfg_extra=_distill_extra,
          models=True),
    Stage("export", ("onnx_exporter",), "edgekd.stages.export:export", "ModelsResult", writes=("export",),
          run_extra=_target,
          models=True),
    Stage("quantize", ("calib_samples", "quant_preset", "quantize_method", "quant_ignored_scope", "qad_epochs",
                       "qad_lr", "qad_losses", "max_accuracy_drop", "max_fp32_layers", "teacher_precision"),
          "edgekd.stages.quantize:quantize", "ModelsResult",
          writes=("quantize", "quantize.json", "quantize.json.tmp"),
          cfg_extra=_qad_beta, models=True),
    Stage("verify", ("verify_samples",), "edgekd.stages.verify:verify", "VerifyReport",
          writes=("verify.json", "verify.json.tmp")),
    Stage("bench", ("bench_iters", "bench_warmup"), "edgekd.stages.bench:bench", "BenchResult"),
    # opt-in: skipped, and left out of the chain, when off (runs from before it existed keep their hashes)
    Stage("robustness", ("robustness",), "edgekd.stages.robustness:robustness", "RobustnessResult",
          writes=("robustness.json", "robustness.png"), enabled=lambda cfg: bool(cfg.robustness),
          # records scored before corruptions moved to the distill stage's read size are recomputed
          cfg_extra=lambda cfg: {"corrupted_at": "read size"}),
    Stage("bundle", (), "edgekd.stages.bundle:bundle", "BundleResult", writes=("bundle", "bundle.tmp"),
          run_extra=_bundle_layout),
)

STAGE = {s.name: s for s in STAGES}
