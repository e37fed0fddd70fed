"""Teacher stage: load each given teacher (fine-tuning its head when the class count differs), or train one.

Teacher specs: ``timm:NAME`` (with local weights), ``edgekd:NAME`` (edgekd's own CIFAR ResNets, e.g. the
CIFAR-10 ResNet-56 checkpoint), ``onnx:PATH`` (a black-box teacher, logits only). Each keeps its own view of the
data (input size, normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgekd.data import DataSplits, base_preprocess
from edgekd.data.torchdata import loader
from edgekd.distill.losses import build_loss
from edgekd.distill.teachers import OnnxTeacher, View, Viewed, onnx_input_size, onnx_num_outputs
from edgekd.distill.trainer import TrainSettings, device, fit, test_report
from edgekd.errors import ConfigError
from edgekd.models.factory import create_timm, load_weights, read_state_dict, save_checkpoint
from edgekd.preprocess import IMAGENET_MEAN, IMAGENET_STD
from edgekd.progress import console


@dataclass(frozen=True)
class TeacherRecipe:
    arch: str
    epochs: int
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    augment: bool = True
    seed: int = 0
    patience: int = 0  # early stop after this many epochs without a better validation score (0: off)
    select_metric: str | None = None  # None: miou (segment), macro_f1 when the classes are imbalanced, else top1
    class_weights: str = "none"  # "balanced": class-weighted cross-entropy (classification)


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


def build_teacher(data: DataSplits, recipe: TeacherRecipe, weights: Path | None, workdir: Path,
                  out: Path, retrain: bool = False, view: View | None = None) -> tuple[nn.Module, dict]:
    """Return the teacher and its card, saved at ``out`` (safetensors + JSON).

    With ``weights`` whose head fits the data's classes the teacher is used as is; with a head that does not
    fit (or no weights at all) it is trained with cross-entropy for ``recipe.epochs``. ``view`` is the
    teacher's own input size / normalisation (default: the student's).
    """
    view = view or View.of(data.preprocess)
    base = base_preprocess(data, [data.preprocess.size[0], view.size[0]])
    src = View.of(base)
    import torch

    torch.manual_seed(recipe.seed)  # initial weights follow the seed, whatever ran before in the process
    model = create_timm(recipe.arch, len(data.classes))
    fits = False
    if weights is not None:
        fits = load_weights(model, read_state_dict(weights), str(weights))
    wrapped = Viewed(model, src, view)
    train_dl = loader(data.train, base, recipe.batch_size, shuffle=True, augment=recipe.augment, seed=recipe.seed)
    val_dl = loader(data.val, base, data.eval_batch, shuffle=False)
    how, hist = "given weights", []
    seg = data.task == "segment"
    stopped = None
    if retrain or not fits:
        metric = _teacher_metric(data, recipe)
        settings = TrainSettings(recipe.epochs, recipe.lr, recipe.weight_decay, seed=recipe.seed,
                                 select_metric=metric, patience=recipe.patience)
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
                                recipe.patience, extra=extra), soft_wrap=True, markup=False)
        res = fit(wrapped, train_dl, val_dl, loss, settings, workdir, desc=f"teacher {recipe.arch}")
        hist, stopped = res.history, res.stopped_early
        how = "fine-tuned from given weights" if weights is not None else "trained from scratch"
    test_dl = loader(data.test, base, data.eval_batch, shuffle=False)
    rep = test_report(wrapped, test_dl, data.classes, "teacher test")
    _say_per_class(rep)
    card = {
        "arch": recipe.arch, "role": "teacher", "kind": "torch", "classes": data.classes, "data": data.name,
        "task": data.task, "metric": rep["metric"], **{f"test_{k}": v for k, v in rep.items() if isinstance(v, float)},
        "preprocess": data.preprocess.to_dict(), "view": view.to_dict(), "how": how,
        "recipe": recipe.__dict__, "device": str(device()), "history": hist, "stopped_early": stopped,
        "weights_source": str(weights) if weights else None,
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
            "task": data.task, "metric": rep["metric"], f"test_{rep['metric']}": rep[rep["metric"]],
            "view": view.to_dict(), **({"per_class": rep["per_class"]} if "per_class" in rep else {}),
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
