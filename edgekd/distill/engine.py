"""The distillation stage's engine: teachers from the teacher stage, a schedule of stages, one student.

A schedule is a list of stages, each with its own epochs, loss mix and learning rate (HumP-KD's progressive
multi-stage distillation: e.g. 1: hint only, 2: hint + kd, 3: kd). Every stage resumes on its own after a kill;
the last stage keeps the best weights by the validation metric.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from edgekd.config import RunConfig, StageSpec, schedule, with_loss_defaults
from edgekd.data import DataSplits, base_preprocess
from edgekd.data import augment as aug
from edgekd.data.torchdata import loader
from edgekd.distill.catalog import build_loss
from edgekd.distill.losses import LossMix
from edgekd.distill.teachers import OnnxTeacher, OpenVinoTeacher, Teacher, TorchTeacher, View
from edgekd.distill.trainer import Teaching, TrainResult, TrainSettings, fit, predict
from edgekd.errors import ConfigError
from edgekd.progress import console


def build_mix(stage: StageSpec) -> LossMix:
    return LossMix([(t.name, t.weight, build_loss(t.name, **t.params)) for t in stage.losses],
                   [t.ramp_epochs for t in stage.losses])


def check_schedule(cfg: RunConfig, teacher_kinds: list[str]) -> None:
    """Refuse, before any training, a schedule whose losses cannot run with the given teachers/pairs."""
    for st in schedule(cfg):
        mix = build_mix(st)
        label = f"stage {st.name or '?'}"
        if "teacher" in mix.needs and not teacher_kinds:
            raise ConfigError(f"{label}: losses {mix.names} need a teacher")
        if (cfg.mixup or cfg.cutmix) and "dkd" in mix.names:
            raise ConfigError(f"{label}: dkd needs each image's one true class; mixup / cutmix blend two")
        if "features" in mix.needs:
            if not cfg.features:
                raise ConfigError(f"{label}: hint/attention losses need `features:` (student/teacher layer pairs)")
            for p in cfg.features:
                if p.teacher_index >= len(teacher_kinds):
                    raise ConfigError(f"feature pair {p.student} -> {p.teacher} refers to teacher "
                                      f"{p.teacher_index}, but {len(teacher_kinds)} teacher(s) given")
                if teacher_kinds[p.teacher_index] == "onnx":
                    raise ConfigError(f"{label}: teacher {p.teacher_index} is ONNX (logits only); feature losses "
                                      f"(hint, attention) need a PyTorch teacher; use kd, dkd or multi_teacher")


def load_teachers(cards: list[dict], data: DataSplits, src: View | None = None, precision: str | None = None,
                  calib_samples: int = 300) -> list[Teacher]:
    """Teachers fed from batches in the ``src`` view (default: the student's), at ``precision`` (the recipe's
    ``teacher_precision``; None = fp32: ONNX in onnxruntime, PyTorch as loaded)."""
    from edgekd.models.factory import load_checkpoint

    src = src or View.of(data.preprocess)
    out: list[Teacher] = []
    calib = None
    for c in cards:
        view = View.from_dict(c["view"])
        if c["kind"] == "onnx" and precision in ("bf16", "int8"):
            if precision == "int8" and calib is None:
                calib = _calibration(data, src, calib_samples)
            out.append(OpenVinoTeacher(c["arch"], Path(c["path"]), view, src, precision, calib=calib))
        elif c["kind"] == "onnx":
            out.append(OnnxTeacher(c["arch"], Path(c["path"]), view, src))
        else:
            if precision == "int8":
                raise ConfigError(f"teacher_precision int8 covers ONNX teachers; {c['arch']} is a PyTorch "
                                  f"teacher: use bf16 (autocast) or fp32, or export it to ONNX")
            model, _ = load_checkpoint(Path(c["path"]))
            out.append(TorchTeacher(c["arch"], model, view, src, bf16=precision == "bf16"))
        if len(c["classes"]) != len(data.classes):
            raise ConfigError(f"teacher {c['arch']} predicts {len(c['classes'])} classes but the student has "
                              f"{len(data.classes)}")
    return out


@torch.no_grad()
def cache_logits(teachers: list[Teacher], data: DataSplits, base, views: int, augment=False,
                 crop_scale=None) -> torch.Tensor:
    """Teacher logits for every training image under each view: [teachers, views, samples, classes]."""
    per_t = []
    for t in teachers:
        per_v = []
        for v in range(max(1, views)):
            dl = loader(data.train, base, data.eval_batch, shuffle=False, views=views, augment=augment,
                        fixed_view=v if views else None, crop_scale=crop_scale)
            if isinstance(t, TorchTeacher):
                per_v.append(torch.from_numpy(predict(_Call(t), dl, f"cache {t.name} view {v + 1}/{max(1, views)}")))
            else:
                from edgekd.progress import track

                per_v.append(torch.cat([t(x) for x, *_ in track(dl, len(dl), f"cache {t.name} view {v + 1}")]))
        per_t.append(torch.stack(per_v))
    return torch.stack(per_t).float()


def _calibration(data: DataSplits, src: View, n: int):
    """The first ``n`` training images of each class in turn (``head`` picks them class-balanced), as a float32
    NCHW batch normalised for the ``src`` view: what an int8 teacher is calibrated on."""
    import numpy as np

    from edgekd.preprocess import Preprocess

    pre = Preprocess(tuple(src.size), tuple(src.mean), tuple(src.std))
    images = data.train.head(n)
    return np.stack([pre(images.image(i)) for i in range(len(images))]).astype(np.float32)


class _Call(nn.Module):
    def __init__(self, t: TorchTeacher) -> None:
        super().__init__()
        self.model, self.t = t.model, t

    def forward(self, x):
        return self.t(x)


def distill_student(student: nn.Module, data: DataSplits, cfg: RunConfig, teacher_cards: list[dict],
                    workdir: Path, stages: list[StageSpec] | None = None,
                    tweak: dict | None = None, check: dict | None = None,
                    sweep: dict | None = None) -> tuple[TrainResult, list[dict]]:
    """Train ``student`` through the schedule; returns the last stage's result and every stage's summary.

    ``stages`` replaces the recipe's schedule and ``tweak`` overrides fields of every stage's TrainSettings
    (quantization-aware distillation uses both: its own short, low-LR stage with BatchNorm frozen). With
    ``cfg.teacher_check`` epochs and teachers, the teachers are first checked against a labels-only probe student
    (:func:`teacher_check`); its record goes into ``check`` when a dict is given. With ``cfg.sweep`` (the recipe's
    own schedule only), a short run per combination of loss values picks the full run's (:func:`loss_sweep`); its
    record goes into ``sweep``. Loss defaults that depend on the data (dkd's beta for the class count) are filled
    in first, so every stage summary records the values trained with.
    """
    own_schedule = stages is None
    stages = with_loss_defaults(stages or schedule(cfg), len(data.classes))
    mixes = [build_mix(st) for st in stages]
    uses_teacher = any("teacher" in m.needs for m in mixes)
    sides = [data.preprocess.size[0]] + [c["view"]["size"][0] for c in teacher_cards if uses_teacher]
    base = base_preprocess(data, sides)
    teachers = (load_teachers(teacher_cards, data, View.of(base), cfg.teacher_precision, cfg.calib_samples)
                if uses_teacher else [])
    if teachers and cfg.teacher_precision in ("bf16", "int8"):
        how = "bf16 hint" if cfg.teacher_precision == "bf16" else f"NNCF PTQ on {cfg.calib_samples} training images"
        console.print(f"teachers run at {cfg.teacher_precision} (ONNX: OpenVINO, {how}; PyTorch: bf16 autocast)")
    check_schedule(cfg, [c["kind"] for c in teacher_cards] if uses_teacher else [])
    prior = torch.tensor([c.get("weight", 1.0) for c in teacher_cards]) if teachers else None
    prior = prior / prior.sum() if prior is not None else None
    cached = None
    only_logits = all("features" not in m.needs for m in mixes)
    augment = aug.is_on(cfg.augment)
    if teachers and only_logits and (not augment or cfg.teacher_cache_views):
        cached = cache_logits(teachers, data, base, cfg.teacher_cache_views if augment else 0, cfg.augment,
                              cfg.crop_scale)
    teaching = Teaching(teachers, prior, list(cfg.features), cached, (View.of(base), View.of(data.preprocess)))
    if base.size != data.preprocess.size:
        console.print(f"images read at {base.size[0]} px; the student sees them resized to "
                      f"{data.preprocess.size[0]} px, each teacher at its own size")
    views = cfg.teacher_cache_views if augment else 0
    train_dl = loader(data.train, base, cfg.batch_size, shuffle=True, augment=cfg.augment,
                      seed=cfg.seed, views=views, balanced=cfg.sampler == "balanced", crop_scale=cfg.crop_scale)
    val_dl = loader(data.val, data.preprocess, data.eval_batch, shuffle=False)
    if teachers and tweak is None and cfg.teacher_check:
        rec = teacher_check(student, teaching, data, cfg, base, train_dl, val_dl, workdir / "teacher-check")
        if check is not None:
            check.update(rec)
    if cfg.sweep and own_schedule and tweak is None:
        from edgekd.distill.sweep import with_params

        rec = loss_sweep(student, teaching, data, cfg, stages[0], train_dl, val_dl, workdir / "sweep")
        stages = [with_params(stages[0], rec["winner"])]
        mixes = [build_mix(st) for st in stages]
        if sweep is not None:
            sweep.update(rec)
    weighted = _class_weights(cfg, data, mixes)
    summary, res = [], None
    for i, (st, mix) in enumerate(zip(stages, mixes, strict=True)):
        final = i == len(stages) - 1
        settings = TrainSettings(st.epochs, st.lr or cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.seed,
                                 cfg.optimizer, cfg.select_metric,
                                 keep=("last" if cfg.select_epoch == "last" else "best") if final else "last",
                                 mixup=cfg.mixup, cutmix=cfg.cutmix, num_classes=len(data.classes),
                                 patience=cfg.patience or 0)
        settings = replace(settings, **(tweak or {}))
        name = st.name or f"stage{i + 1}"
        if len(stages) > 1:
            console.print(f"stage {i + 1}/{len(stages)} ({name}): {st.epochs} epochs, losses "
                          + ", ".join(f"{w}x{n}" for n, w in zip(mix.names, mix.weights, strict=True)))
        console.print(_plan(cfg, data, teacher_cards if uses_teacher else [], name, i, len(stages), mix, settings,
                            weighted), soft_wrap=True, markup=False)
        res = fit(student, train_dl, val_dl, mix, settings, workdir / f"{i + 1}-{name}", teaching,
                  desc=f"{name} {cfg.student}")
        summary.append({"stage": name, "epochs": st.epochs, "losses": [t.model_dump() for t in st.losses],
                        "best_val": res.best_val, "best_epoch": res.best_epoch, "stopped_early": res.stopped_early,
                        "history": res.history})
    return res, summary


LABELS_ONLY = {"classify": "ce", "segment": "dice_ce"}


@torch.no_grad()
def teacher_score(teaching: Teaching, val_dl, metric: str) -> float:
    """The validation score of the teachers as the student is taught: their prior-weighted mean probability (one
    teacher: its own logits). ``val_dl`` yields batches in the teachers' source view."""
    from edgekd.distill.seg_metrics import confusion, seg_scores
    from edgekd.distill.trainer import score

    prior = teaching.prior if teaching.prior is not None else torch.ones(len(teaching.teachers))
    # the truth is what the loader yields beside each batch: a segmentation split's masks come resized to the view
    # (the dataset's own masks are files at their native size); masks go into a confusion matrix batch by batch,
    # as trainer.evaluate scores the student
    out, truth, conf = [], [], None
    for x, y, *_ in val_dl:
        probs = [t(x).float().softmax(1) for t in teaching.teachers]
        logp = torch.log(sum(w * p for w, p in zip(prior.tolist(), probs, strict=True)) + 1e-12).cpu()
        if logp.ndim == 4:
            c = confusion(logp.argmax(1).numpy(), y.numpy(), logp.shape[1])
            conf = c if conf is None else conf + c
        else:
            out.append(logp)
            truth.append(y)
    if conf is not None:
        return seg_scores(conf)["miou"]
    return score(metric, torch.cat(out).numpy(), torch.cat(truth).numpy())


def teacher_check(student: nn.Module, teaching: Teaching, data: DataSplits, cfg: RunConfig, base, train_dl,
                  val_dl, workdir: Path) -> dict:
    """Is the teacher better than what labels alone teach? A copy of the untrained student is trained on labels
    only for ``cfg.teacher_check`` epochs (same data, augmentation, optimiser and seed; the student itself is not
    touched) and its best validation score is compared with the teachers'. A teacher that is not better gets one
    warning line: KD at a high alpha pulls the student toward a weaker model (issue 20). Returns the record kept in
    the student's card."""
    import copy

    from edgekd.distill.metrics import METRIC_LABEL

    metric = cfg.select_metric
    t_val = teacher_score(teaching, loader(data.val, base, data.eval_batch, shuffle=False), metric)
    probe = copy.deepcopy(student)
    settings = TrainSettings(cfg.teacher_check, cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.seed, cfg.optimizer,
                             metric, keep="best", mixup=cfg.mixup, cutmix=cfg.cutmix, num_classes=len(data.classes))
    loss = LossMix([(LABELS_ONLY[data.task], 1.0, build_loss(LABELS_ONLY[data.task]))])
    res = fit(probe, train_dl, val_dl, loss, settings, workdir, Teaching(student_view=teaching.student_view),
              desc=f"labels-only probe {cfg.student}")
    del probe
    names = " + ".join(t.name for t in teaching.teachers)
    better = t_val > res.best_val
    rec = {"teachers": names, "metric": metric, "teacher_val": t_val, "probe_val": res.best_val,
           "probe_epochs": cfg.teacher_check, "teacher_better": better}
    label, n = METRIC_LABEL[metric], cfg.teacher_check
    epochs = f"{n} epoch{'s' if n != 1 else ''}"
    if better:
        console.print(f"teacher check: {names} scores {t_val:.2f} val {label}, above a labels-only {cfg.student} "
                      f"after {epochs} ({res.best_val:.2f})", soft_wrap=True, markup=False)
    else:
        console.print(f"[yellow]warning:[/] teacher check: {names} scores {t_val:.2f} val {label}, no better than a "
                      f"labels-only {cfg.student} after only {epochs} ({res.best_val:.2f}); "
                      f"distilling from it (alpha {cfg.alpha}) pulls the student toward a weaker model. Use a "
                      f"stronger or pretrained teacher, a lower alpha, or `loss: ce`", soft_wrap=True)
    return rec


def loss_sweep(student: nn.Module, teaching: Teaching, data: DataSplits, cfg: RunConfig, stage: StageSpec,
               train_dl, val_dl, workdir: Path) -> dict:
    """Which loss values teach best here? For every combination of ``cfg.sweep`` (a grid over the stage's one
    loss term), a copy of the untrained student is distilled for ``cfg.sweep_epochs`` epochs (same data, teachers,
    optimiser and seed for each, so the comparison is fair; the student itself is not touched) and scored by its
    best validation ``select_metric``. The winner (``sweep.pick``: ties go to the configured values, then the
    smaller temperature) is returned in the record kept in the student's card; each short run resumes after a
    kill like any training."""
    import copy

    from edgekd.distill.metrics import METRIC_LABEL
    from edgekd.distill.sweep import alpha_caution, configured, grid, pick, slug, with_params, words

    combos = grid(cfg.sweep)
    n, e, metric = len(combos), cfg.sweep_epochs, cfg.select_metric
    label = METRIC_LABEL[metric]
    term = stage.losses[0]
    defaults = configured(term, cfg.sweep)
    console.print(f"sweep: {n} combination{'s' * (n != 1)} of {term.name} ({', '.join(cfg.sweep)}) x {e} "
                  f"epoch{'s' * (e != 1)} each, {cfg.student} from its start, best val {label} wins; then the full "
                  f"run of {stage.epochs} epoch{'s' * (stage.epochs != 1)}", soft_wrap=True, markup=False)
    caution = alpha_caution(term.name, cfg.sweep)
    if caution:
        console.print(f"[yellow]warning:[/] {caution}", soft_wrap=True)
    results = []
    for i, params in enumerate(combos):
        st = with_params(stage, params)
        mix = build_mix(st)
        _class_weights(cfg, data, [mix])
        settings = TrainSettings(e, st.lr or cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.seed, cfg.optimizer,
                                 metric, keep="best", mixup=cfg.mixup, cutmix=cfg.cutmix,
                                 num_classes=len(data.classes))
        probe = copy.deepcopy(student)
        res = fit(probe, train_dl, val_dl, mix, settings, workdir / f"{i + 1}-{slug(params)}", teaching,
                  desc=f"sweep {i + 1}/{n} ({words(params)})")
        del probe
        results.append({"params": params, "val": res.best_val, "best_epoch": res.best_epoch})
        console.print(f"sweep {i + 1}/{n}: {words(params)}: val {label} {res.best_val:.2f}", soft_wrap=True,
                      markup=False)
    k = pick(results, defaults)
    win = results[k]
    same = all(defaults.get(key) == v for key, v in win["params"].items())
    console.print(f"sweep winner: {words(win['params'])} (val {label} {win['val']:.2f}"
                  f"{', the configured values' if same else ''}); the full run uses it", soft_wrap=True,
                  markup=False)
    return {"loss": term.name, "grid": dict(cfg.sweep), "epochs": e, "metric": metric, "configured": defaults,
            "results": results, "winner": win["params"], "winner_val": win["val"]}


def _class_weights(cfg: RunConfig, data: DataSplits, mixes: list[LossMix]) -> list[str]:
    """``class_weights: balanced``: weight the hard-label CE of every loss by class; the plan line's words."""
    if cfg.class_weights != "balanced" or data.task == "segment":
        return []
    from edgekd.distill.losses import balanced_class_weights, set_class_weight
    from edgekd.plan import class_counts, weights_words

    w = balanced_class_weights(class_counts(data).values())
    for m in mixes:
        set_class_weight(m, w)
    return [weights_words(w, data.classes)]


def _plan(cfg: RunConfig, data: DataSplits, cards: list[dict], name: str, i: int, n: int, mix: LossMix,
          settings: TrainSettings, extra: list[str]) -> str:
    from edgekd.plan import plan_line

    what = f"{name} {cfg.student}" + (f" (stage {i + 1}/{n})" if n > 1 else "")
    if cards:
        what += " from " + " + ".join(c["arch"] for c in cards)
    terms = zip(mix.names, mix.weights, strict=True)
    losses = "losses " + " + ".join(k if w == 1 else f"{w:g}x{k}" for k, w in terms)
    keep = "then" if i < n - 1 else settings.keep
    return plan_line(what, data, settings.epochs, cfg.batch_size, settings.select_metric, settings.patience,
                     keep, [losses, *extra])
