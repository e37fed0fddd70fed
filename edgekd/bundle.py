"""The deployable bundle: model files for the target, manifest.json (hashes, I/O, preprocessing, labels,
metrics, versions) and report.md; plus a .tar.gz of the folder."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError, IntegrityError, ParityError, WriteError, reason
from edgekd.fileio import atomic, write_text
from edgekd.formats import FORMATS, bundle_runtime, suffix_of
from edgekd.integrity import (  # also imported from here by teacher, bench and tests
    DIGEST,
    MANIFEST,
    SCHEMA_VERSION,
    SIGNATURE,
    load_samples,
    manifest_digest,
    sha256,
    verify_bundle_dir,
)


def write_bundle(r) -> dict:
    """Copy the passing models of the target's bundle precision into ``RUN/bundle`` and describe them."""
    from edgekd._deps import tool_versions
    from edgekd.deploy import for_bundle
    from edgekd.results_table import markdown_table, results_rows

    res, target = r.results, r.target
    ver = res["verify"]
    metric = ver.metric  # top1 or miou
    exports = res["export"] + res["quantize"]
    try:
        deploy, keep = for_bundle(r, exports, ver.passed())
    except ValueError as exc:
        raise ParityError(f"nothing to bundle for {target.name}: {exc}") from exc
    chosen = [d for d in exports if d.key in keep and FORMATS[d.format].bundled]
    final, tmp = r.root / "bundle", r.root / "bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    lat = res["bench"].by_model()
    models = []
    h, w = r.data.preprocess.size
    for d in chosen:
        key = d.key
        for f in d.files:
            shutil.copy2(f, tmp / Path(f).name)
        # QONNX has no runtime here: its latency is the FPGA estimate, its runtime the target's (e.g. FINN's driver)
        measured, est = lat.get(key), lat.get(f"{key}@{target.name}")
        bench = measured or est
        entry = {"file": Path(d.path).name, "format": d.format, "precision": d.precision,
                 "runtime": bundle_runtime(d.format, target.runtimes),
                 "p50_ms": bench["p50_ms"], "fps": bench["fps"],
                 "latency": "measured on the build machine" if measured else est["estimated"],
                 metric: ver.score_of(key)}
        if d.format == "onnx" and "tensorrt" in target.formats:
            from edgekd.export.tensorrt import build_script
            from edgekd.targets import TensorRTSettings

            script = build_script(entry["file"], (3, h, w), target.tensorrt or TensorRTSettings(),
                                  int8=d.precision == "int8")
            (tmp / "build_engine.sh").write_text(script)
            (tmp / "build_engine.sh").chmod(0o755)
            est = lat.get(f"{key}@{target.name}")
            entry.update(runtime="tensorrt", engine=suffix_of("tensorrt", Path(entry["file"]).stem),
                         build="sh build_engine.sh", host_p50_ms=entry["p50_ms"],
                         top1_measured_with="onnxruntime on the build machine's CPU (stand-in for TensorRT)")
            if est:
                entry.update(p50_ms=est["p50_ms"], fps=est["fps"], latency=f"estimated: {est['estimated']}")
        entry["role"] = ("deploy" if key == deploy["model"] else
                         "int8, for devices where int8 pays off (VNNI / AMX CPUs)" if deploy["policy"] == "fastest"
                         else "int8 alternative")
        if key in deploy["p50_ms"]:
            entry["deploy_p50_ms"] = deploy["p50_ms"][key]  # the alternating passes' median, the choice's basis
        models.append(entry)
    models.sort(key=lambda m: (m["role"] != "deploy", m["p50_ms"]))
    rows = results_rows(res)
    versions = tool_versions()
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": r.cfg.task,
        "target": target.name,
        "input": {"name": "input", "shape": [1, 3, h, w], "dtype": "float32", "layout": "NCHW"},
        "output": {"name": "logits", "dtype": "float32",
                   "shape": [1, len(r.data.classes)] + ([h, w] if r.cfg.task == "segment" else [])},
        "preprocess": r.data.preprocess.to_dict(),
        "labels": r.data.classes,
        **({"masks": {"values": "0/255" if r.data.test.binary_masks else "class index",
                      "resize": "nearest, back to each image's own size"}} if r.cfg.task == "segment" else {}),
        "models": models,
        "recommended": models[0]["file"],
        "deploy": {k: deploy[k] for k in ("model", "policy", "statement", "fastest", "int8_speed_vs_fastest", "isa",
                                          "p50_ms", "method", "tie_margin")},
        "metrics": {**ver.manifest_metrics(), "bench_threads": target.threads,
                    "latency_measured_on": versions["cpu"]},
        # where each model's first weights came from (requested choice, what was used, file sha256)
        "student": {"arch": res["distill"].arch, "params_m": res["distill"].get("params_m"),
                    "weights": res["distill"].get("weights")},
        "teacher": {"arch": res["teacher"].arch, "weights": [t.get("weights") for t in res["teacher"].teachers]},
        "versions": versions,
    }
    if getattr(r, "budget", None):  # the latency budget, the student chosen for it and why
        from edgekd.students import int8_budget_line

        b = r.budget
        manifest["budget"] = {"budget_ms": b["budget_ms"], "budget_from": b["budget_from"], "student": b["choice"],
                              "reason": b["reason"], "latency": b["latency"], "method": b["method"]}
        int8 = int8_budget_line(r, b["budget_ms"])
        if int8 is not None:
            manifest["budget"]["int8"] = int8
    quant = r.root / "quantize.json"
    if quant.is_file():  # the torch route (QAD / guarded PTQ): method, validation metrics, layers kept in FP32
        q = json.loads(quant.read_text())
        manifest["quantization"] = {k: q[k] for k in ("method", "preset", "calib_samples", "fp32_val", "int8_val",
                                                      "metric") if k in q}
        if "guard" in q:
            manifest["quantization"]["fp32_layers"] = q["guard"]["fp32_layers"]
    else:
        manifest["quantization"] = {"method": "ptq", "preset": r.target.quant_preset or r.cfg.quant_preset,
                                    "calib_samples": r.cfg.calib_samples}
    (tmp / "report.md").write_text(_report(r, rows, markdown_table(rows), manifest))
    manifest["samples"] = _write_samples(r, tmp, models)
    write_runner(tmp / RUNNER)
    manifest["runner"] = {"file": RUNNER, "needs": "python >= 3.10, numpy, Pillow and the model's runtime",
                          "usage": f"python {RUNNER} . image.jpg  |  python {RUNNER} . --bench"
                          + (" (segmentation: masks written as PNG to --out, default ./masks)"
                             if r.cfg.task == "segment" else "")}
    digest = seal(tmp, manifest)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    tar = r.root / f"{r.cfg.name}.tar.gz"
    write_tarball(final, tar, r.cfg.name)
    return {"path": str(final), "tarball": str(tar), "manifest": manifest, "digest": digest, "rows": rows}


