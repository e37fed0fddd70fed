"""One training loop for teachers (loss ``ce``) and students (any loss mix, any number of teachers).

Device placement and mixed precision go through Hugging Face accelerate, so the same loop runs on a 2-core CPU,
one GPU (bf16 autocast) or several (``accelerate launch edgekd distill ...``). Checkpoints are written atomically
every epoch and picked up again, so a killed run continues from its last finished epoch; a finished run leaves
``done.json`` and ``final.pt`` and is not trained again.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from edgekd.distill.metrics import macro_f1, top1
from edgekd.errors import ConfigError, TrainingError
from edgekd.fileio import atomic, write_text
from edgekd.progress import console, track


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    weight_decay: float
    warmup_epochs: float = 1.0
    seed: int = 0
    optimizer: str = "adamw"
    select_metric: str = "top1"
    keep: str = "best"  # "best" (by the validation metric) or "last" (earlier stages of a schedule)
    # QAD: BatchNorm statistics stay as calibrated; with fake-quantized weights small batches make them drift
    freeze_bn: bool = False
    mixup: float = 0.0  # MixUp / CutMix alphas (batch-level, before the teachers see the batch)
    cutmix: float = 0.0
    num_classes: int = 0
    # stop after this many epochs without a better validation score (0: off); only with keep="best"
    patience: int = 0


@dataclass
class TrainResult:
    best_val: float
    best_epoch: int
    metric: str = "top1"
    history: list[dict] = field(default_factory=list)
    stopped_early: int | None = None  # the epoch after which early stopping ended training


@dataclass
class Teaching:
    """What the student learns from: teachers, their fixed weights, feature pairs and cached logits.

    ``cached`` is [teachers, views, samples, classes] when teacher logits were computed once up front.
    """

    teachers: list = field(default_factory=list)
    prior: torch.Tensor | None = None
    pairs: list = field(default_factory=list)  # config.FeaturePair
    cached: torch.Tensor | None = None
    student_view: tuple | None = None  # (batch view, student view) when the loader reads another size


def accelerator():
    """The process's Accelerator: CUDA with bf16 autocast when present, else CPU."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict(model: nn.Module, dl: DataLoader, desc: str | None = None) -> np.ndarray:
    """Logits of ``model`` over a loader, in loader order (float32, on the CPU)."""
    model.eval()
    dev = next(model.parameters()).device
    batches = dl if desc is None else track(dl, len(dl), desc)
    out = []
    for x, *_ in batches:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out.append(model(x.to(dev)).float().cpu())
    return torch.cat(out).numpy()


def score(name: str, logits: np.ndarray, targets: np.ndarray) -> float:
    """The metric ``name`` (top1, macro_f1, miou) of logits against labels [N] or masks [N, H, W]."""
    if name == "miou" or logits.ndim == 4:
        from edgekd.distill.seg_metrics import miou

        return miou(logits, targets)
    return macro_f1(logits, targets) if name == "macro_f1" else top1(logits, targets)


@torch.no_grad()
def evaluate(model: nn.Module, dl: DataLoader, name: str, desc: str | None = None) -> float:
    """The metric of ``model`` over a loader; segmentation accumulates a confusion matrix batch by batch (dense
    logits of a whole split need not fit in memory)."""
    if getattr(dl.dataset.src, "masks", None) is None:
        return score(name, predict(model, dl, desc), np.asarray(dl.dataset.src.labels))
    from edgekd.distill.seg_metrics import seg_scores

    return seg_scores(confusion_of(model, dl, desc))["miou"]


@torch.no_grad()
def confusion_of(model: nn.Module, dl: DataLoader, desc: str | None = None) -> np.ndarray:
    """Pixel confusion matrix [C, C] (rows: truth) of a segmentation model over a loader of masks."""
    from edgekd.distill.seg_metrics import confusion

    model.eval()
    dev = next(model.parameters()).device
    conf = None
    for x, y, *_ in (dl if desc is None else track(dl, len(dl), desc)):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model(x.to(dev)).float()
        c = confusion(out.argmax(1).cpu().numpy(), y.numpy(), out.shape[1])
        conf = c if conf is None else conf + c
    return conf


