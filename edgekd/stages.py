"""The seven pipeline stages. Each takes the Run and returns a JSON-able result (cached by pipeline.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.artifacts import ExportedModel, from_json, to_json
from edgekd.errors import ConfigError, ParityError
from edgekd.pipeline import Run
from edgekd.progress import console

# teachers trained by this project and shipped under models/ (with a model card), by (data, arch)
SHIPPED_TEACHERS = {("builtin:shapes10", "mobilevit_s"): "shapes10-mobilevit_s.safetensors"}
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _inputs(r: Run, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n preprocessed samples of a split (class-balanced), as float32 NCHW + labels."""
    src = getattr(r.data, split).head(n)
    return r.data.preprocess.batch([src.image(i) for i in range(len(src))]), src.labels


def preflight(r: Run) -> None:
    """Cheap checks of names and paths before any stage spends minutes."""
    from edgekd.data import BUILTIN_PREFIX
    from edgekd.errors import DataError
    from edgekd.teacher import parse_spec

    cfg = r.cfg
    if cfg.task != "classify":
        raise ConfigError("--task segment is not available yet (segmentation lands with issue 9); use classify")
    if len(cfg.teachers) > 1:
        raise ConfigError("several teachers arrive with the distillation engine; give one --teacher for now")
    for t in cfg.teachers:
        parse_spec(t.spec)
        if t.weights is not None and not t.weights.is_file():
            raise ConfigError(f"teacher weights {t.weights} do not exist")
    if not cfg.data.startswith(BUILTIN_PREFIX) and not Path(cfg.data).is_dir():
        raise DataError(f"data folder {cfg.data} does not exist" if not Path(cfg.data).exists()
                        else f"data path {cfg.data} is not a folder")
    import timm

    from edgekd.models.factory import create_timm

    for name in {cfg.student, *(parse_spec(t.spec) for t in cfg.teachers)}:
        if not timm.is_model(name):
            create_timm(name, 2)  # raises with suggestions


def teacher(r: Run) -> dict:
    """Load the given teacher, the shipped one for the built-in data, or train one."""
    from edgekd.teacher import TeacherRecipe, build_teacher, parse_spec

    cfg = r.cfg
    recipe = TeacherRecipe(arch=cfg.teacher_arch, epochs=cfg.teacher_epochs, seed=cfg.seed)
    weights = None
    if cfg.teachers:
        recipe = TeacherRecipe(arch=parse_spec(cfg.teachers[0].spec), epochs=cfg.teacher_epochs, seed=cfg.seed)
        weights = cfg.teachers[0].weights
    elif (cfg.data, cfg.teacher_arch) in SHIPPED_TEACHERS:
        shipped = MODELS_DIR / SHIPPED_TEACHERS[(cfg.data, cfg.teacher_arch)]
        weights = shipped if shipped.is_file() else None
    out = r.path("teacher", "teacher.safetensors")
    _, card = build_teacher(r.data, recipe, weights, r.path("teacher", "train"), out)
    if not cfg.teachers and weights is not None:
        card["how"] = f"shipped with edgekd: models/{weights.name}"
    console.print(f"teacher {card['arch']} ({card['how']}): test top-1 {card['test_top1']:.2f}%")
    return {"path": str(out), **card}


def distill(r: Run) -> dict:
    """Train the student from the teacher with the chosen loss; best weights by validation top-1."""
    import torch

    from edgekd.data.torchdata import loader
    from edgekd.distill.losses import build_loss
    from edgekd.distill.trainer import TrainSettings, fit, predict, top1
    from edgekd.models.factory import create_timm, load_checkpoint, save_checkpoint

    cfg, data = r.cfg, r.data
    t_model, _ = load_checkpoint(Path(r.results["teacher"]["path"]))
    student = create_timm(cfg.student, len(data.classes))
    train_dl = loader(data.train, data.preprocess, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed)
    val_dl = loader(data.val, data.preprocess, 256, shuffle=False)
    cached = None
    if not cfg.augment and cfg.loss != "ce":
        # without augmentation every epoch shows the teacher the same images: run it once
        plain = loader(data.train, data.preprocess, 256, shuffle=False)
        cached = torch.from_numpy(predict(t_model, plain, "teacher logits (cached once)"))
    loss = build_loss("ce") if cfg.loss == "ce" else build_loss("kd", temperature=cfg.temperature, alpha=cfg.alpha)
    settings = TrainSettings(cfg.epochs, cfg.lr, cfg.weight_decay, seed=cfg.seed)
    res = fit(student, train_dl, val_dl, loss, settings, r.path("student", "train"),
              teacher=None if cached is not None or cfg.loss == "ce" else t_model, teacher_logits=cached,
              desc=f"distill {cfg.student}")
    acc = top1(predict(student, loader(data.test, data.preprocess, 256, shuffle=False)), data.test.labels)
    out = r.path("student", "student.safetensors")
    card = {"arch": cfg.student, "role": "student", "classes": data.classes, "data": data.name,
            "preprocess": data.preprocess.to_dict(), "test_top1": acc, "best_val_top1": res.best_val_top1,
            "best_epoch": res.best_epoch, "history": res.history, "loss": cfg.loss,
            "temperature": cfg.temperature, "alpha": cfg.alpha,
            "params_m": sum(p.numel() for p in student.parameters()) / 1e6}
    save_checkpoint(student, out, card)
    console.print(f"student {cfg.student}: test top-1 {acc:.2f}% (best val {res.best_val_top1:.2f}% "
                  f"at epoch {res.best_epoch})")
    return {"path": str(out), **{k: v for k, v in card.items() if k != "history"}}


