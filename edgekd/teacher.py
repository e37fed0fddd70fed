"""Teacher stage: load each given teacher (fine-tuning its head when the class count differs), or train one.

Teacher specs: ``timm:NAME`` (local weights, or timm's pretrained ones fine-tuned on the data), ``edgekd:NAME``
(edgekd's own CIFAR ResNets, e.g. the CIFAR-10 ResNet-56 checkpoint), ``onnx:PATH`` (a black-box teacher, logits
only). Each keeps its own view of the data (input size, normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgekd.bundle import sha256
from edgekd.data import BUILTIN_PREFIX, DataSplits, base_preprocess
from edgekd.data.torchdata import loader
from edgekd.distill.catalog import build_loss
from edgekd.distill.teachers import OnnxTeacher, View, Viewed, onnx_input_size, onnx_num_outputs
from edgekd.distill.trainer import TrainSettings, device, fit, test_report
from edgekd.errors import ConfigError
from edgekd.models import pretrained
from edgekd.models.factory import create_timm, load_weights, read_state_dict, save_checkpoint
from edgekd.preprocess import IMAGENET_MEAN, IMAGENET_STD
from edgekd.progress import console
from edgekd.results import card_scores


@dataclass(frozen=True)
class TeacherRecipe:
    arch: str
    epochs: int
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    augment: bool | str | tuple = True  # a preset name, True (= light) or a tuple of v2 transform mappings
    seed: int = 0
    crop_scale: tuple[float, float] | None = None
    mixup: float = 0.0
    cutmix: float = 0.0
    balanced: bool = False  # class-balanced sampler
    patience: int = 0  # early stop after this many epochs without a better validation score (0: off)
    select_metric: str | None = None  # None: miou (segment), macro_f1 when the classes are imbalanced, else top1
    class_weights: str = "none"  # "balanced": class-weighted cross-entropy (classification)
    keep: str = "best"  # the epoch kept: "best" by the validation metric, or "last" (RunConfig.select_epoch)
    head_prior: bool = True  # segmentation: a new head starts at the class prior (RunConfig.seg_head_prior)


def teacher_augment(spec):
    """A teacher trains with the run's augmentation, and never with less than ``light`` (flip + pad-crop)."""
    from edgekd.data.augment import is_on

    return tuple(spec) if isinstance(spec, list) else (spec if is_on(spec) else "light")


def parse_spec(spec: str) -> tuple[str, str]:
    """``timm:NAME`` / ``edgekd:NAME`` / ``onnx:PATH`` (or a path ending in .onnx) -> (kind, value)."""
    if spec.endswith(".onnx") and not spec.startswith("onnx:"):
        spec = "onnx:" + spec
    kind, _, value = spec.partition(":")
    if kind not in ("timm", "edgekd", "onnx") or not value:
        raise ConfigError(f"teacher {spec!r}: expected timm:NAME, edgekd:NAME (e.g. edgekd:cifar_resnet56) "
                          f"or onnx:PATH")
    if kind == "edgekd":
        from edgekd.models.cifar_resnet import DEPTHS

        if value not in DEPTHS:
            raise ConfigError(f"teacher {spec!r}: edgekd's own architectures are {', '.join(DEPTHS)}")
    return kind, value


def teacher_view(spec, data: DataSplits) -> View:
    """The view a teacher spec asks for: its own size / normalisation, else the data's size and ImageNet stats.
    Dense (segmentation) teachers see the student's input size unless an ONNX file fixes another one (their
    logits are then resized to the student's)."""
    kind, value = parse_spec(spec.spec)
    size = (spec.image_size, spec.image_size) if spec.image_size and data.task != "segment" else None
    if size is None and kind == "onnx" and Path(value).is_file():
        size = onnx_input_size(Path(value))
    return View(size or tuple(data.preprocess.size), tuple(spec.mean or IMAGENET_MEAN),
                 tuple(spec.std or IMAGENET_STD))


