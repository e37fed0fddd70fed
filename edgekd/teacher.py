"""Teacher stage: load a given teacher (fine-tuning its head when the class count differs) or train one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgekd.data import DataSplits
from edgekd.data.torchdata import loader
from edgekd.distill.losses import build_loss
from edgekd.distill.trainer import TrainSettings, device, fit, predict, top1
from edgekd.models.factory import create_timm, load_weights, read_state_dict, save_checkpoint


@dataclass(frozen=True)
class TeacherRecipe:
    arch: str
    epochs: int
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    augment: bool = True
    seed: int = 0


def parse_spec(spec: str) -> str:
    """``timm:NAME`` -> NAME (ONNX teachers arrive with the distillation engine)."""
    from edgekd.errors import ConfigError

    if not spec.startswith("timm:") or len(spec) <= 5:
        raise ConfigError(f"teacher {spec!r}: expected timm:NAME (e.g. timm:resnet50)")
    return spec[5:]


def build_teacher(data: DataSplits, recipe: TeacherRecipe, weights: Path | None, workdir: Path,
                  out: Path, retrain: bool = False) -> tuple[nn.Module, dict]:
    """Return the teacher and its card, saved at ``out`` (safetensors + JSON).

    With ``weights`` whose head fits the data's classes the teacher is used as is; with a head that does not
    fit (or no weights at all) it is trained with cross-entropy for ``recipe.epochs``.
    """
    model = create_timm(recipe.arch, len(data.classes))
    fits = False
    if weights is not None:
        fits = load_weights(model, read_state_dict(weights), str(weights))
    train_dl = loader(data.train, data.preprocess, recipe.batch_size, shuffle=True, augment=recipe.augment,
                      seed=recipe.seed)
    val_dl = loader(data.val, data.preprocess, 256, shuffle=False)
    how, hist = "given weights", []
    if retrain or not fits:
        settings = TrainSettings(recipe.epochs, recipe.lr, recipe.weight_decay, seed=recipe.seed)
        hist = fit(model, train_dl, val_dl, build_loss("ce"), settings, workdir, desc=f"teacher {recipe.arch}").history
        how = "fine-tuned from given weights" if weights is not None else "trained from scratch"
    test_dl = loader(data.test, data.preprocess, 256, shuffle=False)
    acc = top1(predict(model, test_dl, "teacher test"), data.test.labels)
    card = {
        "arch": recipe.arch, "role": "teacher", "classes": data.classes, "data": data.name,
        "preprocess": data.preprocess.to_dict(), "test_top1": acc, "how": how,
        "recipe": recipe.__dict__, "device": str(device()), "history": hist,
        "weights_source": str(weights) if weights else None,
    }
    save_checkpoint(model, out, card)
    return model.eval(), card
