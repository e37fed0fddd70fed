"""The seven pipeline stages. Each takes the Run and returns a JSON-able result (cached by pipeline.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.artifacts import ExportedModel, from_json, to_json
from edgekd.distill.metrics import METRIC_LABEL
from edgekd.errors import ConfigError, ParityError
from edgekd.fileio import write_text
from edgekd.progress import console
from edgekd.quantize.tail import qonnx_from
from edgekd.run_context import Run

SEG_VERIFY_MAX = 200  # segmentation test images verify holds in memory at once (dense logits per runtime)
# teachers trained by this project and shipped under models/ (with a model card), by (data, arch)
SHIPPED_TEACHERS = {("builtin:shapes10", "mobilevit_s"): "shapes10-mobilevit_s.safetensors"}


def _inputs(r: Run, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n preprocessed samples of a split (class-balanced), as float32 NCHW + labels (segmentation:
    masks [n, H, W] at the input size)."""
    src = getattr(r.data, split).head(n)
    return r.data.preprocess.batch([src.image(i) for i in range(len(src))]), src.targets(r.data.preprocess)


def _preflight_segment(r: Run) -> None:
    """Segmentation runs: dense students and teachers, and the image/mask folder checked before any training."""
    from edgekd.models.segmentation import is_seg_model
    from edgekd.teacher import parse_spec

    cfg = r.cfg
    archs = [("student", cfg.student)] + [("teacher", v) for k, v in (parse_spec(t.spec) for t in cfg.teachers)
                                          if k != "onnx"]
    if not cfg.teachers:
        archs.append(("teacher_arch", cfg.teacher_arch))
    for role, arch in archs:
        if not is_seg_model(arch):
            raise ConfigError(f"--task segment: {role} {arch} is a classifier; use a segmentation model "
                              f"(unet_plain16, unet_mobilenetv3_large_100, unet_resnet18, unet_<timm encoder>)")
    data = r.data  # scans images/ + masks/: a missing mask or a size mismatch fails here
    console.print(f"segmentation data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
                  f"image-mask pairs, classes {', '.join(data.classes)}, input {data.preprocess.size[0]}x"
                  f"{data.preprocess.size[1]}")


def preflight(r: Run) -> None:
    """Cheap checks of names, paths and the loss schedule before any stage spends minutes."""
    from edgekd.config import schedule
    from edgekd.data import BUILTIN_PREFIX
    from edgekd.distill.engine import build_mix, check_schedule
    from edgekd.errors import DataError
    from edgekd.models.factory import create_timm, is_model
    from edgekd.teacher import parse_spec

    cfg = r.cfg
    kinds = []
    for t in cfg.teachers:
        kind, value = parse_spec(t.spec)
        kinds.append(kind)
        if kind == "onnx" and not Path(value).is_file():
            raise ConfigError(f"ONNX teacher {value} does not exist")
        if kind == "onnx" and t.weights is not None:
            raise ConfigError(f"teacher {t.spec}: an ONNX file carries its own weights; drop `weights`")
        if t.weights is not None and _is_file_choice(t.weights) and not t.weights.is_file():
            raise ConfigError(f"teacher weights {t.weights} do not exist")
    if not cfg.data.startswith(BUILTIN_PREFIX) and not Path(cfg.data).is_dir():
        raise DataError(f"data folder {cfg.data} does not exist" if not Path(cfg.data).exists()
                        else f"data path {cfg.data} is not a folder")
    for st in schedule(cfg):
        build_mix(st)  # unknown loss names and parameters fail here
    if cfg.sweep:  # and every combination of a sweep's values
        from edgekd.distill.sweep import grid, with_params

        for params in grid(cfg.sweep):
            build_mix(with_params(schedule(cfg)[0], params))
    from edgekd.data.augment import check as check_augment

    check_augment(cfg.augment, (64, 64), cfg.task, cfg.crop_scale)  # a bad transform list fails here
    check_schedule(cfg, kinds or ["torch"])
    if cfg.task == "segment":
        _preflight_segment(r)
    elif any(n.startswith("unet_") for n in (cfg.student, cfg.teacher_arch)):
        raise ConfigError(f"{cfg.student if cfg.student.startswith('unet_') else cfg.teacher_arch} is a "
                          f"segmentation model; add --task segment (with a folder of images/ and masks/)")
    names = {cfg.student, *(v for k, v in map(parse_spec, (t.spec for t in cfg.teachers)) if k != "onnx")}
    for name in names:
        if not is_model(name):
            create_timm(name, 2)  # raises with suggestions
    _preflight_weights(cfg, kinds)
    if cfg.features:  # layer names exist? (models built with random weights, no forward pass)
        from edgekd.distill.features import FeatureTap

        FeatureTap(create_timm(cfg.student, 2), [p.student for p in cfg.features], ["auto"] * len(cfg.features),
                   f"student {cfg.student}")
        for k, t in enumerate(cfg.teachers):
            mine = [p.teacher for p in cfg.features if p.teacher_index == k]
            if mine and kinds[k] != "onnx":
                FeatureTap(create_timm(parse_spec(t.spec)[1], 2), mine, ["auto"] * len(mine), f"teacher {t.spec}")
    from edgekd.export.preflight import preflight_student

    # the untrained student through the target's runtimes: an op they refuse fails now, not after training
    size = 64 if cfg.task == "segment" else cfg.image_size or 64  # op support does not depend on the size
    checked = preflight_student(cfg.student, len(r.data.classes) if cfg.task == "segment" else 10, size, r.target,
                                stem_stride=cfg.stem_stride)
    console.print(f"pre-flight: untrained {cfg.student} runs in {', '.join(checked)} ({r.target.name})")


