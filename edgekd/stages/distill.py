"""The distill stage: the student trained through the recipe's schedule."""

from __future__ import annotations

from edgekd.distill.metrics import METRIC_LABEL
from edgekd.progress import console
from edgekd.results import StudentResult, card_scores
from edgekd.run_context import Run


def distill(r: Run) -> StudentResult:
    """Train the student through the recipe's schedule; best weights by the validation metric."""
    from edgekd.data.torchdata import loader
    from edgekd.distill.engine import distill_student
    from edgekd.distill.trainer import test_report
    from edgekd.models.factory import save_checkpoint

    cfg, data = r.cfg, r.data
    import torch

    from edgekd.data import BUILTIN_PREFIX
    from edgekd.models.pretrained import build

    torch.manual_seed(cfg.seed)  # the student's initial weights follow the seed, whatever ran before in the process
    # its start (ImageNet, hub, file or random) is recorded in the card and the bundle manifest
    student, start = build(cfg.student, len(data.classes), cfg.student_weights, f"student {cfg.student}",
                           "--student-weights", synthetic=cfg.data.startswith(BUILTIN_PREFIX))
    if cfg.seg_head_prior:
        from edgekd.models.segmentation import start_at_prior

        start_at_prior(student, data, start)
    if cfg.stem_stride is not None:  # the stride does not change the weights: any start loads the same
        from edgekd.models.factory import adapt_stem

        adapt_stem(student, cfg.stem_stride, cfg.student)
    check: dict = {}
    sweep: dict = {}
    res, stages = distill_student(student, data, cfg, r.results["teacher"].teachers,
                                  r.path("student", f"train-{r.stage_key}"), check=check, sweep=sweep)
    rep = test_report(student, loader(data.test, data.preprocess, data.eval_batch, shuffle=False), data.classes)
    out = r.path("student", "student.safetensors")
    from edgekd.run_context import rank

    m = rep["metric"]
    card = {"arch": cfg.student, "role": "student", "task": cfg.task, "classes": data.classes, "data": data.name,
            "preprocess": data.preprocess.to_dict(), **card_scores(rep),
            "per_class": rep["per_class"], "select_metric": cfg.select_metric, "select_epoch": cfg.select_epoch,
            "best_val": res.best_val,
            "best_epoch": res.best_epoch, "stopped_early": res.stopped_early, "stages": stages, "loss": cfg.loss,
            "params_m": sum(p.numel() for p in student.parameters()) / 1e6, "weights": start,
            **({"stem_stride": cfg.stem_stride} if cfg.stem_stride is not None else {}),
            **({"teacher_check": check} if check else {}), **({"sweep": sweep} if sweep else {})}
    if rank() == 0:
        save_checkpoint(student, out, card)
    extra = (f"macro-F1 {rep['macro_f1']:.2f}" if m == "top1" else
             f"{data.classes[-1] if len(data.classes) == 2 else 'foreground'} IoU {rep['fg_iou']:.2f}, Dice "
             f"{rep['fg_dice']:.2f}, precision {rep['fg_precision']:.2f}, recall {rep['fg_recall']:.2f}")
    kept = (f"last epoch kept, {len(res.history)}; best val {cfg.select_metric} {res.best_val:.2f} was epoch "
            f"{res.best_epoch}" if cfg.select_epoch == "last" else
            f"best val {cfg.select_metric} {res.best_val:.2f} at epoch {res.best_epoch}")
    console.print(f"student {cfg.student}: test {METRIC_LABEL[m]} {rep[m]:.2f}%, {extra} ({kept})", soft_wrap=True)
    if m == "top1":
        from edgekd.plan import per_class_f1_line

        console.print(per_class_f1_line(rep["per_class"]), soft_wrap=True, markup=False)
    return StudentResult.from_json({"path": str(out), **{k: v for k, v in card.items() if k not in ("stages",)}})