def seal(folder: Path, manifest: dict) -> str:
    """List every file of ``folder`` with its sha256 in ``manifest["files"]``, write manifest.json and
    manifest.sha256 (the digest of the canonical manifest) and return that digest."""
    manifest["files"] = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.name not in (MANIFEST, DIGEST,
                                                                                             SIGNATURE)}
    text = json.dumps(manifest, indent=2)
    digest = manifest_digest(json.loads(text))  # of what a reader parses, so tuples and lists cannot differ
    (folder / MANIFEST).write_text(text)
    (folder / DIGEST).write_text(digest + "\n")
    (folder / SIGNATURE).unlink(missing_ok=True)  # a signature of another manifest would only mislead
    return digest


def write_tarball(folder: Path, tar: Path, arcname: str) -> None:
    with atomic(tar) as tar_tmp, tarfile.open(tar_tmp, "w:gz") as tf:
        tf.add(folder, arcname=arcname)


def sign_bundle(folder: Path, key, tar: Path | None = None, arcname: str | None = None) -> str:
    """Write ``manifest.sig`` (ed25519, ``key`` from ``integrity.load_private_key``) into a bundle that passes
    its checks, and rewrite its tarball to carry it. Returns the manifest digest."""
    from edgekd.integrity import sign

    manifest = verify_bundle_dir(folder)  # never sign a bundle that was changed after its build
    write_text(folder / SIGNATURE, sign(manifest, key))
    if tar is not None:
        write_tarball(folder, tar, arcname or folder.name)
    return manifest_digest(manifest)


RUNNER = "run.pyz"
# the on-device runner and everything it imports: no torch, timm or other edgekd module
RUNNER_MODULES = ("__init__.py", "device_runner.py", "bundle.py", "integrity.py", "errors.py", "formats.py",
                  "fileio.py", "preprocess.py", "_deps.py", "runtimes/__init__.py", "runtimes/base.py",
                  "runtimes/onnxruntime.py", "runtimes/openvino.py")


