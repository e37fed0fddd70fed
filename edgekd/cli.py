"""The edgekd command line. Heavy modules (torch, timm, openvino, nncf) are imported inside commands."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import typer

from edgekd.errors import ConfigError, EdgeKDError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distil, quantize, export, verify, benchmark and bundle vision models for edge devices.")
targets_app = typer.Typer(no_args_is_help=True, help="Hardware targets (targets/*.yaml).")
app.add_typer(targets_app, name="targets")

DEBUG = {"on": False}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _version(value: bool) -> None:
    if value:
        from edgekd import __version__

        typer.echo(f"edgekd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="Print the version and exit.")) -> None:
    DEBUG["on"] = DEBUG["on"] or debug


def _teachers(specs: list[str], weights: list[Path]) -> list[dict]:
    if len(weights) > len(specs):
        raise ConfigError("--teacher-weights given without a matching --teacher")
    return [{"spec": s, "weights": weights[i] if i < len(weights) else None} for i, s in enumerate(specs)]


TEACHER_EPOCHS_HELP = ("Epochs of a teacher that is trained or fine-tuned here (default: --epochs on a classification "
                       "folder, 60 otherwise).")
PATIENCE_HELP = ("Stop after N epochs without a better validation score, keeping the best (0: off; default 10 "
                 "on a classification folder, off for builtin:shapes10 and segmentation).")
CLASS_WEIGHTS_HELP = "none | balanced: weigh the hard-label cross-entropy by inverse class frequency."
AUGMENT_HELP = ("Training augmentation preset: none | light | standard | strong (default standard for folders; a "
                "recipe can list torchvision v2 transforms).")
TEACHER_HELP = ("Teacher, repeatable: timm:NAME, edgekd:cifar_resnet56 (with --teacher-weights) or onnx:PATH "
                "(black box, logits only).")
TEACHER_WEIGHTS_HELP = ("Weights for each --teacher: a safetensors/state_dict file, imagenet, none or hf-hub:ORG/NAME "
                        "(default: timm's pretrained weights, fine-tuned on the data; unreachable is an error).")
VAL_FRACTION_HELP = ("Share of a folder's images held out for validation, and again for test when the folder has no "
                     "test split (default 0.1; 0 < F < 0.5).")
STUDENT_WEIGHTS_HELP = ("The student's start: auto (timm's ImageNet weights when cached or reachable, else random "
                        "with a warning) | imagenet | none | hf-hub:ORG/NAME | a weights file (safetensors, .pth/.bin "
                        "state_dict, timm .npz); unet_<encoder>: the encoder's.")


BUDGET_MS_HELP = ("Batch-1 latency budget on the target: without --student, the largest candidate that passes the "
                  "target's pre-flight and meets it is trained (see `edgekd students`); with --student, a miss is "
                  "reported.")
CANDIDATES_HELP = ("Students considered for the budget, comma-separated: NAME,NAME replaces the task's curated list, "
                   "+NAME,+NAME adds to it (any timm name, unet_*).")


SWEEP_HELP = ("Tune the loss on validation first: 'temperature=1,2,4 alpha=0.5,0.9' (beta=... with --loss dkd); "
              "each combination trains the student briefly, the best validation score wins and the full run "
              "uses it. Single-stage kd / dkd / multi_teacher.")
SWEEP_EPOCHS_HELP = "Epochs of each sweep run (default: a fifth of --epochs, at least 1, at most 3)."


def _sweep(spec: str | None) -> dict[str, list[float]] | None:
    from edgekd.config import parse_sweep

    return None if spec is None else parse_sweep(spec)


def _names(spec: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c'] (None stays None)."""
    return None if spec is None else [s.strip() for s in spec.split(",") if s.strip()]


def _check_resume(resume: bool, overwrite: bool, out: Path) -> None:
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; choose one")
    if resume and not (out / "run.json").is_file():
        raise ConfigError(f"--resume: {out} holds no edgekd run to continue")


# RunConfig fields whose flag is not --<field-name>
FLAG_OF = {"quantize_method": "--quantize", "teachers": "--teacher"}


def _config(recipe, out: Path, name: str | None = None, **kw):
    """The run's config from the recipe and the flags given; an invalid value is blamed on its flag (or on the
    --out folder whose name became the run name)."""
    from edgekd.config import make_config

    sources = {k: FLAG_OF.get(k, "--" + k.replace("_", "-")) for k in kw}
    sources["name"] = "--name" if name else f"--out {out} (its folder name is the run name; pass --name NAME)"
    return make_config(recipe, sources, name=name or out.name, **kw)