def _is_file_choice(weights) -> bool:
    from edgekd.models.pretrained import kind

    return kind(str(weights)) == "file"


def _preflight_weights(cfg, kinds: list[str]) -> None:
    """Pretrained starts that cannot be had stop the run now, before a teacher trains: ``imagenet`` or a hub model
    asked for offline, a named teacher without weights whose pretrained ones are unreachable, a missing file."""
    from edgekd.data import BUILTIN_PREFIX
    from edgekd.models.pretrained import check
    from edgekd.teacher import parse_spec

    synthetic = cfg.data.startswith(BUILTIN_PREFIX)  # `auto` means none on the built-in synthetic data
    check(cfg.student, cfg.student_weights, f"student {cfg.student}", "--student-weights")
    for t, k in zip(cfg.teachers, kinds, strict=True):
        if k != "onnx" and (t.weights is None or not _is_file_choice(t.weights)):
            check(parse_spec(t.spec)[1], str(t.weights or "auto"), f"teacher {t.spec}", "--teacher-weights",
                  required=not synthetic)
    if not cfg.teachers and (cfg.data, cfg.teacher_arch) not in SHIPPED_TEACHERS:
        check(cfg.teacher_arch, cfg.teacher_arch_weights, f"teacher {cfg.teacher_arch}", "teacher_arch_weights")


def teacher(r: Run) -> dict:
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
        console.print(f"teacher {c['arch']} ({c['how']}): test {METRIC_LABEL[m]} {c[f'test_{m}']:.2f}%")
    slim = [{k: v for k, v in c.items() if k != "history"} for c in cards]
    return {"teachers": slim, "arch": " + ".join(c["arch"] for c in cards), "how": "; ".join(c["how"] for c in cards),
            "metric": m, f"test_{m}": cards[0][f"test_{m}"]}


def _fit_opts(cfg) -> dict:
    """The teacher's training options from the run's: augmentation (at least light), mixing, sampler, early
    stopping, selection metric and class weights; segmentation teachers train at the run's batch size (dense
    maps: 64 images of 320x480 do not fit)."""
    from edgekd.teacher import teacher_augment

    out = {"augment": teacher_augment(cfg.augment), "crop_scale": cfg.crop_scale, "mixup": cfg.mixup,
           "cutmix": cfg.cutmix, "balanced": cfg.sampler == "balanced", "patience": cfg.patience,
           "keep": "last" if cfg.select_epoch == "last" else "best",
           "select_metric": cfg.select_metric, "class_weights": cfg.class_weights}
    return {**out, "batch_size": cfg.batch_size} if cfg.task == "segment" else out