def write_runner(out: Path) -> None:
    """``run.pyz``: a zipapp of edgekd's torch-free runner, so a copied bundle runs where only numpy, Pillow and
    onnxruntime (or openvino) are installed: ``python run.pyz BUNDLE image.jpg``."""
    import tempfile
    import zipapp

    pkg = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        for rel in RUNNER_MODULES:
            dst = Path(tmp) / "edgekd" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pkg / rel, dst)
        zipapp.create_archive(tmp, out, main="edgekd.device_runner:main_exit")


SAMPLES = "samples.npz"
SAMPLE_COUNT = 4


def _write_samples(r, folder: Path, models: list[dict]) -> dict:
    """A few preprocessed test inputs and each bundled model's outputs on them, for `verify-bundle`."""
    import numpy as np

    from edgekd.runtimes import runtime_for

    src = r.data.test.head(SAMPLE_COUNT)
    x = r.data.preprocess.batch([src.image(i) for i in range(len(src))])
    arrays = {"input": x}
    for m in models:
        with runtime_for(folder / m["file"], _sample_runtime(m), 1, "f32") as rt:
            arrays[f"output:{m['file']}"] = np.concatenate([rt(x[i:i + 1]) for i in range(len(x))])
    np.savez(folder / SAMPLES, **arrays)
    return {"file": SAMPLES, "count": len(x), "check": "same top-1, max|diff| <= 0.01 * max(1, max|output|)"}


def _sample_runtime(m: dict) -> str:
    """The runtime that replays a bundled model's samples here: its format's (formats.py), ONNX Runtime for a
    format this edgekd does not know (a newer bundle's)."""
    f = FORMATS.get(m["format"])
    return f.runtime if f is not None else "onnxruntime"


def check_samples(path: Path, manifest: dict, label: str | None = None) -> int:
    """Run every bundled model on the stored sample inputs and compare with the stored outputs."""
    import numpy as np

    from edgekd.runtimes import runtime_for

    label = label or str(path)
    x, outs = load_samples(path, manifest, label)
    for m in manifest["models"]:
        ref = outs[m["file"]]
        with runtime_for(path / m["file"], _sample_runtime(m), 1, "f32") as rt:
            out = np.concatenate([rt(x[i:i + 1]) for i in range(len(x))])
        if out.shape != ref.shape:
            raise IntegrityError(f"{label}: {m['file']!r} gives outputs of shape {list(out.shape)}, its stored "
                                 f"sample outputs have {list(ref.shape)} (another model)")
        diff = float(np.abs(out - ref).max())
        if (out.argmax(1) != ref.argmax(1)).any() or diff > 0.01 * max(1.0, float(np.abs(ref).max())):
            raise IntegrityError(f"{label}: {m['file']!r} does not reproduce its stored sample outputs "
                                 f"(max |diff| {diff:.3g}); wrong runtime version or a damaged model")
    return len(x)


def _schedule(cfg) -> str:
    from edgekd.config import schedule

    return "; ".join(f"{st.epochs} epochs of " + " + ".join(f"{t.weight:g}x`{t.name}`" for t in st.losses)
                     for st in schedule(cfg))


def _quantization(q: dict) -> str:
    """The manifest's quantization record in words (the report says what the manifest says)."""
    method = {"ptq": "NNCF post-training quantization", "qad": "quantization-aware distillation (QAD)"}.get(
        q.get("method"), q.get("method", "?"))
    parts = [method]
    if q.get("preset"):
        parts.append(f"preset `{q['preset']}`")
    if q.get("calib_samples"):
        parts.append(f"{q['calib_samples']} calibration images")
    if q.get("fp32_layers"):
        parts.append(f"{len(q['fp32_layers'])} layers kept in FP32")
    return ", ".join(parts)


def _teacher_check(c: dict | None) -> str:
    """report.md's line on the teacher check (empty when it did not run)."""
    if not c:
        return ""
    verdict = "better than" if c["teacher_better"] else "**not better** than"
    return (f"Teacher check: {c['teachers']} scored {c['teacher_val']:.2f} validation {c['metric']}, {verdict} a "
            f"labels-only student after {c['probe_epochs']} epoch{'s' if c['probe_epochs'] != 1 else ''} "
            f"({c['probe_val']:.2f}).\n\n")