@app.command()
def compress(
    target: str = typer.Option("cpu-x86", "--target", "-t", help="Target name or YAML path."),
    data: str | None = typer.Option(None, help="ImageFolder dir, or builtin:shapes10 (default); --task segment: a "
                                                "folder of images/ + masks/ (same stems; PNG class indices or 0/255)."),
    task: str | None = typer.Option(None, help="classify | segment"),
    teacher: list[str] = typer.Option([], help=TEACHER_HELP),
    teacher_weights: list[Path] = typer.Option([], help=TEACHER_WEIGHTS_HELP),
    student: str | None = typer.Option(None, help="timm classifier name (default mobilevit_xxs); segment: "
                                       "unet_<timm encoder> or unet_plain<W> (default unet_mobilenetv3_large_100, "
                                       "unet_plain16 on FPGA targets)."),
    student_weights: str | None = typer.Option(None, help=STUDENT_WEIGHTS_HELP),
    budget_ms: float | None = typer.Option(None, help=BUDGET_MS_HELP),
    budget_fps: float | None = typer.Option(None, help="The budget as frames per second (1000 / FPS ms)."),
    candidates: str | None = typer.Option(None, help=CANDIDATES_HELP),
    loss: str | None = typer.Option(None, help="kd | dkd | ce | multi_teacher; segment: pixel_kd | dice_ce | cwd "
                                    "(a recipe can mix several)."),
    sweep: str | None = typer.Option(None, help=SWEEP_HELP),
    sweep_epochs: int | None = typer.Option(None, help=SWEEP_EPOCHS_HELP),
    recipe: Path | None = typer.Option(None, help="Recipe YAML (models/*.yaml); flags override it."),
    epochs: int | None = typer.Option(None, help="Student epochs."),
    teacher_epochs: int | None = typer.Option(None, help=TEACHER_EPOCHS_HELP),
    patience: int | None = typer.Option(None, help=PATIENCE_HELP),
    class_weights: str | None = typer.Option(None, help=CLASS_WEIGHTS_HELP),
    augment: str | None = typer.Option(None, help=AUGMENT_HELP),
    num_workers: int | None = typer.Option(None, help="Loader worker processes (default: the cores available)."),
    batch_size: int | None = typer.Option(None),
    lr: float | None = typer.Option(None),
    image_size: int | None = typer.Option(None, help="Model input side in pixels (segment: the long side)."),
    max_train_samples: int | None = typer.Option(None, help="Use at most N training images (quick runs)."),
    max_eval_samples: int | None = typer.Option(None, help="Use at most N val/test images (quick runs)."),
    val_fraction: float | None = typer.Option(None, help=VAL_FRACTION_HELP),
    bench_iters: int | None = typer.Option(None),
    quantize: str | None = typer.Option(None, "--quantize", help="ptq | qad (quantization-aware distillation)."),
    qad_epochs: int | None = typer.Option(None, help="QAD epochs (default 3)."),
    max_accuracy_drop: float | None = typer.Option(
        None, help="Points of validation top-1 the int8 model may lose; sensitive layers are kept in FP32."),
    name: str | None = typer.Option(None, help="Run name (default: the --out folder's name)."),
    out: Path = typer.Option(Path("runs/demo"), help="Run folder; rerunning resumes it."),
    overwrite: bool = typer.Option(False, help="Start the run folder afresh."),
    resume: bool = typer.Option(False, help="Continue a killed run in --out (an error if there is none)."),
    sign: Path | None = typer.Option(None, "--sign", metavar="KEY", help="Sign the bundle's manifest with this "
                                     "ed25519 private key (edgekd keygen) into manifest.sig."),
) -> None:
    """The whole pipeline: teacher -> distill -> quantize -> export -> verify -> bench -> bundle."""
    from edgekd.pipeline import run
    from edgekd.results_table import print_table
    from edgekd.targets import load_target

    tgt = load_target(target)
    if sign is not None:  # a bad key fails now, not after hours of training
        from edgekd.integrity import load_private_key

        sign_key = load_private_key(sign)
    _check_resume(resume, overwrite, out)
    if budget_ms is not None and budget_fps is not None:
        raise ConfigError("give --budget-ms or --budget-fps, not both")
    cfg = _config(recipe, data=data, task=task, student=student, student_weights=student_weights, loss=loss,
                  sweep=_sweep(sweep), sweep_epochs=sweep_epochs,
                  budget_ms=budget_ms, budget_fps=budget_fps, candidates=_names(candidates),
                  epochs=epochs, batch_size=batch_size, lr=lr,
                  image_size=image_size, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                  bench_iters=bench_iters, name=name, out=out, quantize_method=quantize, qad_epochs=qad_epochs,
                  max_accuracy_drop=max_accuracy_drop, teacher_epochs=teacher_epochs, patience=patience,
                  class_weights=class_weights, augment=augment, num_workers=num_workers, val_fraction=val_fraction,
                  teachers=_teachers(teacher, teacher_weights) if teacher or teacher_weights else None)
    r = run(cfg, tgt, out, overwrite)
    if "bundle" not in r.results:  # a non-zero rank of a distributed run: rank 0 reports
        return
    b = r.results["bundle"]
    print_table(b.rows, f"edgekd compress -> {tgt.name} ({out})")
    typer.echo(f"bundle: {b.path}  (tarball {b.tarball}); recommended model: {b.manifest['recommended']}")
    if "budget" in b.manifest:
        typer.echo(f"budget {b.manifest['budget']['budget_from']}: {b.manifest['budget']['reason']}")
        if "int8" in b.manifest["budget"]:
            typer.echo(b.manifest["budget"]["int8"]["statement"])
    if "deploy" in b.manifest:
        typer.echo(b.manifest["deploy"]["statement"])
    from edgekd.bundle import sign_bundle
    from edgekd.integrity import manifest_digest, verify_bundle_dir

    folder = r.root / "bundle"  # not the cached b["path"]: a run folder may have been copied or moved since
    # a reused bundle is checked before its digest is printed (and signed)
    if sign is not None:
        from edgekd.pipeline import refresh_record

        digest = sign_bundle(folder, sign_key, r.root / f"{r.cfg.name}.tar.gz", r.cfg.name)
        refresh_record(r.root, "bundle")  # the signed tarball is edgekd's own output: a rerun may reuse it
    else:
        digest = manifest_digest(verify_bundle_dir(folder))
    typer.echo(f"manifest sha256 {digest}{' (signed: manifest.sig)' if sign else ''}; keep it apart from the bundle "
               f"and check on the device: python run.pyz BUNDLE ... --expect {digest}")