def build_teacher(data: DataSplits, recipe: TeacherRecipe, weights: Path | str | None, workdir: Path,
                  out: Path, retrain: bool = False, view: View | None = None, required: bool = False,
                  option: str = "--teacher-weights") -> tuple[nn.Module, dict]:
    """Return the teacher and its card, saved at ``out`` (safetensors + JSON).

    ``weights``: a weights file, or a pretrained choice (``auto`` when None; see edgekd.models.pretrained;
    ``required``: ``auto`` may not fall back to random weights, as for a teacher the user named). A file whose
    head fits the data's classes is used as is; with a head that does not fit, pretrained (ImageNet / hub)
    weights or random ones the teacher is trained with cross-entropy for ``recipe.epochs``. ``view`` is the
    teacher's own input size / normalisation (default: the student's).
    """
    view = view or View.of(data.preprocess)
    base = base_preprocess(data, [data.preprocess.size[0], view.size[0]])
    src = View.of(base)
    import torch

    torch.manual_seed(recipe.seed)  # initial weights follow the seed, whatever ran before in the process
    choice = "auto" if weights is None else str(weights)
    if pretrained.kind(choice) == "file":  # a file: the whole model, as before (edgekd:cifar_resnet56 and friends)
        model = create_timm(recipe.arch, len(data.classes))
        fits = load_weights(model, read_state_dict(Path(choice)), choice)
        start = {"requested": choice, "used": "file", "file": str(Path(choice).resolve()),
                 "sha256": sha256(Path(choice)), "head": "kept" if fits else "re-initialised"}
    else:  # ImageNet / hub weights always fine-tune: their classes are not the data's
        model, start = pretrained.build(recipe.arch, len(data.classes), choice, f"teacher {recipe.arch}", option,
                                        required=required, synthetic=data.name.startswith(BUILTIN_PREFIX))
        fits = False
    if recipe.head_prior and not fits:
        from edgekd.models.segmentation import start_at_prior

        start_at_prior(model, data, start)
    wrapped = Viewed(model, src, view)
    augment = list(recipe.augment) if isinstance(recipe.augment, tuple) else recipe.augment
    train_dl = loader(data.train, base, recipe.batch_size, shuffle=True, augment=augment, seed=recipe.seed,
                      balanced=recipe.balanced, crop_scale=recipe.crop_scale)
    val_dl = loader(data.val, base, data.eval_batch, shuffle=False)
    how, hist = "given weights", []
    seg = data.task == "segment"
    stopped = None
    if retrain or not fits:
        metric = _teacher_metric(data, recipe)
        settings = TrainSettings(recipe.epochs, recipe.lr, recipe.weight_decay, seed=recipe.seed,
                                 select_metric=metric, patience=recipe.patience, mixup=recipe.mixup, keep=recipe.keep,
                                 cutmix=recipe.cutmix, num_classes=len(data.classes))
        # segmentation: Dice + CE, the task loss that does not drown a thin class in background pixels
        loss = build_loss("dice_ce" if seg else "ce")
        extra = []
        if recipe.class_weights == "balanced" and not seg:
            from edgekd.distill.losses import balanced_class_weights, set_class_weight
            from edgekd.plan import class_counts, weights_words

            w = balanced_class_weights(class_counts(data).values())
            set_class_weight(loss, w)
            extra.append(weights_words(w, data.classes))
        from edgekd.plan import plan_line

        console.print(plan_line(f"teacher {recipe.arch}", data, recipe.epochs, recipe.batch_size, metric,
                                recipe.patience, recipe.keep, extra=extra), soft_wrap=True, markup=False)
        res = fit(wrapped, train_dl, val_dl, loss, settings, workdir, desc=f"teacher {recipe.arch}")
        hist, stopped = res.history, res.stopped_early
        how = ("fine-tuned from given weights" if start["used"] == "file" else "trained from scratch"
               if start["used"] == "random" else f"fine-tuned from {start['used']}")
    test_dl = loader(data.test, base, data.eval_batch, shuffle=False)
    rep = test_report(wrapped, test_dl, data.classes, "teacher test")
    _say_per_class(rep)
    card = {
        "arch": recipe.arch, "role": "teacher", "kind": "torch", "classes": data.classes, "data": data.name,
        "task": data.task, **card_scores(rep),
        "preprocess": data.preprocess.to_dict(), "view": view.to_dict(), "how": how,
        "recipe": recipe.__dict__, "device": str(device()), "history": hist, "stopped_early": stopped,
        "weights_source": start.get("file"), "weights": start,
        **({"per_class": rep["per_class"]} if "per_class" in rep else {}),
    }
    save_checkpoint(model, out, card)
    return model.eval(), card


def onnx_teacher_card(path: Path, data: DataSplits, view: View) -> dict:
    """Check an ONNX teacher against the data (class count) and measure it on the test split."""
    n = onnx_num_outputs(path, view.size, dense=data.task == "segment")
    if n != len(data.classes):
        raise ConfigError(f"ONNX teacher {path} predicts {n} classes but the data has {len(data.classes)}; "
                          f"a black-box teacher cannot be re-headed (give a PyTorch teacher to fine-tune)")
    base = base_preprocess(data, [data.preprocess.size[0], view.size[0]])
    t = OnnxTeacher(path.name, path, view, View.of(base))
    test_dl = loader(data.test, base, data.eval_batch, shuffle=False)
    rep = test_report(_Module(t), test_dl, data.classes, "teacher test (onnxruntime)")
    _say_per_class(rep)
    return {"arch": path.name, "role": "teacher", "kind": "onnx", "path": str(path), "classes": data.classes,
            "task": data.task, **card_scores(rep),
            "view": view.to_dict(), "weights": {"requested": str(path), "used": "onnx file",
                                                "file": str(path.resolve()), "sha256": sha256(path)},
            **({"per_class": rep["per_class"]} if "per_class" in rep else {}),
            "how": "ONNX file, run as a black box with onnxruntime (logits only)"}


def _teacher_metric(data: DataSplits, recipe: TeacherRecipe) -> str:
    """The validation metric that picks the teacher's best epoch: the recipe's, else the data's default."""
    if data.task == "segment":
        return "miou"
    if recipe.select_metric is not None:
        return recipe.select_metric
    from edgekd.config import imbalance
    from edgekd.plan import class_counts

    found = imbalance(class_counts(data))
    if found is None:
        return "top1"
    (big, nb), (small, ns) = found
    console.print(f"classes are imbalanced ({big} {nb} vs {small} {ns} training images): selecting the teacher "
                  f"by macro-F1", soft_wrap=True, markup=False)
    return "macro_f1"


def _say_per_class(rep: dict) -> None:
    """After a classification test report: the per-class F1 in one line."""
    if rep.get("metric") == "top1" and rep.get("per_class"):
        from edgekd.plan import per_class_f1_line

        console.print(per_class_f1_line(rep["per_class"]), soft_wrap=True, markup=False)


class _Module(nn.Module):
    """An ONNX teacher as a module (what the evaluation helpers take); the parameter only tells the device."""

    def __init__(self, t: OnnxTeacher) -> None:
        super().__init__()
        import torch

        self.t, self.anchor = t, nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x):
        import torch.nn.functional as F

        out = self.t(x)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear") if out.dim() == 4 else out
