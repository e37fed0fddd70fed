"""One training loop for teachers (loss ``ce``) and students (``kd``): cosine LR, per-epoch atomic
checkpoints, ``resume`` after a kill, best weights by validation top-1."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from edgekd.errors import TrainingError
from edgekd.progress import track


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    weight_decay: float
    warmup_epochs: float = 1.0
    seed: int = 0


@dataclass
class TrainResult:
    best_val_top1: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def device() -> torch.device:
    """CUDA when present (with bf16 autocast), else CPU: the same loop runs on a laptop and on a GPU box."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(dev: torch.device):
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


@torch.no_grad()
def predict(model: nn.Module, dl: DataLoader, desc: str | None = None) -> np.ndarray:
    """Logits of ``model`` over a loader, in loader order (float32, on the CPU)."""
    model.eval()
    dev = next(model.parameters()).device
    batches = dl if desc is None else track(dl, len(dl), desc)
    out = []
    for x, _, _ in batches:
        with _autocast(dev):
            out.append(model(x.to(dev)).float().cpu())
    return torch.cat(out).numpy()


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(1) == labels).mean() * 100)


def fit(model: nn.Module, train_dl: DataLoader, val_dl: DataLoader, loss_fn: nn.Module, settings: TrainSettings,
        workdir: Path, teacher: nn.Module | None = None, teacher_logits: torch.Tensor | None = None,
        desc: str = "train") -> TrainResult:
    """Train ``model`` in place and leave it holding the best validation weights.

    Teacher outputs come from ``teacher_logits`` (indexed by sample, precomputed when augmentation is off)
    or from running ``teacher`` on each batch. ``workdir/last.pt`` is rewritten atomically every epoch and
    picked up again when present, so a killed run continues from its last finished epoch.
    """
    torch.manual_seed(settings.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    dev = device()
    model.to(dev)
    if teacher is not None:
        teacher.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * len(train_dl)
    warm = max(1, int(settings.warmup_epochs * len(train_dl)))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    last, best_path = workdir / "last.pt", workdir / "best.pt"
    result, start = TrainResult(best_val_top1=-1.0, best_epoch=-1), 0
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"] + 1
        result = TrainResult(state["best_val_top1"], state["best_epoch"], list(state["history"]))
    if teacher is not None:
        teacher.eval()
    val_labels = np.asarray(val_dl.dataset.src.labels)
    for epoch in range(start, settings.epochs):
        # the shuffle generator is re-seeded per epoch so a resumed run sees the same batch order
        train_dl.generator.manual_seed(settings.seed * 1000 + epoch)
        model.train()
        status: dict = {}
        total, count = 0.0, 0
        for x, y, idx in track(train_dl, len(train_dl), f"{desc} epoch {epoch + 1}/{settings.epochs}", status):
            x, y = x.to(dev, non_blocking=True), y.to(dev)
            t_out = None
            with _autocast(dev):
                if teacher_logits is not None:
                    t_out = teacher_logits[idx].to(dev)
                elif teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x).float()
                s_out = model(x).float()
            loss = loss_fn(s_out, t_out, y)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{desc}: loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate "
                    f"(--lr, now {settings.lr}) or check the data"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(y), count + len(y)
            status["loss"] = total / count
        acc = top1(predict(model, val_dl), val_labels)
        result.history.append({"epoch": epoch + 1, "loss": total / count, "val_top1": acc})
        if acc > result.best_val_top1:
            result.best_val_top1, result.best_epoch = acc, epoch + 1
            _atomic_save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, best_path)
        _atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                      "rng": torch.get_rng_state(), "epoch": epoch, "best_val_top1": result.best_val_top1,
                      "best_epoch": result.best_epoch, "history": result.history}, last)
        from edgekd.progress import console

        console.print(f"  {desc} epoch {epoch + 1}: loss {total / count:.4f}  val top-1 {acc:.2f}%")
    model.cpu()
    if teacher is not None:
        teacher.cpu()
    if best_path.is_file():
        model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    model.eval()
    return result


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