@app.command()
def distill(
    data: str | None = typer.Option(None, help="ImageFolder dir or builtin:shapes10 (default); --task segment: a "
                                                "folder of images/ + masks/."),
    task: str | None = typer.Option(None, help="classify | segment"),
    teacher: list[str] = typer.Option([], help=TEACHER_HELP),
    teacher_weights: list[Path] = typer.Option([], help=TEACHER_WEIGHTS_HELP),
    student: str | None = typer.Option(None),
    student_weights: str | None = typer.Option(None, help=STUDENT_WEIGHTS_HELP),
    loss: str | None = typer.Option(None, help="kd | dkd | ce | multi_teacher (a recipe can mix several)."),
    sweep: str | None = typer.Option(None, help=SWEEP_HELP),
    sweep_epochs: int | None = typer.Option(None, help=SWEEP_EPOCHS_HELP),
    recipe: Path | None = typer.Option(None, help="Recipe YAML (models/*.yaml); flags override it."),
    epochs: int | None = typer.Option(None),
    teacher_epochs: int | None = typer.Option(None, help=TEACHER_EPOCHS_HELP),
    patience: int | None = typer.Option(None, help=PATIENCE_HELP),
    class_weights: str | None = typer.Option(None, help=CLASS_WEIGHTS_HELP),
    augment: str | None = typer.Option(None, help=AUGMENT_HELP),
    num_workers: int | None = typer.Option(None, help="Loader worker processes (default: the cores available)."),
    image_size: int | None = typer.Option(None),
    max_train_samples: int | None = typer.Option(None),
    max_eval_samples: int | None = typer.Option(None),
    val_fraction: float | None = typer.Option(None, help=VAL_FRACTION_HELP),
    out: Path = typer.Option(Path("runs/distill")),
    resume: bool = typer.Option(False, help="Continue a killed run in --out (an error if there is none)."),
) -> None:
    """Teacher + distillation only: writes OUT/student/student.safetensors (+ .json card).

    Runs on CPU or GPU as is; for several GPUs: accelerate launch -m edgekd distill ...
    """
    from edgekd.pipeline import run
    from edgekd.targets import load_target

    _check_resume(resume, False, out)
    cfg = _config(recipe, data=data, task=task, student=student, student_weights=student_weights, loss=loss,
                  sweep=_sweep(sweep), sweep_epochs=sweep_epochs,
                  epochs=epochs, image_size=image_size, out=out, teacher_epochs=teacher_epochs,
                  patience=patience, class_weights=class_weights, augment=augment, num_workers=num_workers,
                  max_train_samples=max_train_samples, max_eval_samples=max_eval_samples, val_fraction=val_fraction,
                  teachers=_teachers(teacher, teacher_weights) if teacher or teacher_weights else None)
    r = run(cfg, load_target("cpu-x86"), out, until="distill")
    from edgekd.pipeline import rank

    if rank() != 0:
        return
    d = r.results["distill"]
    from edgekd.distill.metrics import METRIC_LABEL

    typer.echo(f"student: {d.path} (test {METRIC_LABEL[d.test.metric]} {d.score:.2f}%)")


