"""The on-device runner: classify or segment images with a bundle, or time it. Needs numpy, Pillow and the
bundle's runtime (onnxruntime or openvino); never torch or timm.

    python -m edgekd.device_runner BUNDLE image.jpg [more.jpg ...] [--top 3] [--json]
    python -m edgekd.device_runner BUNDLE image.jpg ... --out masks/     (segmentation bundles: one PNG mask per image)
    python -m edgekd.device_runner BUNDLE --bench [--iters 200]

    python -m edgekd.device_runner BUNDLE ... --expect DIGEST [--key builder.pub]   (refuse any other manifest)

BUNDLE is the bundle folder or its .tar.gz (extracted safely to a temporary folder). Before any model is loaded
the bundle passes the same checks as `edgekd verify-bundle` (short of replaying the samples): the manifest's
structure and plain file names, manifest.sha256 (and --expect), manifest.sig (with --key), and the listing and
sha256 of every file. Preprocessing comes from the manifest, so it is exactly what training used.
On a Jetson, ONNX Runtime's TensorRT / CUDA execution providers are used when installed (engines from
build_engine.sh are for trtexec and TensorRT applications).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekd.bundle import safe_extract
from edgekd.errors import ConfigError, DataError, EdgeKDError
from edgekd.formats import FORMATS
from edgekd.integrity import verify_bundle_dir
from edgekd.preprocess import Preprocess, load_image


def open_model(bundle: Path, manifest: dict, name: str | None, threads: int):
    """The runtime for the bundle's recommended model (or ``name``)."""
    files = {m["file"]: m for m in manifest["models"]}
    name = name or manifest["recommended"]
    if name not in files:
        raise ConfigError(f"{bundle}: no model {name!r}; the bundle has {', '.join(files)}")
    entry, path = files[name], bundle / name
    fmt = FORMATS.get(entry["format"])
    if fmt is not None and fmt.runtime == "openvino":  # anything else: ONNX Runtime (with TensorRT's EP on a Jetson)
        from edgekd.runtimes.openvino import OvRuntime

        return OvRuntime(path, threads, "f32"), entry
    from edgekd.runtimes.onnxruntime import OrtRuntime

    providers = None
    if entry.get("runtime") == "tensorrt":
        import onnxruntime as ort

        avail = ort.get_available_providers()
        providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in avail] or None
        if providers:
            providers.append("CPUExecutionProvider")
    return OrtRuntime(path, threads, providers), entry


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _read(path: Path) -> np.ndarray:
    try:
        return load_image(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc


def classify(rt, pre: Preprocess, labels: list[str], images: list[Path], top: int) -> list[dict]:
    out = []
    for path in images:
        img = _read(path)
        p = softmax(rt(pre(img)[None]))[0]
        best = np.argsort(-p)[:top]
        out.append({"image": str(path), "label": labels[best[0]],
                    "top": [{"label": labels[i], "p": round(float(p[i]), 5)} for i in best]})
    return out


def segment(rt, pre: Preprocess, labels: list[str], images: list[Path], out: Path, binary: bool) -> list[dict]:
    """Per-pixel classes of each image, resized (nearest) to the image's own size and written as ``out/STEM.png``:
    0/255 for binary bundles, class indices otherwise."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in images:
        img = _read(path)
        mask = rt(pre(img)[None])[0].argmax(0).astype(np.uint8)
        mask = np.asarray(Image.fromarray(mask).resize((img.shape[1], img.shape[0]), Image.NEAREST))
        dst = out / f"{path.stem}.png"
        tmp = dst.with_name(dst.name + ".tmp")
        Image.fromarray(mask * 255 if binary else mask).save(tmp, format="PNG")
        tmp.replace(dst)
        counts = np.bincount(mask.ravel(), minlength=len(labels))
        results.append({"image": str(path), "mask": str(dst),
                        "fractions": {labels[i]: round(float(c) / mask.size, 5) for i, c in enumerate(counts)}})
    return results


def bench(rt, pre: Preprocess, iters: int, warmup: int = 10) -> dict:
    x = np.random.default_rng(0).random((1, 3, *pre.size), dtype=np.float32)
    for _ in range(warmup):
        rt(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        rt(x)
        times.append((time.perf_counter() - t0) * 1e3)
    p50 = float(np.median(times))
    return {"iterations": iters, "p50_ms": p50, "p90_ms": float(np.percentile(times, 90)), "fps": 1000 / p50}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekd.device_runner", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("images", type=Path, nargs="*")
    ap.add_argument("--model", help="model file in the bundle (default: the manifest's recommended one)")
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--out", type=Path, default=Path("masks"), help="segmentation bundles: folder for the PNG masks")
    ap.add_argument("--bench", action="store_true", help="time batch-1 inference instead of classifying")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--expect", metavar="DIGEST", help="refuse the bundle unless its manifest digest is this "
                    "(printed by compress; carry it apart from the bundle)")
    ap.add_argument("--key", type=Path, metavar="PUB", help="refuse the bundle unless manifest.sig verifies with "
                    "this ed25519 public key (needs the cryptography package)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="edgekd-bundle-") as tmp:
            bundle = args.bundle
            if not bundle.exists():
                raise ConfigError(f"bundle {bundle} does not exist")
            if bundle.is_file():
                bundle = safe_extract(bundle, Path(tmp))
            manifest = verify_bundle_dir(bundle, args.expect, args.key, label=str(args.bundle))
            if not args.bench and not args.images:
                raise ConfigError("give image files to classify or segment, or --bench")
            import os

            threads = args.threads or os.cpu_count() or 1
            rt, entry = open_model(bundle, manifest, args.model, threads)
            pre = Preprocess.from_dict(manifest["preprocess"])
            with rt:
                if args.bench:
                    res = {"model": entry["file"], "runtime": rt.name, "threads": threads,
                           **bench(rt, pre, args.iters)}
                    print(json.dumps(res) if args.json else
                          f"{entry['file']} ({rt.name}, {threads} threads): p50 {res['p50_ms']:.2f} ms, "
                          f"{res['fps']:.1f} FPS")
                    return 0
                if manifest.get("task") == "segment":
                    binary = manifest.get("masks", {}).get("values") == "0/255"
                    results = segment(rt, pre, manifest["labels"], args.images, args.out, binary)
                else:
                    results = classify(rt, pre, manifest["labels"], args.images, max(1, args.top))
            for r in results:
                if "mask" in r:
                    fr = ", ".join(f"{k} {v:.3f}" for k, v in r["fractions"].items())
                    print(json.dumps(r) if args.json else f"{r['image']}: mask {r['mask']}  ({fr})")
                    continue
                tops = ", ".join(f"{t['label']} {t['p']:.3f}" for t in r["top"])
                print(json.dumps(r) if args.json else f"{r['image']}: {r['label']}  ({tops})")
            return 0
    except EdgeKDError as exc:
        if args.debug:
            raise
        print(f"edgekd.device_runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        print(f"edgekd.device_runner: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
              file=sys.stderr)
        return 1


def main_exit() -> None:
    """Entry point of the bundle's ``run.pyz``."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