def _sweep(rec: dict | None) -> str:
    """report.md's line on the loss sweep (empty when the run had none)."""
    if not rec:
        return ""
    from edgekd.distill.sweep import words

    n, e = len(rec["results"]), rec["epochs"]
    return (f"Loss sweep: {n} combination{'s' * (n != 1)} of `{rec['loss']}` "
            f"({'; '.join(f'{k} ' + ', '.join(f'{v:g}' for v in vals) for k, vals in rec['grid'].items())}), "
            f"{e} epoch{'s' * (e != 1)} each; winner {words(rec['winner'])} (validation {rec['metric']} "
            f"{rec['winner_val']:.2f}), used for the full run.\n\n")


def _budget(manifest: dict) -> str:
    """The report's budget paragraph: the budget, the student chosen for it and why, and the int8 model's check."""
    b = manifest.get("budget")
    if not b:
        return ""
    int8 = f" {b['int8']['statement']}." if b.get("int8") else ""
    return (f"**Budget:** {b['budget_from']}. {b['reason'][0].upper()}{b['reason'][1:]} (latency {b['method']})."
            f"{int8}\n\n")


def _robustness(rep: dict | None) -> str:
    """report.md's section on accuracy under corruptions (empty when the run did not score it)."""
    if not rep:
        return ""
    from edgekd.robustness import caption, markdown

    return (f"\n## Robustness under corrupted inputs\n\n{caption(rep)} Plot: `robustness.png` in the run folder."
            f"\n\n{markdown(rep)}\n")


def _report(r, rows: list[dict], table: str, manifest: dict) -> str:
    cfg = r.cfg
    return (
        f"# edgekd run `{cfg.name}` for target `{r.target.name}`\n\n"
        f"Data: `{cfg.data}` ({len(r.data.classes)} classes). Teacher: `{r.results['teacher'].arch}` "
        f"({r.results['teacher'].how}). Student: `{cfg.student}`, "
        f"schedule {_schedule(cfg)}. int8: {_quantization(manifest['quantization'])}.\n\n"
        f"{_teacher_check(r.results['distill'].get('teacher_check'))}"
        f"{_sweep(r.results['distill'].get('sweep'))}"
        f"**Deploy:** {manifest['deploy']['statement']} (timing: {manifest['deploy']['method']}).\n\n"
        f"{_budget(manifest)}"
        f"{'mIoU' if cfg.task == 'segment' else 'Accuracy'} on {r.results['verify'].samples} held-out test "
        f"images; latency measured on this machine at "
        f"batch 1 with {r.target.threads} threads (median of {cfg.bench_iters} runs after {cfg.bench_warmup} "
        f"warm-up; torch rows use half as many).\n\n{table}\n"
        f"{_robustness(r.results['robustness'].report if 'robustness' in r.results else None)}"
    )


def safe_extract(tarball: Path, dest: Path) -> Path:
    """Extract a bundle tarball into ``dest`` and return the bundle folder inside it.

    Refuses (before writing anything) members with absolute paths or ``..``, links, devices and FIFOs: a
    tarball from elsewhere must not write outside ``dest`` (tar-slip).
    """
    if tarball.stat().st_size == 0:
        raise ConfigError(f"{tarball}: empty file, not a bundle tarball")
    try:
        tf = tarfile.open(tarball, "r:*")
    except (tarfile.TarError, OSError) as exc:  # ReadError lists every method it tried, one per line: say it once
        why = "not gzip, bzip2, xz or plain tar" if "could not be opened successfully" in str(exc) else reason(exc)
        raise ConfigError(f"{tarball}: not a readable tar archive ({why})") from exc
    try:
        with tf:
            members = tf.getmembers()
            for m in members:
                p = Path(m.name)
                if p.is_absolute() or ".." in p.parts:
                    raise IntegrityError(f"{tarball}: refused: member {m.name!r} would be written outside the bundle")
                if not (m.isfile() or m.isdir()):
                    raise IntegrityError(f"{tarball}: refused: member {m.name!r} is a link or special file")
            tf.extractall(dest, members=members, filter="data")
    except (EOFError, tarfile.TarError, zlib.error, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename:  # writing the extracted files failed (disk full...)
            raise WriteError(f"cannot write {exc.filename}: {exc.strerror or reason(exc)}") from exc
        raise IntegrityError(f"{tarball}: truncated or corrupt archive ({reason(exc)})") from exc
    tops = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
    if len(tops) == 1 and (dest / next(iter(tops))).is_dir():
        return dest / next(iter(tops))
    return dest