def test_report(model: nn.Module, dl: DataLoader, classes: list[str], desc: str | None = None) -> dict:
    """Test scores: classification top1 / macro_f1 / per_class, or segmentation miou, per-class IoU / Dice /
    precision / recall and the foreground (thin-class) scores; ``metric`` names the headline one."""
    if getattr(dl.dataset.src, "masks", None) is None:
        from edgekd.distill.metrics import report

        return {"metric": "top1", **report(predict(model, dl, desc), np.asarray(dl.dataset.src.labels), classes)}
    from edgekd.distill.seg_metrics import seg_scores

    return {"metric": "miou", **seg_scores(confusion_of(model, dl, desc), classes)}


def _optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay)
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)


class _Taps:
    """Feature taps on the student and the PyTorch teachers for every feature pair."""

    def __init__(self, model: nn.Module, teaching: Teaching) -> None:
        from edgekd.distill.features import FeatureTap

        pairs = teaching.pairs
        self.student = FeatureTap(model, [p.student for p in pairs], [p.student_layout for p in pairs], "student")
        self.teacher: dict[int, FeatureTap] = {}
        self.order: list[tuple[int, int]] = []  # (teacher, position in that teacher's tap) per pair
        for k in sorted({p.teacher_index for p in pairs}):
            if k >= len(teaching.teachers):
                raise ConfigError(f"feature pair refers to teacher {k}, but only {len(teaching.teachers)} given")
            t = teaching.teachers[k]
            if not t.has_features:
                raise ConfigError(f"teacher {t.name} is ONNX (a black box with logits only); feature losses "
                                  f"(hint, attention) need a PyTorch teacher; use kd, dkd or multi_teacher")
            mine = [p for p in pairs if p.teacher_index == k]
            self.teacher[k] = FeatureTap(t.model, [p.teacher for p in mine], [p.teacher_layout for p in mine],
                                         f"teacher {t.name}")
        seen: dict[int, int] = {}
        for p in pairs:
            self.order.append((p.teacher_index, seen.get(p.teacher_index, 0)))
            seen[p.teacher_index] = seen.get(p.teacher_index, 0) + 1

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        s = self.student.maps()
        t = {k: tap.maps() for k, tap in self.teacher.items()}
        return [(s[i], t[k][j], k) for i, (k, j) in enumerate(self.order)]

    def remove(self) -> None:
        self.student.remove()
        for tap in self.teacher.values():
            tap.remove()