@app.command("train-teacher")
def train_teacher(
    data: str = typer.Option("builtin:shapes10", help="ImageFolder dir or builtin:shapes10."),
    arch: str = typer.Option("mobilevit_s", help="timm classifier name."),
    weights: Path | None = typer.Option(None, help="Start from these weights (head re-sized if needed), or imagenet "
                                        "| none | hf-hub:ORG/NAME (default auto: timm's pretrained weights when "
                                        "reachable, else random with a warning)."),
    epochs: int = typer.Option(60),
    lr: float = typer.Option(2e-3),
    batch_size: int = typer.Option(64),
    seed: int = typer.Option(0),
    image_size: int | None = typer.Option(None),
    patience: int | None = typer.Option(None, help=PATIENCE_HELP),
    val_fraction: float = typer.Option(0.1, help=VAL_FRACTION_HELP),
    max_train_samples: int | None = typer.Option(None, help="Class-balanced training subset (as compress's)."),
    max_eval_samples: int | None = typer.Option(None, help="At most this many validation and test images."),
    out: Path = typer.Option(Path("runs/teacher/teacher.safetensors"), help="Output safetensors (+ .json card)."),
) -> None:
    """Train (or fine-tune) a teacher with cross-entropy and augmentation; the teacher stage on its own."""
    from edgekd.config import RunConfig, default_patience, resolve_select_epoch
    from edgekd.data import load_data
    from edgekd.teacher import TeacherRecipe, build_teacher

    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError("--epochs and --batch-size must be positive and --lr > 0")
    if patience is not None and patience < 0:
        raise ConfigError("--patience must be 0 (off) or positive")
    if not 0 < val_fraction < 0.5:
        raise ConfigError(f"--val-fraction {val_fraction}: must be above 0 and below 0.5")
    if any(n is not None and n < 1 for n in (max_train_samples, max_eval_samples)):
        raise ConfigError("--max-train-samples and --max-eval-samples must be positive")
    from edgekd.models.segmentation import is_seg_model

    task = "segment" if is_seg_model(arch) else "classify"  # a U-Net trains on images/ + masks/
    loaded = load_data(data, image_size, val_fraction, seed=seed, max_train=max_train_samples,
                       max_eval=max_eval_samples, task=task)
    # the epoch kept, by compress's rule: too few validation images to pick the best epoch by -> the last one
    rule, _ = resolve_select_epoch(RunConfig(data=data, task=task), len(loaded.val),
                                   patience_given=patience is not None)
    if rule.select_epoch == "last":
        typer.echo(f"validation split: {len(loaded.val)} images (one image moves the score by "
                   f"{100 / len(loaded.val):.1f} points), too few to pick the best epoch by: the teacher keeps its "
                   f"last epoch, early stopping off (--patience N to choose otherwise)", err=True)
    recipe = TeacherRecipe(arch=arch, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                           patience=0 if rule.select_epoch == "last" else
                           default_patience(data, task) if patience is None else patience, keep=rule.select_epoch)
    _, card = build_teacher(loaded, recipe, weights, out.with_name(out.stem + "-train"), out, retrain=True,
                            option="--weights")
    from edgekd.distill.metrics import METRIC_LABEL
    from edgekd.results import Scores

    test = Scores.read(card, "test")
    typer.echo(f"teacher {arch}: {out} (test {METRIC_LABEL[test.metric]} {test.main:.2f}%)")


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="student.safetensors written by distill (with its .json card)."),
    fmt: list[str] = typer.Option(["onnx", "openvino"], "--format", help="onnx | openvino (repeatable)."),
    out: Path = typer.Option(Path("export"), help="Output folder."),
    onnx_exporter: str | None = typer.Option(None, "--onnx-exporter", help="dynamo (default: torch.export, opset "
                                             "18) | torchscript (legacy, opset 17; faster)."),
) -> None:
    """Export a checkpoint to FP32 ONNX and the other formats derived from it."""
    from edgekd.export.onnx import ONNX_EXPORTERS, export_torch

    if onnx_exporter is not None and onnx_exporter not in ONNX_EXPORTERS:  # before the checkpoint is loaded
        raise ConfigError(f"--onnx-exporter {onnx_exporter!r}: choose {' or '.join(ONNX_EXPORTERS)}")
    import torch

    from edgekd.export.catalog import get_exporter
    from edgekd.models.factory import load_checkpoint

    model, card = load_checkpoint(checkpoint)
    h, w = card["preprocess"]["size"]
    meta = {"edgekd.preprocess": card["preprocess"], "edgekd.classes": card["classes"], "edgekd.arch": card["arch"]}
    stem = checkpoint.stem + "-fp32"
    onnx_path = export_torch(model, torch.zeros(1, 3, h, w), out / f"{stem}.onnx", meta, exporter=onnx_exporter)
    for f in fmt:
        exp = get_exporter(f).export(onnx_path, out, stem)
        typer.echo(f"{exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")


@app.command()
def quantize(
    model: Path | None = typer.Argument(None, help="FP32 model (.onnx or OpenVINO .xml) for graph PTQ; or use --run."),
    run_dir: Path | None = typer.Option(None, "--run", help="A run folder of `edgekd distill` / `compress`: quantize "
                                        "its student (PTQ or QAD with its teachers), export and verify."),
    method: str = typer.Option("ptq", help="ptq (post-training) | qad (quantization-aware distillation, needs --run)"),
    data: str | None = typer.Option(None, help="Calibration images for a MODEL file: ImageFolder dir or "
                                    "builtin:shapes10."),
    reference: Path | None = typer.Option(None, help="Checkpoint whose card gives the preprocessing."),
    calib: int | None = typer.Option(None, help="Calibration images (default 300)."),
    preset: str | None = typer.Option(None, help="performance | mixed"),
    ignore: list[str] = typer.Option([], help="Regex of NNCF node names kept out of int8 (repeatable)."),
    target: str | None = typer.Option(None, help="With --run: target (default: the run's)."),
    qad_epochs: int | None = typer.Option(None, help="QAD epochs (default 3)."),
    qad_lr: float | None = typer.Option(None, help="QAD learning rate (default: the run's lr / 20)."),
    max_accuracy_drop: float | None = typer.Option(
        None, help="With --run: points of validation top-1 int8 may lose; the most sensitive layers are kept in "
                   "FP32 until it holds (exit 8 naming the best drop when it cannot)."),
    max_fp32_layers: int | None = typer.Option(None, help="At most this many layers kept in FP32 (default 12)."),
    out: Path | None = typer.Option(None, help="Output file for a MODEL (default: MODEL with -int8)."),
) -> None:
    """int8 quantization: NNCF PTQ of an exported file, or PTQ / QAD of a run's PyTorch student (--run)."""
    if method not in ("ptq", "qad"):
        raise ConfigError(f"--method {method!r}: choose ptq or qad")
    if run_dir is not None:
        if model is not None:
            raise ConfigError("give either a MODEL file or --run RUN_DIR, not both")
        _quantize_run(run_dir, target, method=method, calib=calib, preset=preset, ignore=ignore,
                      qad_epochs=qad_epochs, qad_lr=qad_lr, max_accuracy_drop=max_accuracy_drop,
                      max_fp32_layers=max_fp32_layers)
        return
    if model is None:
        raise ConfigError("nothing to quantize: give an FP32 MODEL file (.onnx / .xml) or --run RUN_DIR")
    if method == "qad" or max_accuracy_drop is not None:
        raise ConfigError("QAD and --max-accuracy-drop train or evaluate the PyTorch student with its teachers: "
                          "pass --run RUN_DIR (a folder written by edgekd distill or compress) instead of a file")
    if data is None:
        raise ConfigError("--data is required to calibrate a MODEL file")
    from edgekd.artifacts import ExportedModel
    from edgekd.data.calibration import calibration, preprocess_for
    from edgekd.formats import FORMATS, files_of, format_of_path
    from edgekd.quantize.ptq import quantize as ptq
    from edgekd.quantize.spec import QuantSpec

    fmt = format_of_path(model)
    if fmt is None or not fmt.ptq or not model.is_file():
        ok = " or ".join(f.suffix for f in FORMATS.values() if f.ptq)
        raise ConfigError(f"{model}: expected an existing {ok} file")
    pre = preprocess_for(model, reference)
    out = out or model.with_name(model.stem.replace("-fp32", "") + "-int8" + model.suffix)
    fp32 = ExportedModel(fmt.name, "fp32", str(model), files_of(fmt.name, model))
    exp = ptq(fp32, calibration(data, pre, calib or 300), out.parent, out.stem,
              QuantSpec(preset=preset or "mixed", ignored_scope=tuple(ignore)))
    typer.echo(f"{exp.key}: {exp.path} ({exp.size_mb():.2f} MB)")


