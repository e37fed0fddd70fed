"""RunConfig: every option of a pipeline run, validated (extra keys rejected). Recipes are YAML of it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from edgekd.errors import ConfigError, reason

# fewer validation images than this on a classification folder: the best epoch is chosen by noise (one image moves
# the score by more than a point; 24 images, hymenoptera's 10 %, move it in 4.2-point steps), so `select_epoch`
# defaults to the last epoch and early stopping is off (docs/data.md, "Defaults that fit the data")
MIN_SELECT_VAL = 100
CLASSIFY_PATIENCE = 10  # default early-stopping patience on a classification folder (see RunConfig.patience)
IMBALANCE_RATIO = 2.0  # the largest training class has >= this many times the images of the smallest: imbalanced
SWEEP_KEYS = ("temperature", "alpha", "beta")  # what `sweep:` may tune (beta: dkd only)
SWEEP_LOSSES = ("kd", "dkd", "multi_teacher")  # the losses a sweep tunes
SWEEP_EPOCHS_MAX = 3  # the default sweep_epochs: a fifth of the student's epochs, at least 1, at most this
# DKD's NCKD weight when none is given (dkd_beta): DKD_BETA at >= DKD_BETA_CLASSES classes, scaled down below
DKD_BETA, DKD_BETA_CLASSES = 8.0, 100
DKD_BETA_RULE = "8 * log(C - 1) / log(99), 1..8"  # in the distill stage's option hash: a new rule retrains


class TeacherSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str = Field(description="timm:NAME, edgekd:NAME (cifar_resnet56...) or onnx:PATH")
    weights: Path | None = Field(default=None, description="safetensors or state_dict checkpoint; or imagenet, none, "
                                 "hf-hub:ORG/NAME (default: timm's pretrained weights, required)")
    image_size: PositiveInt | None = Field(default=None, description="teacher input side (default: the ONNX "
                                           "file's static size, else the student's)")
    mean: tuple[float, float, float] | None = Field(default=None, description="default: ImageNet")
    std: tuple[float, float, float] | None = None
    weight: PositiveFloat = Field(default=1.0, description="fixed multi-teacher weight (normalised over teachers)")


class LossTerm(BaseModel):
    """One weighted loss of a stage; any other key is a parameter of the loss (e.g. temperature)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    weight: float = Field(default=1.0, ge=0)
    ramp_epochs: float = Field(default=0.0, ge=0, description="weight rises linearly from 0 over these epochs")

    @property
    def params(self) -> dict:
        return dict(self.model_extra or {})


class FeaturePair(BaseModel):
    """A student layer aligned to a teacher layer (module names, see `edgekd layers`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student: str
    teacher: str
    teacher_index: NonNegativeInt = Field(default=0, description="which teacher (order of `teachers`)")
    student_layout: Literal["auto", "nchw", "nhwc", "tokens"] = "auto"
    teacher_layout: Literal["auto", "nchw", "nhwc", "tokens"] = "auto"


class StageSpec(BaseModel):
    """One step of a progressive schedule: its own epochs, losses and (optionally) learning rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    epochs: PositiveInt
    losses: list[LossTerm] = Field(min_length=1)
    lr: PositiveFloat | None = None