def fit(model: nn.Module, train_dl: DataLoader, val_dl: DataLoader, loss_fn: nn.Module, settings: TrainSettings,
        workdir: Path, teaching: Teaching | None = None, desc: str = "train") -> TrainResult:
    """Train ``model`` in place; it ends holding the best validation weights (or the last, ``keep="last"``)."""
    from edgekd.distill.losses import DistillBatch
    from edgekd.distill.teachers import to_view

    workdir.mkdir(parents=True, exist_ok=True)
    last, best_path, final, done = (workdir / n for n in ("last.pt", "best.pt", "final.pt", "done.json"))
    if done.is_file() and final.is_file():
        weights = _read_checkpoint(final)
        if isinstance(weights, str):  # a torn final.pt: finish again from last.pt (the best weights are in best.pt)
            console.print(f"  {desc}: {weights}; finishing again from the last checkpoint", soft_wrap=True,
                          markup=False)
        else:
            model.load_state_dict(weights)
            d = json.loads(done.read_text())
            console.print(f"  {desc}: finished earlier, reusing {final}")
            return TrainResult(d["best_val"], d["best_epoch"], d["metric"], d["history"], d.get("stopped_early"))
    torch.manual_seed(settings.seed)
    teaching = teaching or Teaching()
    needs = getattr(loss_fn, "needs", frozenset())
    if "teacher" in needs and not teaching.teachers:
        raise ConfigError(f"{desc}: the losses need a teacher, but none was given")
    feats = "features" in needs
    if feats and not teaching.pairs:
        raise ConfigError(f"{desc}: hint/attention losses need `features:` (student/teacher layer pairs)")
    acc = accelerator()
    dev = acc.device
    model.to(dev)
    for t in teaching.teachers:
        t.to(dev)
    taps = _Taps(model, teaching) if feats else None
    if taps is not None:  # one probe pass tells the adapters their shapes
        x0 = next(iter(train_dl))[0][:2].to(dev)
        model.eval()
        with torch.no_grad():
            model(to_view(x0, *teaching.student_view) if teaching.student_view else x0)
            for t in teaching.teachers:
                t(x0)
        loss_fn.bind([(tuple(s.shape), tuple(t.shape)) for s, t, _ in taps.pairs()])
    loss_fn.to(dev)
    opt = _optimizer(list(model.parameters()) + list(loss_fn.parameters()), settings)
    if acc.num_processes > 1:
        train_dl = acc.prepare(train_dl)
    if any(p.requires_grad for p in loss_fn.parameters()):  # adapters train (and sync) with the student
        model, loss_fn, opt = acc.prepare(model, loss_fn, opt)
    else:
        model, opt = acc.prepare(model, opt)
    steps = settings.epochs * len(train_dl)
    warm = min(max(1, int(settings.warmup_epochs * len(train_dl))), max(1, steps // 2))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    raw, raw_loss = acc.unwrap_model(model), acc.unwrap_model(loss_fn)
    result, start = TrainResult(best_val=-1.0, best_epoch=-1, metric=settings.select_metric), 0
    state = _resume_state(last, desc)
    if state is not None:
        raw.load_state_dict(state["model"])
        raw_loss.load_state_dict(state["loss"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"] + 1
        result = TrainResult(state["best_val"], state["best_epoch"], settings.select_metric, list(state["history"]),
                             state.get("stopped_early"))
        console.print(f"  {desc}: resuming after epoch {start} from {state['file']}")
        if result.stopped_early is not None:  # killed after early stopping, before done.json: nothing left to train
            start = settings.epochs
    prior = teaching.prior.to(dev) if teaching.prior is not None else None
    mixer = None
    if settings.mixup or settings.cutmix:
        from edgekd.data.augment import batch_mixer

        mixer = batch_mixer(settings.mixup, settings.cutmix, settings.num_classes)
    cached = teaching.cached
    for epoch in range(start, settings.epochs):
        # each epoch's order and augmentation follow (seed, epoch), so a resumed run sees the same batches
        if acc.num_processes > 1 and hasattr(train_dl, "set_epoch"):
            train_dl.set_epoch(epoch)
        elif hasattr(train_dl.sampler, "set_epoch"):
            train_dl.sampler.set_epoch(epoch)
        model.train()
        if settings.freeze_bn:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        t_epoch = time.perf_counter()
        status: dict = {}
        total, count = 0.0, 0
        wait, t_mark = 0.0, time.perf_counter()  # time spent waiting for the loader's next batch
        for step, (x, y, idx, view) in enumerate(track(train_dl, len(train_dl),
                                                       f"{desc} epoch {epoch + 1}/{settings.epochs}", status)):
            wait += time.perf_counter() - t_mark
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if mixer is not None:  # the teachers below see the mixed image too (consistent teaching)
                x, y = mixer(x, y)
            if hasattr(raw_loss, "epoch"):
                raw_loss.epoch = epoch + step / len(train_dl)
            t_out: list[torch.Tensor] = []
            with acc.autocast():
                if "teacher" in needs:
                    if cached is not None and not feats:
                        t_out = [cached[k, view, idx].to(dev) for k in range(cached.shape[0])]
                    else:
                        t_out = [t(x) for t in teaching.teachers]
                s_out = model(to_view(x, *teaching.student_view) if teaching.student_view else x).float()
                batch = DistillBatch(s_out, y, t_out, prior, taps.pairs() if taps else [])
                loss = loss_fn(batch)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{desc}: loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate "
                    f"(--lr, now {settings.lr}) or check the data"
                )
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(list(model.parameters()) + list(loss_fn.parameters()), 5.0)
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(y), count + len(y)
            status["loss"] = total / count
            t_mark = time.perf_counter()
        train_s = time.perf_counter() - t_epoch
        val = evaluate(raw, val_dl, settings.select_metric)
        parts = {k: round(v, 4) for k, v in getattr(raw_loss, "parts", {}).items()}
        result.history.append({"epoch": epoch + 1, "loss": total / count, f"val_{settings.select_metric}": val,
                               "parts": parts, "train_seconds": round(train_s, 2),
                               "data_wait_seconds": round(wait, 3)})
        improved = val > result.best_val
        if improved:
            result.best_val, result.best_epoch = val, epoch + 1
        # early stop: the best epoch lies `patience` epochs back (best_epoch comes back with last.pt on resume)
        stale = epoch + 1 - result.best_epoch
        stop = (settings.keep == "best" and settings.patience > 0 and stale >= settings.patience
                and epoch + 1 < settings.epochs)
        if stop:
            result.stopped_early = epoch + 1
        if acc.is_main_process:  # every rank holds the same weights (DDP); rank 0 writes
            if improved:
                _atomic_save({k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}, best_path)
            _atomic_save({"model": raw.state_dict(), "loss": raw_loss.state_dict(), "opt": opt.state_dict(),
                          "sched": sched.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch,
                          "best_val": result.best_val, "best_epoch": result.best_epoch,
                          "history": result.history, "stopped_early": result.stopped_early}, last, keep_previous=True)
        acc.wait_for_everyone()
        console.print(f"  {desc} epoch {epoch + 1}: loss {total / count:.4f}  val {settings.select_metric} "
                      f"{val:.2f}%  ({train_s:.1f} s)")
        if stop:
            console.print(f"  {desc}: stopping early after epoch {epoch + 1} of {settings.epochs}: val "
                          f"{settings.select_metric} has not improved for {stale} epoch{'s' * (stale > 1)} (best "
                          f"{result.best_val:.2f} at epoch {result.best_epoch}, kept)", soft_wrap=True, markup=False)
            break
        if epoch == start and epoch + 1 < settings.epochs:  # once, after the first epoch this process trained
            from edgekd.plan import eta_line

            console.print(eta_line(time.perf_counter() - t_epoch, settings.epochs - epoch - 1, settings.epochs,
                                   settings.keep == "best" and 0 < settings.patience < settings.epochs),
                          soft_wrap=True, markup=False)
    if taps is not None:
        taps.remove()
    raw.cpu()
    for t in teaching.teachers:
        t.to(torch.device("cpu"))
    if settings.keep == "best" and best_path.is_file():
        raw.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    if acc.is_main_process:
        _atomic_save(raw.state_dict(), final)
        write_text(done, json.dumps({"best_val": result.best_val, "best_epoch": result.best_epoch,
                                     "metric": result.metric, "history": result.history,
                                     "stopped_early": result.stopped_early}))
    raw.eval()  # the caller's own module (DDP wraps it), holding the kept weights
    return result


def _atomic_save(obj: object, path: Path, keep_previous: bool = False) -> None:
    """Write ``path`` whole or not at all; ``keep_previous`` keeps the file it replaces as ``NAME.prev.pt`` (the
    fallback when ``path`` is later found torn, e.g. by a copy cut short or a failing disk)."""
    with atomic(path) as tmp:  # torch reports a full disk as "[enforce fail at inline_container.cc]"
        torch.save(obj, tmp)
        if keep_previous and path.is_file():
            os.replace(path, _previous(path))


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def _read_checkpoint(path: Path) -> dict | str:
    """The checkpoint at ``path``, or one line saying why it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torn zip, truncated pickle, bad magic: all mean "unreadable"
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        return f"{path} is unreadable ({reason})"


def _resume_state(last: Path, desc: str) -> dict | None:
    """The training state to resume from: ``last.pt``, else the one before it (``last.prev.pt``) when ``last.pt``
    is torn, else None (start the stage over). An unreadable file is kept aside as ``NAME.torn``, never deleted."""
    problems = []
    for path in (last, _previous(last)):
        if not path.is_file():
            continue
        state = _read_checkpoint(path)
        if isinstance(state, dict):
            if problems:
                console.print(f"  {desc}: {'; '.join(problems)}; resuming from the checkpoint before it, {path}",
                              soft_wrap=True, markup=False)
            return {**state, "file": path}
        problems.append(state)
        os.replace(path, path.with_name(path.name + ".torn"))
    if problems:
        console.print(f"  {desc}: {'; '.join(problems)}; no readable checkpoint is left, so {desc} starts over "
                      f"(the unreadable files are kept as *.torn)", soft_wrap=True, markup=False)
    return None