def _quantize_run(run_dir: Path, target: str | None, **opts) -> None:
    """Re-run a finished run's pipeline up to verify with new quantization options (earlier stages reused)."""
    import json

    from edgekd.config import make_config
    from edgekd.pipeline import run
    from edgekd.targets import load_target

    saved = run_dir / "run.json"
    if not saved.is_file():
        raise ConfigError(f"--run {run_dir} holds no edgekd run (no run.json)")
    info = json.loads(saved.read_text())
    # options given now override the run's saved ones; the rest stay as they were
    given = {"quantize_method": opts.pop("method"), "quant_ignored_scope": opts.pop("ignore") or None,
             "calib_samples": opts.pop("calib"), "quant_preset": opts.pop("preset"), **opts}
    flags = {"quantize_method": "--method", "quant_ignored_scope": "--ignore", "calib_samples": "--calib",
             "quant_preset": "--preset"}
    sources = {k: flags.get(k, "--" + k.replace("_", "-")) for k in given}
    cfg = make_config(None, sources, **{**info["config"], **{k: v for k, v in given.items() if v is not None}})
    r = run(cfg, load_target(target or info["target"]), run_dir, until="verify")
    ver = r.results["verify"]
    for m in ver.models:
        if m.precision == "int8":
            from edgekd.distill.metrics import METRIC_LABEL

            typer.echo(f"{m.model}: {METRIC_LABEL[ver.metric]} {m.metric:.2f}% ({m.metric_delta:+.2f} vs the FP32 "
                       f"student on {ver.samples} test images), executed {m.executed_precision}")
    typer.echo(f"report: {run_dir / ('quantize.json' if (run_dir / 'quantize.json').is_file() else 'verify.json')}")


CORRUPTIONS_HELP = ("Score MODEL, a run folder of `edgekd compress`, under ImageNet-C corruptions instead: its "
                    "teacher, FP32 and int8 students on the same corrupted test images (table, JSON and plot).")


@app.command()
def verify(
    model: Path = typer.Argument(..., help="Exported model (.onnx or .xml); with --corruptions: a run folder."),
    reference: Path | None = typer.Option(None, help="PyTorch checkpoint (student.safetensors + .json card)."),
    data: str | None = typer.Option(None, help="Held-out images: ImageFolder dir or builtin:shapes10 (segmentation "
                                    "students: a folder of images/ + masks/)."),
    target: str | None = typer.Option(None, help="Target whose parity thresholds apply (default cpu-x86; "
                                      "--corruptions: whose threads the runtimes use, default the run's)."),
    precision: str | None = typer.Option(None, help="fp32 | int8 (default: guessed from the file)."),
    samples: int | None = typer.Option(None, help="Test images (default 500; --corruptions: 200)."),
    report: Path | None = typer.Option(None, help="Write the JSON report here."),
    corruptions: bool = typer.Option(False, "--corruptions", help=CORRUPTIONS_HELP),
    corruption_set: str | None = typer.Option(None, help="--corruptions: comma list of ImageNet-C names, or all "
                                              "(default gaussian_noise,defocus_blur,motion_blur,contrast,"
                                              "jpeg_compression,fog)."),
    severities: str | None = typer.Option(None, help="--corruptions: severities 1-5, e.g. 1,3,5 (default 1-5)."),
    models: str | None = typer.Option(None, help="--corruptions: comma list of the run's models to score "
                                      "(teacher, onnx-fp32, onnx-int8, openvino-fp32, openvino-int8; default all)."),
    seed: int = typer.Option(0, help="--corruptions: seed of the corruptions' randomness."),
    plot: Path | None = typer.Option(None, help="--corruptions: the plot's PNG (default RUN/robustness.png)."),
) -> None:
    """Compare an exported model with its PyTorch reference; exit 6 when it fails the target's thresholds.

    With --corruptions: accuracy of a run's teacher and students under corrupted inputs (noise, blur, low
    contrast, JPEG, fog at severities 1-5).
    """
    if corruptions:
        _verify_corruptions(model, target, samples, report, corruption_set,
                            severities, models, seed, plot)
        return
    for flag, given in (("--corruption-set", corruption_set), ("--severities", severities), ("--models", models),
                        ("--plot", plot)):
        if given is not None:
            raise ConfigError(f"{flag} is an option of --corruptions; add --corruptions (MODEL: a run folder)")
    for flag, given in (("--reference", reference), ("--data", data)):
        if given is None:
            raise ConfigError(f"missing option '{flag}' (needed to verify an exported file; or score a run folder "
                              f"with --corruptions)")
    import json

    from edgekd.cli_support import verify_file

    res = verify_file(model, reference, data, target or "cpu-x86", precision, samples or 500, report)
    seg = json.loads(reference.with_suffix(".json").read_text()).get("task") == "segment"
    typer.echo(f"{model}: {'pixel ' if seg else ''}agreement {res.top1_agreement:.4f}, max|diff| "
               f"{res.max_abs_diff:.3g}, cosine {res.cosine:.5f}, {'mIoU' if seg else 'top-1'} {res.metric:.2f}% "
               f"({res.metric_delta:+.2f}) -> "
               f"{'pass' if res.passed else 'FAIL: ' + res.reason}")
    if not res.passed:
        raise typer.Exit(6)