def distill(r: Run) -> dict:
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
    if cfg.stem_stride is not None:  # the stride does not change the weights: any start loads the same
        from edgekd.models.factory import adapt_stem

        adapt_stem(student, cfg.stem_stride, cfg.student)
    check: dict = {}
    sweep: dict = {}
    res, stages = distill_student(student, data, cfg, r.results["teacher"]["teachers"],
                                  r.path("student", f"train-{r.stage_key}"), check=check, sweep=sweep)
    rep = test_report(student, loader(data.test, data.preprocess, data.eval_batch, shuffle=False), data.classes)
    out = r.path("student", "student.safetensors")
    from edgekd.run_context import rank

    m = rep["metric"]
    scores = {f"test_{k}": v for k, v in rep.items() if isinstance(v, float)}
    card = {"arch": cfg.student, "role": "student", "task": cfg.task, "classes": data.classes, "data": data.name,
            "preprocess": data.preprocess.to_dict(), "metric": m, **scores,
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
    return {"path": str(out), **{k: v for k, v in card.items() if k not in ("stages",)}}


def export(r: Run) -> list[dict]:
    """FP32 ONNX (the root graph), then every other FP32 format of the target derived from it."""
    import torch

    from edgekd.export.catalog import get_exporter
    from edgekd.export.onnx import export_torch
    from edgekd.formats import FORMATS
    from edgekd.models.factory import load_checkpoint

    model, card = load_checkpoint(Path(r.results["distill"]["path"]))
    h, w = r.data.preprocess.size
    meta = {"edgekd.preprocess": card["preprocess"], "edgekd.classes": card["classes"], "edgekd.arch": card["arch"]}
    onnx_path = export_torch(model, torch.zeros(1, 3, h, w), r.path("export", "student-fp32.onnx"), meta)
    out = []
    for fmt in r.target.formats:
        if fmt == "tensorrt":
            from edgekd.export import tensorrt

            if not tensorrt.available():
                console.print("tensorrt: not importable here; engines are built on the device from the ONNX "
                              "(the bundle carries build_engine.sh)")
                continue
            exp = tensorrt.TensorRTExporter(r.target.tensorrt).export(onnx_path, onnx_path.parent, "student-fp16")
            console.print(f"exported {exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")
            out.append(to_json(exp))
            continue
        if FORMATS[fmt].export_from != "fp32":  # QONNX is made from the int8 Q/DQ graph in the quantize stage
            continue
        exp = get_exporter(fmt).export(onnx_path, r.path("export", "x").parent, "student-fp32")
        console.print(f"exported {exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")
        out.append(to_json(exp))
    return out


def quantize(r: Run) -> list[dict]:
    """int8 models: NNCF PTQ of each FP32 export, or the torch route (QAD, or PTQ under an accuracy bound)."""
    if "int8" not in r.target.precisions:
        return []
    calib, _ = _inputs(r, "train", r.cfg.calib_samples)
    if r.cfg.quantize_method == "qad" or r.cfg.max_accuracy_drop is not None:
        from edgekd.quantize import torch_stage

        return torch_stage.run(r, calib)
    from edgekd.formats import FORMATS
    from edgekd.quantize.ptq import quantize as ptq

    r.path("quantize.json").unlink(missing_ok=True)  # a torch-route report of an earlier config no longer applies
    transformer = "vit" in r.cfg.student or "former" in r.cfg.student
    # FPGA dataflow (QONNX) and TensorRT want symmetric int8: targets say so with quant_preset
    preset = r.target.quant_preset or r.cfg.quant_preset
    out = []
    for d in r.results["export"]:
        fp32 = from_json(ExportedModel, d)
        if not FORMATS[fp32.format].ptq:  # NNCF quantizes ONNX and IR; the others derive from the Q/DQ ONNX
            continue
        exp = ptq(fp32, calib, r.path("export", "x").parent, "student-int8", preset, transformer,
                  tuple(r.cfg.quant_ignored_scope))
        console.print(f"quantized {exp.key} (preset {preset}): {exp.path} ({exp.size_mb():.2f} MB)")
        if exp.format == "onnx" and "tensorrt" in r.target.formats:
            from edgekd.export.tensorrt import make_tensorrt_ready

            n, rep = make_tensorrt_ready(Path(exp.path))
            console.print(f"rewrote {n} uint8 Q/DQ nodes as symmetric int8 (TensorRT's explicit quantization); "
                          f"TensorRT Q/DQ check passed: {rep.quantize_nodes} QuantizeLinear, "
                          f"{rep.per_channel_weights} per-channel weights, symmetric int8")
        out.append(to_json(exp))
    if "qonnx" in r.target.formats:
        qdq = next((Path(d["path"]) for d in out if d["format"] == "onnx"), None)
        if qdq is None:  # the target ships no ONNX: its Q/DQ graph is made only to derive the QONNX
            fp32 = r.path("export", "student-fp32.onnx")
            qdq = Path(ptq(ExportedModel("onnx", "fp32", str(fp32), (str(fp32),)), calib, fp32.parent,
                           "student-int8-qdq", preset, transformer, tuple(r.cfg.quant_ignored_scope)).path)
        out.append(qonnx_from(r, qdq))
    return out


def verify(r: Run) -> dict:
    """Every exported model against the PyTorch student; a failure stops the run after the report is written."""
    import json

    import torch

    from edgekd.distill.trainer import score
    from edgekd.models.factory import load_checkpoint
    from edgekd.verify import verify_model

    seg = r.cfg.task == "segment"
    # dense outputs: the inputs, the reference and every runtime's output are held at once
    x, y = _inputs(r, "test", min(r.cfg.verify_samples, SEG_VERIFY_MAX) if seg else r.cfg.verify_samples)
    student, _ = load_checkpoint(Path(r.results["distill"]["path"]))
    step = r.data.eval_batch
    with torch.no_grad():
        ref = np.concatenate([student(torch.from_numpy(x[i:i + step])).numpy() for i in range(0, len(x), step)])
    results, m = [], "miou" if seg else "top1"
    for d in r.results["export"] + r.results["quantize"]:
        res = verify_model(from_json(ExportedModel, d), x, y, ref, r.target)
        mark = "[green]pass[/]" if res.passed else f"[red]FAIL[/] ({res.reason})"
        what = "pixel agreement" if seg else "agreement"
        console.print(f"verify {res.model}: {what} {res.top1_agreement:.4f}, max|diff| {res.max_abs_diff:.3g}, "
                      f"{METRIC_LABEL[m]} {res.metric:.2f}% ({res.metric_delta:+.2f}) {mark}")
        results.append(to_json(res))
    # the teacher's metric is the teacher stage's: its own view, the whole test split
    report = {"samples": len(y), "metric": m, f"teacher_{m}": r.results["teacher"][f"test_{m}"],
              f"student_{m}": score(m, ref, y), "models": results}
    write_text(r.path("verify.json"), json.dumps(report, indent=2))
    failed = [m for m in results if not m["passed"]]
    if failed:
        raise ParityError(f"{failed[0]['model']} failed the {r.target.name} parity gate: {failed[0]['reason']} "
                          f"(report: {r.root / 'verify.json'})")
    return report


def bench(r: Run) -> list[dict]:
    """Batch-1 latency on this machine: teacher and student in torch, every export in its runtime."""
    from edgekd.bench.latency import bench_runtime, bench_torch
    from edgekd.formats import timed_runtime
    from edgekd.models.factory import load_checkpoint
    from edgekd.runtimes import runtime_for

    x, _ = _inputs(r, "test", 1)
    th, cfg = r.target.threads, r.cfg
    out = []
    import torch

    from edgekd.distill.teachers import View, review

    t_card = r.results["teacher"]["teachers"][0]  # the first (main) teacher, in its own view
    tx = review(torch.from_numpy(x), View.of(r.data.preprocess), View.from_dict(t_card["view"])).numpy()
    warm, iters = max(5, cfg.bench_warmup // 2), max(10, cfg.bench_iters // 2)
    if t_card["kind"] == "onnx":
        path = Path(t_card["path"])
        with runtime_for(path, "onnxruntime", th, None) as rt:
            res = bench_runtime(rt, tx, "teacher-onnxruntime", "fp32", th, path.stat().st_size / 1e6, warm, iters)
    else:
        path = Path(t_card["path"])
        model, _ = load_checkpoint(path)
        res = bench_torch(model, tx, "teacher-torch", th, path.stat().st_size / 1e6, warm, iters)
    out.append(to_json(res))
    path = Path(r.results["distill"]["path"])
    model, _ = load_checkpoint(path)
    out.append(to_json(bench_torch(model, x, "student-torch", th, path.stat().st_size / 1e6, warm, iters)))
    for d in r.results["export"] + r.results["quantize"]:
        exp = from_json(ExportedModel, d)
        runtime = timed_runtime(exp.format)
        if runtime is None:  # not timed here (QONNX: the dataflow estimate below; TensorRT: on the device)
            continue
        with runtime_for(exp.path, runtime, th, r.target.openvino_inference_precision) as rt:
            res = bench_runtime(rt, x, exp.key, exp.precision, th, exp.size_mb(), cfg.bench_warmup, cfg.bench_iters)
        out.append(to_json(res))
    if r.target.estimate is not None and r.target.fpga is None:  # an FPGA's rows: the dataflow below
        out += _estimates(r)
    if r.target.fpga is not None:
        out += _fpga_estimates(r)
    for row in out:
        _energy(r, row)
    return out


def robustness(r: Run) -> dict:
    """Opt-in (``robustness:``): the teacher and every exported student on test images under ImageNet-C corruptions
    (edgekd.robustness); RUN/robustness.json and .png, a section of the bundle's report.md."""
    from edgekd import robustness as rb
    from edgekd.config import RobustnessSpec

    spec = r.cfg.robustness if isinstance(r.cfg.robustness, RobustnessSpec) else RobustnessSpec()
    names = spec.corruptions or list(rb.DEFAULT)
    report = rb.score_run(r, names, spec.severities, spec.samples, spec.seed)
    paths = rb.write(report, r.path("robustness.json"), r.path("robustness.png"))
    for m in report["models"]:
        rel = "-" if m["relative"] is None else f"{m['relative']:.3f}"
        console.print(f"robustness {m['model']}: clean {m['clean']:.2f}%, mCA {m['mca']:.2f}% (x{rel})")
    return {**report, **paths}


def _energy(r: Run, row: dict) -> None:
    """Energy per frame from the target's power model at the row's FPS: always labelled estimated (no meter is
    read in the pipeline; `edgekd.bench.energy.measure_energy` reads RAPL / NVML / Jetson rails where present)."""
    from edgekd.bench.energy import estimate_energy

    # a row measured here is the target only when the target is this kind of machine (a CPU)
    if r.target.power is None or not row.get("fps") or not (row.get("estimated") or r.target.device == "cpu"):
        return
    how = row.get("estimated") or "FPS measured on this machine"
    e = estimate_energy(row["fps"], r.target, row["model"], how)
    row["energy"] = to_json(e)
    row["energy_mj_per_frame"] = e.j_per_frame * 1e3


def _fpga_estimates(r: Run) -> list[dict]:
    """FINN-style dataflow FPS / latency of each QONNX model on the FPGA target (labelled estimated)."""
    from edgekd.artifacts import LatencyResult
    from edgekd.bench.fpga import fpga_estimate

    out = []
    for d in r.results["quantize"]:
        exp = from_json(ExportedModel, d)
        if exp.format != "qonnx":
            continue
        # the same graph as Q/DQ ONNX: ONNX's shape inference does not know QONNX's Quant op
        qdq = next(p for p in (Path(exp.path).with_name(n) for n in ("student-int8-qdq.onnx", "student-int8.onnx"))
                   if p.is_file())
        est = fpga_estimate(qdq, r.target)
        ms = est.latency_ms
        res = LatencyResult(f"{exp.key}@{r.target.name}", "finn", exp.precision, f"w{est.weight_bits}a"
                            f"{est.activation_bits}", 0, 0, ms, ms, ms, ms, est.fps, exp.size_mb(),
                            estimated=est.estimated)
        console.print(f"{res.model}: {est.fps:.0f} FPS, {est.frames_per_j:.1f} Frames/J, [yellow]{est.estimated}[/]")
        out.append(to_json(res))
    return out


def _estimates(r: Run) -> list[dict]:
    """Per-node latency estimate on the target device for each ONNX export (fp32 runs as fp16 in TensorRT)."""
    from edgekd.artifacts import LatencyResult
    from edgekd.bench.estimate import estimate_latency

    fit = r.target.estimate.fit
    out = []
    for d in r.results["export"] + r.results["quantize"]:
        exp = from_json(ExportedModel, d)
        if exp.format != "onnx":
            continue
        prec = exp.precision if exp.precision in fit else "fp16" if exp.precision == "fp32" and "fp16" in fit else None
        if prec is None:
            console.print(f"no estimate for {exp.key}@{r.target.name}: no parameters fitted at {exp.precision}")
            continue
        est = estimate_latency(exp.path, r.target, prec)
        ms = est.latency_ms
        res = LatencyResult(f"{exp.key}@{r.target.name}", r.target.runtimes[0], exp.precision, prec, 0, 0, ms, ms, ms,
                            ms, 1000 / ms, exp.size_mb(), estimated=est.method)
        console.print(f"estimated {res.model}: {ms:.2f} ms ({1000 / ms:.0f} FPS) at {prec} [yellow]estimated[/]: "
                      f"per-node roofline fitted to published figures, not measured")
        out.append(to_json(res))
    return out


def bundle(r: Run) -> dict:
    """The deployable folder + tarball, with manifest and report."""
    from edgekd.bundle import write_bundle

    return write_bundle(r)
