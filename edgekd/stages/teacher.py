"""The teacher stage: each given teacher (checked, head re-trained when its classes differ), or the shipped /
trained default."""

from __future__ import annotations

from pathlib import Path

from edgekd.distill.metrics import METRIC_LABEL
from edgekd.progress import console
from edgekd.results import Scores, TeacherResult
from edgekd.run_context import Run

# teachers trained by this project and shipped under models/ (with a model card), by (data, arch)
SHIPPED_TEACHERS = {("builtin:shapes10", "mobilevit_s"): "shapes10-mobilevit_s.safetensors"}


def teacher(r: Run) -> TeacherResult:
    """Each given teacher (checked, head re-trained when its classes differ), or the shipped / trained default."""
    from edgekd.teacher import TeacherRecipe, build_teacher, onnx_teacher_card, parse_spec, teacher_view

    cfg = r.cfg
    cards = []
    for i, spec in enumerate(cfg.teachers):
        kind, value = parse_spec(spec.spec)
        view = teacher_view(spec, r.data)
        if kind == "onnx":
            card = onnx_teacher_card(Path(value), r.data, view)
        else:
            recipe = TeacherRecipe(arch=value, epochs=cfg.teacher_epochs, seed=cfg.seed, **_fit_opts(cfg))
            out = r.path("teacher", f"teacher{i}.safetensors")
            work = r.path("teacher", f"train{i}-{r.stage_key}")
            # a named teacher without weights starts from its pretrained ones (never silently random)
            _, card = build_teacher(r.data, recipe, spec.weights, work, out, view=view, required=True)
            card = {"path": str(out), **card}
        card["weight"] = spec.weight
        cards.append(card)
    if not cfg.teachers:
        recipe = TeacherRecipe(arch=cfg.teacher_arch, epochs=cfg.teacher_epochs, seed=cfg.seed, **_fit_opts(cfg))
        weights, shipped = cfg.teacher_arch_weights, None
        if (cfg.data, cfg.teacher_arch) in SHIPPED_TEACHERS:
            from edgekd.shipped import shipped_dir

            shipped = shipped_dir("models") / SHIPPED_TEACHERS[(cfg.data, cfg.teacher_arch)]
            shipped = shipped if shipped.is_file() else None
            weights = shipped or weights
        out = r.path("teacher", "teacher0.safetensors")
        _, card = build_teacher(r.data, recipe, weights, r.path("teacher", f"train0-{r.stage_key}"), out,
                                option="teacher_arch_weights")
        if shipped is not None:
            card["how"] = f"shipped with edgekd: models/{weights.name}"
        cards.append({"path": str(out), **card, "weight": 1.0})
    m = cards[0]["metric"]
    for c in cards:
        console.print(f"teacher {c['arch']} ({c['how']}): test {METRIC_LABEL[m]} {Scores.read(c, 'test').main:.2f}%")
    slim = [{k: v for k, v in c.items() if k != "history"} for c in cards]
    main = Scores.read(cards[0], "test")
    return TeacherResult(slim, " + ".join(c["arch"] for c in cards), "; ".join(c["how"] for c in cards),
                         Scores(m, {m: main.main}))


def _fit_opts(cfg) -> dict:
    """The teacher's training options from the run's: augmentation (at least light), mixing, sampler, early
    stopping, selection metric and class weights; segmentation teachers train at the run's batch size (dense
    maps: 64 images of 320x480 do not fit)."""
    from edgekd.teacher import teacher_augment

    out = {"augment": teacher_augment(cfg.augment), "crop_scale": cfg.crop_scale, "mixup": cfg.mixup,
           "cutmix": cfg.cutmix, "balanced": cfg.sampler == "balanced", "patience": cfg.patience,
           "keep": "last" if cfg.select_epoch == "last" else "best",
           "select_metric": cfg.select_metric, "class_weights": cfg.class_weights,
           "head_prior": cfg.seg_head_prior}
    return {**out, "batch_size": cfg.batch_size} if cfg.task == "segment" else out