def _verify_corruptions(run_dir: Path, target: str | None, samples: int | None, report: Path | None,
                        names: str | None, severities: str | None, models: str | None, seed: int,
                        plot: Path | None) -> None:
    from edgekd import robustness as rb

    # bad names and severities fail before anything loads
    names_ = rb.parse_names(names)
    sev = rb.parse_severities(severities)
    only = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if samples is not None and samples < 1:
        raise ConfigError("--samples must be positive")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: --corruptions takes a run folder of edgekd compress (not a model file)")
    from edgekd.pipeline import open_run

    r = open_run(run_dir, target)
    res = rb.score_run(r, names_, sev, samples or rb.DEFAULT_SAMPLES, seed, only)
    paths = rb.write(res, report or run_dir / "robustness.json", plot or run_dir / "robustness.png")
    typer.echo(rb.caption(res))
    typer.echo(rb.markdown(res))
    typer.echo(f"report: {paths['json']}; plot: {paths['plot']}")


@app.command()
def bench(
    model: Path = typer.Argument(..., help="Model file (.onnx, OpenVINO .xml, student.safetensors + .json card), an "
                                 "export folder, or a bundle (folder or .tar.gz)."),
    runtime: str | None = typer.Option(None, help="torch | onnxruntime | openvino | tensorrt (default: by suffix)."),
    compare: bool = typer.Option(False, "--compare", help="Every runtime x precision of MODEL, ranked, with the "
                                 "deploy choice (FP32 ONNX: adds OpenVINO and NNCF int8 variants)."),
    batch_size: int = typer.Option(1, help="Images per inference."),
    threads: int = typer.Option(2, help="Inference threads."),
    streams: int = typer.Option(1, help="OpenVINO streams (0: the hint decides); ORT throughput: thread groups."),
    mode: str = typer.Option("latency", help="latency (one request at a time) | throughput (async, several "
                             "requests in flight)."),
    requests: int = typer.Option(0, help="Requests in flight in throughput mode (0: the runtime's optimum)."),
    iters: int = typer.Option(200, help="Timed iterations (ignored with --seconds)."),
    seconds: float | None = typer.Option(None, help="Time for this long instead of --iters."),
    warmup: int = typer.Option(20, help="Untimed warm-up iterations."),
    pin: bool = typer.Option(False, help="Pin the process to --threads CPUs (and OpenVINO ENABLE_CPU_PINNING)."),
    image_size: int | None = typer.Option(None, help="Input side when the model's input is dynamic."),
    precision_hint: str = typer.Option("f32", help="OpenVINO INFERENCE_PRECISION_HINT (f32 | bf16 | none)."),
    data: str | None = typer.Option(None, help="--compare: int8 calibration images (default: random inputs)."),
    calib: int = typer.Option(64, help="--compare: calibration images."),
    passes: int = typer.Option(1, help="--compare: alternating rounds over all configurations (shared machines)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results, per-call latencies, machine and "
                                         "versions as JSON."),
    md_out: Path | None = typer.Option(None, "--md", help="Write the Markdown table here."),
    energy: str | None = typer.Option(None, help="Also measure J/frame (idle subtracted): auto | rapl | nvml | "
                                      "jetson-rails | tegrastats | estimate (the --target power model, labelled)."),
    target: str = typer.Option("cpu-x86", help="With --energy: the target whose power model is the fallback."),
) -> None:
    """Latency (p50/p90/p99/mean), FPS or throughput, peak memory, size and executed precision on this machine."""
    from edgekd.cli_support import run_bench

    opts = dict(batch=batch_size, threads=threads, streams=streams, mode=mode, requests=requests, iters=iters,
                seconds=seconds, warmup=warmup, pin=pin, image_size=image_size,
                precision_hint=None if precision_hint == "none" else precision_hint)
    if energy is not None and (compare or not model.is_file()):
        raise ConfigError("--energy measures one model file; drop --compare or give a .onnx / .xml file")
    typer.echo(run_bench(model, runtime, opts, compare, data, calib, json_out, md_out, passes))
    if energy is not None:
        from edgekd.cli_support import bench_energy

        typer.echo(bench_energy(model, runtime, opts, energy, target, json_out))


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders written by `edgekd compress` (or `bench --json` files)."),
    out: Path = typer.Option(Path("report"), help="Folder for report.md and its PNG plots."),
) -> None:
    """Markdown report with plots: latency distributions, accuracy vs FPS Pareto, energy per frame."""
    from edgekd.report import write_report

    typer.echo(f"report: {write_report(runs, out)}")


