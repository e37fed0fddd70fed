"""Cheap checks before any stage spends minutes: names, paths, the loss schedule, pretrained starts, and the
untrained student through the target's runtimes."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import ConfigError
from edgekd.progress import console
from edgekd.run_context import Run
from edgekd.stages.teacher import SHIPPED_TEACHERS


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
    if cfg.task != "segment":  # scan the folder (r.data is kept for the stages): an empty class, no readable
        r.data  # noqa: B018  image or too few for a split fails now, before the student's export below
    from edgekd.export.preflight import preflight_student

    # the untrained student through the target's runtimes: an op they refuse fails now, not after training
    size = 64 if cfg.task == "segment" else cfg.image_size or 64  # op support does not depend on the size
    checked = preflight_student(cfg.student, len(r.data.classes) if cfg.task == "segment" else 10, size, r.target,
                                stem_stride=cfg.stem_stride, exporter=cfg.onnx_exporter)
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