def export(r: Run) -> list[dict]:
    """FP32 ONNX (the root graph), then every other FP32 format of the target derived from it."""
    import torch

    from edgekd.export.base import get_exporter
    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import load_checkpoint

    model, card = load_checkpoint(Path(r.results["distill"]["path"]))
    h, w = r.data.preprocess.size
    meta = {"edgekd.preprocess": card["preprocess"], "edgekd.classes": card["classes"], "edgekd.arch": card["arch"]}
    onnx_path = export_torch(model, torch.zeros(1, 3, h, w), r.path("export", "student-fp32.onnx"), meta)
    out = []
    for fmt in r.target.formats:
        exp = get_exporter(fmt).export(onnx_path, r.path("export", "x").parent, "student-fp32")
        console.print(f"exported {exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")
        out.append(to_json(exp))
    return out


def quantize(r: Run) -> list[dict]:
    """NNCF PTQ int8 of each FP32 export, calibrated on training images."""
    from edgekd.quantize.ptq import quantize as ptq

    if "int8" not in r.target.precisions:
        return []
    calib, _ = _inputs(r, "train", r.cfg.calib_samples)
    transformer = "vit" in r.cfg.student or "former" in r.cfg.student
    out = []
    for d in r.results["export"]:
        fp32 = from_json(ExportedModel, d)
        exp = ptq(fp32, calib, r.path("export", "x").parent, "student-int8", r.cfg.quant_preset, transformer)
        console.print(f"quantized {exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")
        out.append(to_json(exp))
    return out


def verify(r: Run) -> dict:
    """Every exported model against the PyTorch student; a failure stops the run after the report is written."""
    import json

    import torch

    from edgekd.models.factory import load_checkpoint
    from edgekd.verify import verify_model

    x, y = _inputs(r, "test", r.cfg.verify_samples)
    student, _ = load_checkpoint(Path(r.results["distill"]["path"]))
    teacher_m, _ = load_checkpoint(Path(r.results["teacher"]["path"]))
    with torch.no_grad():
        ref = np.concatenate([student(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)])
        t_out = np.concatenate([teacher_m(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)])
    results = []
    for d in r.results["export"] + r.results["quantize"]:
        res = verify_model(from_json(ExportedModel, d), x, y, ref, r.target)
        mark = "[green]pass[/]" if res.passed else f"[red]FAIL[/] ({res.reason})"
        console.print(f"verify {res.model}: agreement {res.top1_agreement:.4f}, max|diff| {res.max_abs_diff:.3g}, "
                      f"top-1 {res.metric:.2f}% ({res.metric_delta:+.2f}) {mark}")
        results.append(to_json(res))
    report = {"samples": len(y), "teacher_top1": float((t_out.argmax(1) == y).mean() * 100),
              "student_top1": float((ref.argmax(1) == y).mean() * 100), "models": results}
    r.path("verify.json").write_text(json.dumps(report, indent=2))
    failed = [m for m in results if not m["passed"]]
    if failed:
        raise ParityError(f"{failed[0]['model']} failed the {r.target.name} parity gate: {failed[0]['reason']} "
                          f"(report: {r.root / 'verify.json'})")
    return report


def bench(r: Run) -> list[dict]:
    """Batch-1 latency on this machine: teacher and student in torch, every export in its runtime."""
    from edgekd.bench.latency import bench_runtime, bench_torch
    from edgekd.models.factory import load_checkpoint
    from edgekd.runtimes import runtime_for
    from edgekd.verify import RUNTIME_OF_FORMAT

    x, _ = _inputs(r, "test", 1)
    th, cfg = r.target.threads, r.cfg
    out = []
    for role in ("teacher", "distill"):
        path = Path(r.results[role]["path"])
        model, card = load_checkpoint(path)
        name = "teacher" if role == "teacher" else "student"
        res = bench_torch(model, x, f"{name}-torch", th, path.stat().st_size / 1e6, max(5, cfg.bench_warmup // 2),
                          max(10, cfg.bench_iters // 2))
        out.append(to_json(res))
    for d in r.results["export"] + r.results["quantize"]:
        exp = from_json(ExportedModel, d)
        with runtime_for(exp.path, RUNTIME_OF_FORMAT[exp.format], th, r.target.openvino_inference_precision) as rt:
            res = bench_runtime(rt, x, exp.key, exp.precision, th, exp.size_mb(), cfg.bench_warmup, cfg.bench_iters)
        out.append(to_json(res))
    return out


def bundle(r: Run) -> dict:
    """The deployable folder + tarball, with manifest and report."""
    from edgekd.bundle import write_bundle

    return write_bundle(r)