@app.command()
def layers(
    model: str = typer.Argument(..., help="timm:NAME, edgekd:NAME or a bare timm name."),
    image_size: int = typer.Option(224, help="Input side for the shape probe."),
    grep: str | None = typer.Option(None, help="Only names containing this text."),
) -> None:
    """Module names and output shapes, for `features:` pairs of hint / attention losses."""
    import torch

    from edgekd.distill.features import layer_table
    from edgekd.models.factory import create_timm

    name = model.split(":", 1)[1] if ":" in model else model
    rows = layer_table(create_timm(name, 10), torch.zeros(1, 3, image_size, image_size))
    for n, kind, shape in rows:
        if grep is None or grep in n:
            typer.echo(f"{n:40s} {kind:24s} {shape}")


@app.command()
def students(
    target: str = typer.Option("cpu-x86", "--target", "-t", help="Target name or YAML path."),
    budget_ms: float | None = typer.Option(None, help="Batch-1 latency budget in ms (default: the target's "
                                           "latency_budget_ms)."),
    budget_fps: float | None = typer.Option(None, help="The budget as frames per second (1000 / FPS ms)."),
    task: str = typer.Option("classify", help="classify | segment"),
    image_size: int | None = typer.Option(None, help="Input side in pixels (default 224; segment 256)."),
    candidates: str | None = typer.Option(None, help="Comma-separated: NAME,NAME replaces the curated list, "
                                          "+NAME,+NAME adds to it (any timm name; segment: unet_*)."),
    num_classes: int = typer.Option(10, help="Classifier outputs of the candidates (the head's size)."),
    int8: bool = typer.Option(False, "--int8", help="CPU targets: also time NNCF int8 of each candidate (random "
                              "calibration, latency only); FP32 alone is an upper bound of a fastest-policy deploy."),
    passes: int = typer.Option(3, help="Measured: alternating passes over the candidates."),
    seconds: float = typer.Option(0.3, help="Measured: seconds of timed calls per candidate and pass."),
    json_out: bool = typer.Option(False, "--json", help="Print the table as JSON (rows, choice, method) instead."),
) -> None:
    """The student for a latency budget: each candidate's parameters, GMACs, pre-flight on the target's runtimes
    and latency there (measured here for CPU targets, estimated for boards), the largest that fits first."""
    import json

    from edgekd.students import (
        DEFAULT_SIZE,
        candidate_list,
        choose,
        evaluate,
        method_line,
        plan_for,
        record,
        resolve_budget,
        table,
    )
    from edgekd.targets import load_target

    tgt = load_target(target)
    budget, source = resolve_budget(budget_ms, budget_fps, tgt)
    names = candidate_list(task, candidates)
    if image_size is not None and image_size < 32:
        raise ConfigError(f"--image-size {image_size}: at least 32")
    if task == "segment" and image_size is not None and image_size % 32:
        raise ConfigError(f"--image-size {image_size}: segmentation inputs are multiples of 32")
    if num_classes < 2 or passes < 1 or seconds <= 0:
        raise ConfigError("--num-classes must be at least 2, --passes positive and --seconds above 0")
    size = image_size or DEFAULT_SIZE[task]
    plan = plan_for(tgt, int8)
    rows = evaluate(names, tgt, size, num_classes, plan, passes, seconds)
    method = method_line(plan, tgt, passes, seconds)
    try:
        choice = choose(rows, budget, tgt.name)
    except ConfigError:
        choice = None
    rec = record(rows, budget, source, tgt, plan, method, choice, (size, size), task)
    if json_out:
        typer.echo(json.dumps(rec, indent=2))
    else:
        table(rows, budget, f"students for {tgt.name} within {source}, {size}x{size}", method)
    if choice is None:
        raise ConfigError(rec["reason"])
    if not json_out:
        typer.echo(rec["reason"])


@app.command()
def estimate(
    model: Path = typer.Argument(..., help="ONNX model (FP32 or int8 Q/DQ)."),
    target: str = typer.Option(..., "--target", help="A target with an `estimate:` section (jetson-*, cpu-arm64, "
                               "fpga-zu)."),
    precision: str | None = typer.Option(None, help="int8 | fp16 | fp32 (default: the bundle's, if fitted)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (latency_ms, method, fitted params)."),
) -> None:
    """Estimated batch-1 latency on a device that is not attached (per-node model fitted to published figures)."""
    import json
    from dataclasses import asdict

    from edgekd.bench.estimate import estimate_latency
    from edgekd.targets import load_target

    if precision is not None and precision not in ("int8", "fp16", "fp32"):
        raise ConfigError(f"--precision must be int8, fp16 or fp32, not {precision!r}")
    est = estimate_latency(model, load_target(target), precision)
    if json_out:
        typer.echo(json.dumps(asdict(est), indent=2))
    else:
        typer.echo(f"{est.model} on {est.target} at {est.precision}: {est.latency_ms:.2f} ms (estimated: {est.method})")


EXPECT_HELP = ("Refuse the bundle unless its manifest digest is DIGEST (printed by compress and kept apart from "
               "the bundle): catches a swapped or rewritten bundle.")
KEY_HELP = "Refuse the bundle unless manifest.sig verifies with this ed25519 public key (PEM or ssh-ed25519)."