class RobustnessSpec(BaseModel):
    """`robustness:` of a recipe: score the teacher and the exported students under ImageNet-C corruptions after
    verify (edgekd.robustness); ``true`` takes these defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corruptions: list[str] | None = Field(default=None, description="ImageNet-C names, or [all] (default: "
                                          "gaussian_noise, defocus_blur, motion_blur, contrast, jpeg_compression, fog)")
    severities: list[int] = Field(default=[1, 2, 3, 4, 5], description="each 1-5")
    samples: PositiveInt = Field(default=200, description="test images scored (class-balanced)")
    seed: int = 0

    @field_validator("corruptions")
    @classmethod
    def _names(cls, v):
        from edgekd.corruptions import parse_names

        try:
            return None if v is None else parse_names(v, "corruptions")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("severities")
    @classmethod
    def _severities(cls, v):
        from edgekd.corruptions import parse_severities

        try:
            return parse_severities(v, "severities")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


def check_sweep_grid(v: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
    """The loss-independent checks of a `sweep:` grid: known keys, non-empty lists, no value twice, in range."""
    if v is None:
        return None
    if not v:
        raise ValueError(f"sweep is empty; give option -> values for {', '.join(SWEEP_KEYS[:2])} (beta with dkd)")
    for key, values in v.items():
        if key not in SWEEP_KEYS:
            raise ValueError(f"sweep cannot tune {key!r}; it takes temperature, alpha (and beta with loss dkd)")
        if not values:
            raise ValueError(f"sweep {key}: give at least one value")
        twice = sorted({x for x in values if values.count(x) > 1})
        if twice:
            raise ValueError(f"sweep {key}: {twice[0]:g} is given twice")
        if key == "temperature" and min(values) <= 0:
            raise ValueError(f"sweep temperature: every value must be above 0 (got {min(values):g})")
        if min(values) < 0:
            raise ValueError(f"sweep {key}: every value must be 0 or more (got {min(values):g})")
    return {k: [float(x) for x in vals] for k, vals in v.items()}


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    task: Literal["classify", "segment"] = "classify"
    data: str = "builtin:shapes10"
    teachers: list[TeacherSpec] = Field(default_factory=list)
    teacher_arch: str | None = Field(default=None, description="model trained when no teacher is given (default: "
                                     "mobilevit_s; segment: unet_plain32)")
    teacher_arch_weights: str = Field(default="auto", min_length=1, description="start of that teacher: auto | "
                                      "imagenet | none | hf-hub:ORG/NAME | a weights file (models/pretrained.py)")
    teacher_epochs: PositiveInt | None = Field(
        default=None, description="epochs of a teacher trained or fine-tuned here (default: the student's `epochs` on "
        "a classification folder, early stopping cutting it short; 60 for builtin:shapes10 and segmentation)")
    patience: NonNegativeInt | None = Field(
        default=None, description="stop training (the teacher, and the schedule's last stage) after this many "
                                  "epochs without a better validation score; the best epoch is kept. 0 = off. "
                                  f"Default: {CLASSIFY_PATIENCE} on a classification folder (its small validation "
                                  f"split moves in steps of a few percent; {CLASSIFY_PATIENCE} epochs ride out that "
                                  "noise and the plateau before the cosine schedule's low-LR end, and still cut a "
                                  "60-epoch teacher short once it has stopped learning); off for builtin:shapes10 "
                                  "(the demo and its published numbers) and for segmentation (small U-Nets sat "
                                  "on flat validation mIoU for 13-22 epochs in the CrackForest runs, see "
                                  "docs/segmentation.md)")
    seg_head_prior: bool = Field(
        default=True, description="segmentation: a model whose head is new (random start, ImageNet encoder) starts "
        "it at the training masks' pixel shares (bias log p, near-zero weights; RetinaNet's prior initialisation), "
        "so a thin class does not start as every pixel; false: the head's random start")
    stem_stride: PositiveInt | None = Field(
        default=None, description="stride of the student's first convolution (a timm classifier's first_conv); 1 "
        "keeps small inputs (CIFAR's 32 px) at full resolution through the stem instead of upsampling them 2x; "
        "default: the architecture's own (2 for most)")
    onnx_exporter: Literal["torchscript", "dynamo"] | None = Field(
        default=None, description="which torch exporter writes the FP32 ONNX every other format derives from: "
        "dynamo (the default: torch.export + onnxscript, opset 18; 4-14 s per export here) or torchscript (the "
        "legacy exporter, opset 17, under 1 s per export). Both name nodes by module path "
        "(/layer1/layer1.0/conv1/Conv), which quant_ignored_scope matches; see docs/export.md")
    teacher_check: NonNegativeInt | None = Field(
        default=None, description="epochs of a labels-only probe student whose best validation score the teacher "
        "must beat before distilling (one warning line when it does not; the student itself is untouched). 0 = off. "
        "Default: a tenth of the student's epochs, at most 3, on a user's data (off under 10 epochs); off for "
        "builtin:shapes10")
    student: str | None = Field(default=None, description="default: mobilevit_xxs; segment: "
                                "unet_mobilenetv3_large_100, or unet_plain16 on FPGA targets")
    budget_ms: PositiveFloat | None = Field(
        default=None, description="batch-1 latency budget on the target: without `student`, the student is the "
        "largest of `candidates` that passes the target's pre-flight and meets it (edgekd students: measured here "
        "for CPU targets, estimated for boards); with `student`, a miss is reported. Not with budget_fps")
    budget_fps: PositiveFloat | None = Field(default=None, description="the budget as frames per second "
                                             "(1000 / FPS ms, batch 1); not with budget_ms")
    candidates: list[str] = Field(default_factory=list, description="students considered for the budget "
                                  "(default: the task's curated list, see edgekd students); +NAME entries add to it")
    budget_int8: bool = Field(default=False, description="CPU targets: also time NNCF int8 of each candidate "
                              "(random calibration, latency only) instead of FP32 alone, an upper bound of the "
                              "fastest-policy deploy")
    student_weights: str = Field(default="auto", min_length=1, description="the student's start: auto (timm's "
                                 "pretrained weights when reachable, else random with a warning) | imagenet | none | "
                                 "hf-hub:ORG/NAME | a weights file; unet_<encoder>: the encoder's")
    image_size: PositiveInt | None = Field(default=None, description="input side (segment: the long side, the "
                                           "images' aspect kept)")
    epochs: PositiveInt = 8
    batch_size: PositiveInt | None = Field(default=None, description="default 64; segment 8")
    lr: PositiveFloat = 2e-3
    weight_decay: float = Field(default=0.05, ge=0)
    loss: str | None = Field(default=None, description="shorthand for one loss term (kd, ce, dkd, multi_teacher; "
                             "segment: pixel_kd, dice_ce, cwd...); default kd, segment pixel_kd")
    temperature: PositiveFloat | None = Field(default=None, description="of kd / pixel_kd (default 4; segment 1)")
    alpha: float | None = Field(default=None, ge=0, le=1, description="soft-target share (default 0.9; segment 0.5)")
    losses: list[LossTerm] = Field(default_factory=list, description="weighted loss terms (overrides `loss`)")
    sweep: dict[str, list[float]] | None = Field(
        default=None, description="tune the loss on validation before the full run: a grid of option -> values "
        "({temperature: [1, 2, 4], alpha: [0.5, 0.9]}; beta too with dkd); every combination trains the student "
        "from its start for sweep_epochs, the best validation score wins (ties: the configured values, then the "
        "smaller temperature) and the full run uses it. Single-stage kd, dkd or multi_teacher only")
    sweep_epochs: PositiveInt | None = Field(
        default=None, description=f"epochs of each sweep run (default: a fifth of `epochs`, at least 1, at most "
                                  f"{SWEEP_EPOCHS_MAX})")
    features: list[FeaturePair] = Field(default_factory=list, description="layer pairs for hint / attention")
    stages: list[StageSpec] = Field(default_factory=list, description="progressive schedule (overrides epochs)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    warmup_epochs: float = Field(default=1.0, ge=0)
    select_epoch: Literal["best", "last"] | None = Field(
        default=None, description="the epoch whose weights a training keeps (teacher and student): best (by "
        "select_metric on validation; early stopping needs it) or last. Default best, except on a classification "
        f"folder whose validation split has fewer than {MIN_SELECT_VAL} images: last, early stopping off (the best "
        "epoch by so few images is noise)")
    select_metric: Literal["top1", "macro_f1", "miou"] | None = Field(
        default=None, description="validation metric that picks the best epoch (default top1, or macro_f1 when the "
                                  "largest training class has >= 2x the smallest's images; segment miou)")
    class_weights: Literal["none", "balanced"] = Field(
        default="none", description="balanced: the hard-label cross-entropy of the teacher's training and of the "
                                    "student's losses (ce, kd's CE term, dkd's CE term) weighs each class inversely "
                                    "to its training images (weights normalised to mean 1); classification only")
    augment: bool | Literal["none", "light", "standard", "strong"] | list[dict] | None = Field(
        default=None, description="training augmentation: a preset (none, light = flip + pad-crop, standard = "
        "random-resized crop + flip + colour jitter + erasing, strong = + TrivialAugment), true (= light) or a list "
        "of torchvision v2 transforms ({name: RandomResizedCrop, scale: [0.5, 1]}); default standard for folder "
        "data, none for builtin:shapes10")
    crop_scale: tuple[float, float] | None = Field(
        default=None, description="area range of the presets' random-resized crop (standard: 0.35-1)")
    mixup: float = Field(default=0.0, ge=0, description="MixUp alpha (0 = off); the teacher sees the mixed image")
    cutmix: float = Field(default=0.0, ge=0, description="CutMix alpha (0 = off); with mixup too, one per batch")
    sampler: Literal["random", "balanced"] = Field(
        default="random", description="balanced: every class equally likely per draw (imbalanced sets)")
    num_workers: NonNegativeInt | None = Field(
        default=None, description="loader worker processes (default: the cores available, at most 8)")
    image_cache: Literal["auto", "memory", "disk", "off"] = Field(
        default="auto", description="decode and resize every image once: in memory within image_cache_mb, else a "
        "memory-mapped file in the run folder (auto); off decodes every epoch")
    image_cache_mb: NonNegativeInt = 2048
    teacher_cache_views: NonNegativeInt = Field(
        default=0, description="with augment: draw each image from this many fixed views (flip x crop) and run "
                               "the teachers once per view instead of every epoch; 0 = fully random, teacher online")
    teacher_precision: Literal["fp32", "bf16", "int8"] | None = Field(
        default=None, description="what the teachers run at while they teach (distill, QAD): fp32 (default) "
        "onnxruntime for ONNX teachers; bf16: ONNX teachers in OpenVINO with a bf16 hint (AVX-512 BF16 / AMX CPUs; "
        "elsewhere f32), PyTorch teachers under bf16 autocast; int8: ONNX teachers quantized by NNCF PTQ on "
        "calib_samples training images, in OpenVINO. Makes an online teacher cheaper; its scores are recorded")
    seed: int = 0
    split_seed: int | None = Field(default=None, description="seed of the train/val/test split of a folder without "
                                   "one (default: seed); fix it to compare training seeds on the same split")
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None
    calib_samples: PositiveInt = 300
    quant_preset: Literal["performance", "mixed"] = "mixed"
    quantize_method: Literal["ptq", "qad"] = Field(
        default="ptq", description="ptq: NNCF post-training int8 of the exported graphs; qad: NNCF QAT started from "
                                   "PTQ and fine-tuned by distillation from the FP32 teacher(s)")
    quant_ignored_scope: list[str] = Field(
        default_factory=list, description="regular expressions over NNCF node names kept out of int8")
    qad_epochs: PositiveInt = 3
    qad_lr: PositiveFloat | None = Field(default=None, description="QAD learning rate (default: lr / 20)")
    qad_losses: list[LossTerm] = Field(
        default_factory=list, description="QAD loss mix (default: the last distillation stage's losses)")
    max_accuracy_drop: float | None = Field(
        default=None, ge=0, description="points of validation top-1 the int8 model may lose against FP32; the most "
                                        "sensitive layers are kept in FP32 until it holds")
    max_fp32_layers: NonNegativeInt = Field(
        default=12, description="how many layers the accuracy guard may keep in FP32 at most")
    verify_samples: PositiveInt = 1000
    robustness: RobustnessSpec | bool = Field(
        default=False, description="after verify, score the teacher, FP32 and int8 students on test images under "
        "ImageNet-C corruptions (noise, blur, contrast, JPEG, fog at severities 1-5): RUN/robustness.json + .png and a "
        "report.md section; true = the defaults of {corruptions, severities, samples: 200, seed}. Off: it costs "
        "minutes")
    bench_iters: PositiveInt = 200
    bench_warmup: NonNegativeInt = 20

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, v):
        return check_sweep_grid(v)


TASK_DEFAULTS = {
    "classify": {"student": "mobilevit_xxs", "teacher_arch": "mobilevit_s", "loss": "kd", "temperature": 4.0,
                 "alpha": 0.9, "select_metric": "top1", "batch_size": 64},
    "segment": {"student": "unet_mobilenetv3_large_100", "teacher_arch": "unet_plain32", "loss": "pixel_kd",
                "temperature": 1.0, "alpha": 0.5, "select_metric": "miou", "batch_size": 8},
}
# FPGA dataflow flows take plain conv / ReLU / pool / upsample / concat graphs
FPGA_STUDENT = {"segment": "unet_plain16"}


def resolve(cfg: RunConfig, device: str | None = None) -> RunConfig:
    """Fill the options left unset with the task's defaults (and the FPGA student on ``device="fpga"``)."""
    fill = {k: v for k, v in TASK_DEFAULTS[cfg.task].items() if getattr(cfg, k) is None}
    if cfg.teacher_epochs is None:  # a teacher gets the student's budget on a user's photos
        folder = not cfg.data.startswith("builtin:") and cfg.task == "classify"
        fill["teacher_epochs"] = (cfg.stages and sum(s.epochs for s in cfg.stages) or cfg.epochs) if folder else 60
    if cfg.augment is None:  # photos need augmentation; the built-in demo set keeps its cached-logits setup
        fill["augment"] = "none" if cfg.data.startswith("builtin:") else "standard"
    if "student" in fill and device == "fpga" and cfg.task in FPGA_STUDENT:
        fill["student"] = FPGA_STUDENT[cfg.task]
    if cfg.task == "segment" and cfg.select_metric in ("top1", "macro_f1"):
        raise ConfigError(f"select_metric {cfg.select_metric} is a classification metric; segmentation uses miou")
    if cfg.task == "classify" and cfg.select_metric == "miou":
        raise ConfigError("select_metric miou is for --task segment")
    if (cfg.mixup or cfg.cutmix) and cfg.task == "segment":
        raise ConfigError("mixup / cutmix are for classification; segmentation mixes masks too, which is not "
                          "supported")
    if (cfg.mixup or cfg.cutmix) and cfg.teacher_cache_views:
        raise ConfigError("mixup / cutmix make a new image every batch, so teacher outputs cannot be cached per "
                          "view: set teacher_cache_views: 0 (teacher online)")
    if cfg.robustness and cfg.task == "segment":
        raise ConfigError("robustness scores classifiers under corruptions; segmentation runs are not covered yet")
    if cfg.sampler == "balanced" and cfg.task == "segment":
        raise ConfigError("sampler balanced balances image classes; segmentation data has none")
    if cfg.task == "segment" and cfg.class_weights != "none":
        raise ConfigError("class_weights is for classification; segmentation's dice_ce / pixel_kd balance the "
                          "classes themselves")
    if cfg.budget_ms is not None and cfg.budget_fps is not None:
        raise ConfigError("give budget_ms or budget_fps, not both")
    if (cfg.candidates or cfg.budget_int8) and cfg.budget_ms is None and cfg.budget_fps is None:
        raise ConfigError("candidates / budget_int8 choose a student for a latency budget: add budget_ms or "
                          "budget_fps (--budget-ms / --budget-fps)")
    if cfg.select_epoch == "last" and cfg.patience:
        raise ConfigError("early stopping keeps the best epoch: select_epoch last needs patience 0 (or none)")
    if cfg.patience is None:
        fill["patience"] = 0 if cfg.select_epoch == "last" else default_patience(cfg.data, cfg.task)
    if cfg.teacher_check is None:  # a short probe costs a tenth of the student's training, at most 3 epochs
        epochs = cfg.stages and sum(s.epochs for s in cfg.stages) or cfg.epochs
        fill["teacher_check"] = 0 if cfg.data.startswith("builtin:") else min(3, epochs // 10)
    if cfg.sweep:
        check_sweep(cfg, fill.get("loss", cfg.loss))
        if cfg.sweep_epochs is None:
            fill["sweep_epochs"] = max(1, min(SWEEP_EPOCHS_MAX, cfg.epochs // 5))
    elif cfg.sweep_epochs is not None:
        raise ConfigError("sweep_epochs is the length of each sweep run; add `sweep:` (or --sweep) or drop it")
    return cfg.model_copy(update=fill) if fill else cfg


def sweep_loss(cfg: RunConfig, loss: str | None = None) -> str:
    """The name of the one loss a sweep tunes (``loss``: the resolved shorthand when ``cfg.loss`` is unset)."""
    return cfg.losses[0].name if cfg.losses else (loss or cfg.loss or TASK_DEFAULTS[cfg.task]["loss"])


def check_sweep(cfg: RunConfig, loss: str | None = None) -> None:
    """Refuse a `sweep:` the schedule cannot take: several stages or loss terms, a loss other than kd, dkd or
    multi_teacher, beta without dkd, a kd alpha above 1."""
    if cfg.stages:
        raise ConfigError("sweep tunes the loss of a single-stage run; with `stages:` set each stage's temperature "
                          "and alpha yourself, or drop `sweep`")
    if len(cfg.losses) > 1:
        raise ConfigError(f"sweep tunes one loss; `losses:` lists {len(cfg.losses)} "
                          f"({', '.join(t.name for t in cfg.losses)}): keep one term, or drop `sweep`")
    name = sweep_loss(cfg, loss)
    if name not in SWEEP_LOSSES:
        raise ConfigError(f"sweep tunes kd, dkd or multi_teacher; loss {name} has no temperature / alpha to tune")
    if "beta" in cfg.sweep and name != "dkd":
        raise ConfigError(f"sweep beta: beta is dkd's NCKD weight; loss {name} takes temperature and alpha")
    if name != "dkd" and max(cfg.sweep.get("alpha", [0.0])) > 1:
        raise ConfigError(f"sweep alpha: {name}'s alpha is the soft-target share, 0 to 1 "
                          f"(got {max(cfg.sweep['alpha']):g})")


def parse_sweep(text: str, flag: str = "--sweep") -> dict[str, list[float]]:
    """``"temperature=1,2,4 alpha=0.5,0.9"`` -> ``{"temperature": [1, 2, 4], "alpha": [0.5, 0.9]}`` (the keys
    and ranges are checked by RunConfig); a malformed text is one ConfigError line."""
    out: dict[str, list[float]] = {}
    parts = text.replace(";", " ").split()
    if not parts:
        raise ConfigError(f"{flag}: empty; give e.g. {flag} 'temperature=1,2,4 alpha=0.5,0.9'")
    for part in parts:
        key, eq, values = part.partition("=")
        if not eq or not key or not values:
            raise ConfigError(f"{flag}: {part!r} is not OPTION=V1,V2,...; e.g. {flag} 'temperature=1,2,4 "
                              f"alpha=0.5,0.9'")
        if key in out:
            raise ConfigError(f"{flag}: {key} is given twice")
        try:
            out[key] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            bad = next(v for v in values.split(",") if not _is_number(v))
            raise ConfigError(f"{flag}: {key}: {bad!r} is not a number") from None
    return out


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def dkd_beta(num_classes: int) -> float:
    """DKD's NCKD weight (``beta``) when the recipe gives none, for ``num_classes`` classes.

    DKD (Zhao et al., CVPR 2022, megvii-research/mdistiller) defaults to beta = 8 (alpha 1, T 4) on CIFAR-100;
    its per-pair CIFAR-100 configs use 2-8 and its ImageNet ones 0.5 at T = 1 (another temperature, so not
    comparable under the T^2 scaling). The paper gives no rule for fewer classes. edgekd's rule (a heuristic, not
    measured): NCKD is a KL among the C - 1 non-target classes, whose dark knowledge shrinks with them (its
    entropy ceiling is log(C - 1); with 2 classes NCKD is zero by construction), so beta = 8 * log(C - 1) /
    log(99), to the nearest 0.5, between 1 and 8: 8 from 100 classes on, 4 for 10, 1 for 2-3. On CIFAR-10 the
    CIFAR-100 beta of 8 let NCKD dominate the loss and cost 4.2 points against labels only (docs/distillation.md,
    CIFAR-10 benchmark (c)). An explicit beta is always kept."""
    if num_classes >= DKD_BETA_CLASSES:
        return DKD_BETA
    scaled = DKD_BETA * math.log(max(num_classes - 1, 1)) / math.log(DKD_BETA_CLASSES - 1)
    return min(DKD_BETA, max(1.0, round(scaled * 2) / 2))


def with_loss_defaults(stages: list[StageSpec], num_classes: int) -> list[StageSpec]:
    """The stages with the defaults that depend on the data written into their loss terms (dkd's beta for the
    class count, ``dkd_beta``), so the student's card records the values used. Given values are kept."""
    out = []
    for st in stages:
        terms = [LossTerm(**{**t.model_dump(), "beta": dkd_beta(num_classes)})
                 if t.name == "dkd" and "beta" not in t.params else t for t in st.losses]
        out.append(st.model_copy(update={"losses": terms}) if terms != list(st.losses) else st)
    return out


def defaulted_dkd_beta(terms: list[LossTerm]) -> bool:
    """Is one of ``terms`` a dkd term whose beta comes from ``dkd_beta`` (none given)?"""
    return any(t.name == "dkd" and "beta" not in t.params for t in terms)


def default_patience(data: str, task: str = "classify") -> int:
    """Early-stopping patience when none is given: on for a classification folder, off for the built-in demo
    set and for segmentation (see ``RunConfig.patience``)."""
    return CLASSIFY_PATIENCE if task == "classify" and not data.startswith("builtin:") else 0


def imbalance(counts: dict[str, int]) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """(largest class, images), (smallest class, images) of the training split when the largest has at least
    ``IMBALANCE_RATIO`` times the smallest's images; None when the classes are balanced enough."""
    if len(counts) < 2:
        return None
    big = max(counts.items(), key=lambda kv: kv[1])
    small = min(counts.items(), key=lambda kv: kv[1])
    return (big, small) if big[1] >= IMBALANCE_RATIO * small[1] and big[1] > 0 else None


def resolve_for_data(cfg: RunConfig, class_counts: dict[str, int],
                     metric_given: bool = False) -> tuple[RunConfig, list[str]]:
    """Defaults that depend on the loaded data (classification; call after ``resolve``): with imbalanced
    training classes (``imbalance``) the best epoch is selected by macro-F1, unless ``metric_given`` (the user
    chose ``select_metric``, which ``resolve`` cannot tell from its top1 default). Returns the config and the
    lines that say why. Segmentation is left as it is."""
    found = imbalance(class_counts) if cfg.task == "classify" and not metric_given else None
    if found is None:
        return cfg, []
    (big, nb), (small, ns) = found
    return (cfg.model_copy(update={"select_metric": "macro_f1"}),
            [f"classes are imbalanced ({big} {nb} vs {small} {ns} training images): selecting by macro-F1"])


def resolve_select_epoch(cfg: RunConfig, val_images: int, patience_given: bool = False) -> tuple[RunConfig, list[str]]:
    """``select_epoch`` when none was given (call after ``resolve``): ``last`` with early stopping off on a
    classification folder whose validation split has fewer than ``MIN_SELECT_VAL`` images, unless the user set
    ``patience`` (early stopping needs the best epoch); else ``best``. Returns the config and the line that says
    why."""
    if cfg.select_epoch is not None:
        return cfg, []
    few = (cfg.task == "classify" and not cfg.data.startswith("builtin:") and 0 < val_images < MIN_SELECT_VAL
           and not patience_given)
    if not few:
        return cfg.model_copy(update={"select_epoch": "best"}), []
    step = 100 / val_images
    return (cfg.model_copy(update={"select_epoch": "last", "patience": 0}),
            [f"validation split: {val_images} images (one image moves the score by {step:.1f} points), too few to "
             f"pick the best epoch by: teacher and student keep their last epoch, early stopping off "
             f"(select_epoch: best, or patience N, in a recipe to choose otherwise)"])


def schedule(cfg: RunConfig) -> list[StageSpec]:
    """The stages to train: the recipe's ``stages``, or one stage of ``epochs`` with ``losses`` (or ``loss``)."""
    if cfg.stages:
        return list(cfg.stages)
    terms = list(cfg.losses)
    if not terms:
        cfg = resolve(cfg)
        soft = ("kd", "multi_teacher", "pixel_kd")
        params = {"temperature": cfg.temperature, "alpha": cfg.alpha} if cfg.loss in soft else {}
        terms = [LossTerm(name=cfg.loss, **params)]
    return [StageSpec(name="distill", epochs=cfg.epochs, losses=terms)]


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise _DuplicateKey(f"key {key!r} is given twice (lines {seen[key] + 1} and "
                                            f"{key_node.start_mark.line + 1}); give it once")
                    seen[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: the base constructor reports it
                    pass
        return super().construct_mapping(node, deep)


def load_yaml(path: Path):
    """Parse a YAML file (recipe or target) safely: never runs code, refuses duplicate keys."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({reason(exc)})") from exc


def load_recipe(path: Path) -> dict:
    """Read a recipe YAML (safe: never runs code; duplicate keys refused) as a dict of RunConfig fields."""
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    raw = load_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of options")
    return raw


def make_config(recipe: Path | None = None, sources: dict[str, str] | None = None, **overrides) -> RunConfig:
    """Recipe values, then explicit CLI values (those not None) on top; validated as one RunConfig.

    Args:
        recipe: a recipe YAML, or None.
        sources: how the user gave each override, for error messages (``{"epochs": "--epochs"}``); an error in
            an override without one names its key.
        overrides: RunConfig fields.
    """
    values = load_recipe(recipe) if recipe else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_blame(exc.errors()[0], recipe, given, sources or {})) from exc


def _blame(err: dict, recipe: Path | None, given: dict, sources: dict[str, str]) -> str:
    """One line naming where a bad value came from: the flag that gave it, else the recipe file and key."""
    loc = ".".join(str(x) for x in err["loc"])
    value = err.get("input")
    got = f" (got {value!r})" if isinstance(value, (int, float, str)) and len(repr(value)) <= 60 else ""
    key = err["loc"][0] if err["loc"] else None
    if key in given and key in sources:
        where = sources[key] if len(err["loc"]) == 1 else f"{sources[key]} ({loc})"
        return f"{where}: {err['msg']}{got}"
    src = f"{recipe}: " if recipe and key not in given else ""
    return f"{src}{loc}: {err['msg']}{got}"