@app.command("verify-bundle")
def verify_bundle(
    path: Path = typer.Argument(..., help="Bundle folder or its .tar.gz."),
    expect: str | None = typer.Option(None, "--expect", metavar="DIGEST", help=EXPECT_HELP),
    key: Path | None = typer.Option(None, "--key", metavar="PUB", help=KEY_HELP),
) -> None:
    """Check a bundle: manifest digest (and --expect), signature (with --key), the listing and sha256 of every
    file, then replay the stored samples through every model (a tarball is extracted safely first)."""
    import tempfile

    from edgekd.bundle import check_samples, safe_extract
    from edgekd.integrity import SIGNATURE, manifest_digest, verify_bundle_dir

    if not path.exists():
        raise ConfigError(f"bundle {path} does not exist")
    with tempfile.TemporaryDirectory(prefix="edgekd-bundle-") as tmp:
        folder = safe_extract(path, Path(tmp)) if path.is_file() else path
        m = verify_bundle_dir(folder, expect, key, label=str(path))
        signed = (folder / SIGNATURE).is_file()
        n = check_samples(folder, m, label=str(path))
    sig = ("signature verified" if key else "signed (give --key PUB to check the signature)" if signed
           else "not signed")
    typer.echo(f"{path}: {len(m['files'])} files match manifest schema {m['schema_version']} (target {m['target']}); "
               f"manifest sha256 {manifest_digest(m)}{' = --expect' if expect else ''}; {sig}"
               + (f"; every model reproduces its {n} stored sample outputs" if n else ""))


@app.command()
def keygen(out: Path = typer.Argument(..., help="Private key file to create; the public key goes to OUT.pub.")) -> None:
    """Create an ed25519 key pair for signing bundles (compress --sign OUT; verify with --key OUT.pub)."""
    from edgekd.integrity import keygen as make_keys

    priv, pub = make_keys(out)
    typer.echo(f"private key {priv} (mode 0600: keep it on the build machine only); public key {pub} (copy it "
               f"to the devices: verify-bundle --key {pub.name}, run.pyz --key {pub.name})")


@targets_app.command("list")
def targets_list() -> None:
    """Known targets."""
    from edgekd.targets import list_targets, load_target

    for n in list_targets():
        typer.echo(f"{n:20s} {load_target(n).description}")


@targets_app.command("show")
def targets_show(name: str) -> None:
    """One target's facts as YAML."""
    import yaml

    from edgekd.targets import load_target

    typer.echo(yaml.safe_dump(load_target(name).model_dump(mode="json"), sort_keys=False))


def _usage_error(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit code) of a command-line usage error (unknown option, bad value, missing argument), or None.

    typer >= 0.29 raises its vendored click's exceptions (subclasses of ``typer.TyperException``), older typer
    click's own; both carry ``format_message()`` (which names the option) and ``exit_code`` (2 for usage)."""
    classes: tuple[type, ...] = tuple(c for c in (getattr(typer, "TyperException", None),) if c is not None)
    try:
        import click

        classes += (click.exceptions.ClickException,)
    except ImportError:
        pass
    if not classes or not isinstance(exc, classes) or not hasattr(exc, "format_message"):
        return None
    msg = " ".join(str(exc.format_message()).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(exc, "exit_code", 1) == 2:
        msg += f" (see: {ctx.command_path} --help)"
    return msg, int(getattr(exc, "exit_code", 2))


def _error(msg: str, code: int) -> None:
    typer.echo(f"edgekd: error: {msg}", err=True)
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    """An EdgeKDError's message on one line; one raised in a loader worker arrives wrapped by torch in a
    multi-line "Caught DataError in DataLoader worker process 0. Original Traceback ..." whose last line is it."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def main() -> None:
    """Entry point: EdgeKDErrors become one line on stderr and their exit code (tracebacks with --debug)."""
    from edgekd.errors import WriteError, reason

    DEBUG["on"] = "--debug" in sys.argv[1:]
    try:
        rc = app(prog_name="edgekd", standalone_mode=False)
    except EdgeKDError as exc:
        if DEBUG["on"]:
            raise
        _error(_one_line(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("edgekd: interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - usage errors and anything unexpected
        usage = _usage_error(exc)
        if usage is not None and type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # a group without its command: its help, as click prints it
            sys.exit(usage[1])
        if usage is not None:
            _error(*usage)
        if type(exc).__name__ == "Abort":  # typer/click turn Ctrl-C and end of input into Abort
            if isinstance(exc.__context__, KeyboardInterrupt):
                typer.echo("edgekd: interrupted; rerun the same command to resume", err=True)
                sys.exit(130)
            if DEBUG["on"]:
                raise
            _error(f"aborted: {reason(exc.__context__) if exc.__context__ else 'no reason given'}", 1)
        if DEBUG["on"]:
            raise
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:  # a write no wrapper named (disk full...)
            where = exc.filename or "a file"
            _error(f"cannot write {where}: {exc.strerror}", WriteError.exit_code)
        if isinstance(exc, OSError) and exc.filename:
            _error(f"{exc.filename}: {exc.strerror or reason(exc)}", 1)
        typer.echo(f"edgekd: internal error: {type(exc).__name__}: {reason(exc)} "
                   f"(rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    if rc == 130:  # typer 0.29 turns Ctrl-C into a silent exit code 130 (no edgekd command returns it)
        typer.echo("edgekd: interrupted; rerun the same command to resume", err=True)
    sys.exit(rc if isinstance(rc, int) else 0)
