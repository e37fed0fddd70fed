"""The plain fine-tuning script a practitioner writes instead of edgekd, against `edgekd compress`, over seeds.

plain script (`plain_script` below, standard libraries only): timm model from random weights, torchvision
  RandomResizedCrop + flip + ColorJitter, AdamW (lr 2e-3, wd 0.05) with a one-cycle LR, label smoothing 0.1,
  batch 64, best epoch by top-1 on the held-out 10 % of train; then torch.onnx.export -> openvino.convert_model ->
  nncf.quantize (300 train images) -> the int8 IR on the test split.
edgekd:  `python -m edgekd compress --target cpu-x86` with its default settings except the student, input size
  and epochs (which match the script's), the seed (a recipe with `seed: K`) and --max-train-samples when set;
  its default teacher is trained inside the timed run.
Both sides use the same train/val/test files (edgekd's split for that seed). Every accuracy in the table is scored
the same way, here, after the timed part: the side's FP32 and int8 OpenVINO IRs on all test images through
`evaluate_ir` (OpenVINO CPU, f32 for what is not int8) with edgekd's Preprocess (Pillow bilinear squash to
NxN, ImageNet mean/std: the eval transform both sides use). Each side's own numbers (the script's torch test
accuracy, edgekd's distill.json and verify.json) are kept in the JSON next to them. Wall time: the whole script
call; the whole `edgekd compress` process (teacher, distill, export, quantize, verify, bench, bundle). Run the
sides one after the other (or on separate machines) when the wall times matter: on a shared CPU each slows the
other (the JSON records the load average around every run).

    # hymenoptera (ants/bees, 243/153 images: train = the train folder less 10 % held out, test = val folder)
    .venv/bin/python benchmarks/plain_vs_edgekd.py --data ../shared/data/hymenoptera --image-size 128 \
        --epochs 30 --seeds 0,1
    # CIFAR-10 subset (2 cores): sides as separate processes, then a last call collects
    .venv/bin/python benchmarks/plain_vs_edgekd.py --data ../shared/data/cifar10-jpg --image-size 64 \
        --epochs 30 --seeds 0,1 --max-train-samples 2000 --only plain
    ... --only edgekd; then the same line with --collect

Each finished (side, seed) is saved to benchmarks/results/plain_vs_edgekd-<dataset>/<side>-s<seed>.json and
skipped on reruns (<dataset>: the data folder's name, -n<N> with --max-train-samples, then --tag). The table is
printed and benchmarks/results/plain_vs_edgekd_<dataset>.json written once every side has every seed.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SIDES = ("plain", "edgekd")
NAMES = {"plain": "plain script (timm, RRC + flip + jitter, AdamW one-cycle, LS 0.1, NNCF PTQ)",
         "edgekd": "edgekd compress (defaults: teacher + KD, NNCF PTQ)"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- scoring (shared by both sides)

def score(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 and macro-F1 in percent (macro-F1: mean F1 over the classes in labels or predictions, as edgekd's)."""
    pred, labels = np.asarray(logits).argmax(1), np.asarray(labels)
    f1 = []
    for c in np.union1d(pred, labels):
        tp, fp, fn = np.sum((pred == c) & (labels == c)), np.sum((pred == c) & (labels != c)), \
            np.sum((pred != c) & (labels == c))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"top1": float((pred == labels).mean() * 100), "macro_f1": float(np.mean(f1) * 100)}


def open_rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def evaluate_ir(xml, paths, labels, transform, batch: int = 64) -> dict:
    """Score an OpenVINO IR on image files: OpenVINO's CPU plugin with f32 for every layer that is not int8 (no
    bf16 on CPUs that have it), images opened with Pillow as RGB and mapped by ``transform`` (PIL image -> CHW
    float array or tensor)."""
    import openvino as ov

    core, compiled = ov.Core(), {}
    out = []
    for i in range(0, len(paths), batch):
        x = np.stack([np.asarray(transform(open_rgb(p)), np.float32) for p in paths[i:i + batch]])
        if len(x) not in compiled:  # static shapes: an int8 IR with a dynamic batch can segfault on AMX CPUs
            model = core.read_model(str(xml))  # (openvinotoolkit/openvino#37577)
            model.reshape(list(x.shape))
            compiled[len(x)] = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        out.append(np.asarray(compiled[len(x)](x)[0]))
    return score(np.concatenate(out), labels)


def edgekd_transform(image_size: int):
    """edgekd's eval preprocessing (the table scores every IR with it)."""
    from edgekd.preprocess import Preprocess

    pre = Preprocess(size=(image_size, image_size))
    return lambda im: pre(np.asarray(im))


# ---------------------------------------------------------------- the plain script

def plain_script(data_dir, student, image_size, epochs, seed, workdir, max_train=None) -> dict:
    """The fine-tuning script a practitioner writes instead: timm + torchvision + AdamW/one-cycle + label smoothing,
    best epoch on the held-out 10 % of train, test top-1 / macro-F1, then ONNX -> OpenVINO -> NNCF int8.

    The only edgekd pieces it uses: ``scan_folder`` for the same train/val/test files edgekd uses with this seed,
    and, with ``max_train``, ``ImageSet.head`` for the same class-balanced training subset as edgekd's
    --max-train-samples. Everything else is torch / torchvision / timm / openvino / nncf.
    """
    import nncf
    import openvino as ov
    import timm
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    from edgekd.data import ImageSet
    from edgekd.data.folder import scan_folder

    t0 = time.perf_counter()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    split = scan_folder(Path(data_dir), 0.1, seed)
    classes = split["classes"]
    train_p, train_l = split["train"]
    if max_train:
        sub = ImageSet(labels=np.asarray(train_l), paths=list(train_p)).head(max_train)
        train_p, train_l = sub.paths, sub.labels.tolist()

    norm = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = v2.Compose([v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(0.4, 0.4, 0.4), *norm])
    eval_tf = v2.Compose([v2.Resize((image_size, image_size)), *norm])

    class Files(Dataset):
        def __init__(self, paths, labels, tf):
            self.paths, self.labels, self.tf = list(paths), list(labels), tf

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            return self.tf(open_rgb(self.paths[i])), int(self.labels[i])

    bs = 64
    train_ds = Files(train_p, train_l, train_tf)
    train_dl = DataLoader(train_ds, bs, shuffle=True, num_workers=2, persistent_workers=True,
                          drop_last=len(train_ds) % bs == 1)  # a batch of one breaks BatchNorm
    val_dl = DataLoader(Files(*split["val"], eval_tf), bs, num_workers=2)
    test_dl = DataLoader(Files(*split["test"], eval_tf), bs, num_workers=2)

    def predict(model, loader):
        model.eval()
        logits, labels = [], []
        with torch.no_grad():
            for x, y in loader:
                logits.append(model(x))
                labels.append(y)
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()

    model = timm.create_model(student, pretrained=False, num_classes=len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, epochs=epochs, steps_per_epoch=len(train_dl))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    best_val, best_epoch, best_state, history = -1.0, 0, None, []
    for epoch in range(1, epochs + 1):
        model.train()
        total, n = 0.0, 0
        for x, y in train_dl:
            opt.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(y), n + len(y)
        val = score(*predict(model, val_dl))["top1"]
        history.append({"epoch": epoch, "train_loss": total / n, "val_top1": val})
        if val > best_val:
            best_val, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        print(f"[plain s{seed}] epoch {epoch}/{epochs} loss {total / n:.4f} val top-1 {val:.2f} "
              f"(best {best_val:.2f} @ {best_epoch})", flush=True)
    model.load_state_dict(best_state)
    fp32 = score(*predict(model, test_dl))
    t_train = time.perf_counter()

    onnx_path = workdir / "model.onnx"
    model.eval()
    torch.onnx.export(model, (torch.randn(1, 3, image_size, image_size),), str(onnx_path), dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    ov_model = ov.convert_model(onnx_path)
    fp32_xml, int8_xml = workdir / "model-fp32.xml", workdir / "model-int8.xml"
    ov.save_model(ov_model, fp32_xml, compress_to_fp16=False)
    calib_idx = torch.randperm(len(train_p), generator=torch.Generator().manual_seed(seed))[:300].tolist()
    calib_dl = DataLoader(Files([train_p[i] for i in calib_idx], [train_l[i] for i in calib_idx], eval_tf), 1)
    int8_model = nncf.quantize(ov_model, nncf.Dataset(calib_dl, lambda item: item[0].numpy()),
                               subset_size=len(calib_idx))
    ov.save_model(int8_model, int8_xml, compress_to_fp16=False)
    t_quant = time.perf_counter()
    int8 = evaluate_ir(int8_xml, *split["test"], eval_tf)
    t_end = time.perf_counter()
    print(f"[plain s{seed}] test FP32 top-1 {fp32['top1']:.2f}  int8 top-1 {int8['top1']:.2f}  "
          f"wall {t_end - t0:.0f} s", flush=True)
    return {"classes": classes, "split": {k: len(split[k][0]) for k in ("val", "test")} | {"train": len(train_p)},
            "best_epoch": best_epoch, "best_val_top1": best_val, "history": history, "fp32": fp32, "int8": int8,
            "wall_s": t_end - t0, "train_s": t_train - t0, "export_quantize_s": t_quant - t_train,
            "int8_eval_s": t_end - t_quant, "fp32_xml": str(fp32_xml), "int8_xml": str(int8_xml)}


# ---------------------------------------------------------------- the two sides, one seed each

def test_split(data: str, seed: int):
    from edgekd.data.folder import scan_folder

    return scan_folder(Path(data), 0.1, seed)["test"]


def run_plain(args, seed: int, workdir: Path) -> dict:
    r = plain_script(args.data, args.student, args.image_size, args.epochs, seed, workdir / f"plain-s{seed}",
                     args.max_train_samples)
    paths, labels = test_split(args.data, seed)
    tf = edgekd_transform(args.image_size)
    return {"fp32": evaluate_ir(r["fp32_xml"], paths, labels, tf),
            "int8": evaluate_ir(r["int8_xml"], paths, labels, tf),
            "wall_s": r["wall_s"], "best_epoch": r["best_epoch"], "split": r["split"],
            "self_reported": {"fp32_torch": r["fp32"], "int8_openvino_torchvision_eval": r["int8"],
                              "best_val_top1": r["best_val_top1"], "history": r["history"]},
            "timing": {k: r[k] for k in ("train_s", "export_quantize_s", "int8_eval_s")},
            "files": {"fp32_xml": r["fp32_xml"], "int8_xml": r["int8_xml"]}}


def edgekd_command(args, seed: int, workdir: Path) -> tuple[list[str], Path]:
    """The `edgekd compress` command line of one seed; the seed (and any --recipe of --edgekd-args, merged) goes in
    a recipe written next to the run folder."""
    import yaml

    from edgekd.config import load_recipe

    extra, recipe = shlex.split(args.edgekd_args), {}
    for i, a in enumerate(extra):
        if a == "--recipe" or a.startswith("--recipe="):
            path = a.split("=", 1)[1] if "=" in a else extra[i + 1]
            recipe = load_recipe(Path(path))
            del extra[i:i + (1 if "=" in a else 2)]
            break
    rec = workdir / f"edgekd-s{seed}.yaml"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(yaml.safe_dump({**recipe, "seed": seed}))
    run_dir = workdir / f"edgekd-s{seed}"
    cmd = [sys.executable, "-m", "edgekd", "compress", "--target", "cpu-x86", "--data", str(args.data),
           "--student", args.student, "--image-size", str(args.image_size), "--epochs", str(args.epochs),
           "--recipe", str(rec), "--out", str(run_dir), "--overwrite"]
    if args.max_train_samples:
        cmd += ["--max-train-samples", str(args.max_train_samples)]
    return cmd + extra, run_dir


def run_edgekd(args, seed: int, workdir: Path) -> dict:
    cmd, run_dir = edgekd_command(args, seed, workdir)
    log = workdir / f"edgekd-s{seed}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"[edgekd s{seed}] {shlex.join(cmd)}\n[edgekd s{seed}] log: {log}", flush=True)
    t0, start = time.perf_counter(), time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    wall = time.perf_counter() - t0
    if rc:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"edgekd compress failed (exit {rc}); last lines of {log}:\n{tail}")

    def stage(name: str):
        return json.loads((run_dir / "stages" / f"{name}.json").read_text())["result"]

    distill, teacher, verify = stage("distill"), stage("teacher"), stage("verify")
    int8_xml = next((run_dir / e["path"] for e in stage("quantize")  # run-relative (an absolute path stays)
                     if e.get("format") == "openvino" and e.get("precision") == "int8"),
                    run_dir / "export" / "student-int8.xml")
    fp32_xml = run_dir / "export" / "student-fp32.xml"
    paths, labels = test_split(args.data, seed)
    size = distill["preprocess"]["size"]
    if size != [args.image_size, args.image_size]:
        raise SystemExit(f"edgekd's student input is {size}, not {args.image_size}x{args.image_size}")
    tf = edgekd_transform(args.image_size)
    print(f"[edgekd s{seed}] wall {wall:.0f} s; student test top-1 {distill['test_top1']:.2f}", flush=True)
    return {"fp32": evaluate_ir(fp32_xml, paths, labels, tf), "int8": evaluate_ir(int8_xml, paths, labels, tf),
            "wall_s": wall, "best_epoch": distill.get("best_epoch"),
            "self_reported": {"fp32_torch": {"top1": distill["test_top1"], "macro_f1": distill["test_macro_f1"]},
                              "best_val_top1": distill.get("best_val"), "teacher": teacher.get("arch"),
                              "teacher_test_top1": teacher.get("test_top1"),
                              "verify": {m["model"]: {"metric": m["metric"], "delta": m["metric_delta"],
                                                      "samples": m["samples"], "passed": m["passed"]}
                                         for m in verify["models"]}},
            # when each stage's cache file was written, in seconds from the start (per-stage cost at a glance)
            "stage_done_s": {p.stem: round(p.stat().st_mtime - start, 1)
                             for p in sorted((run_dir / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime)},
            "command": shlex.join(cmd), "config": json.loads((run_dir / "run.json").read_text())["config"],
            "files": {"fp32_xml": str(fp32_xml), "int8_xml": str(int8_xml), "run": str(run_dir), "log": str(log)}}


# ---------------------------------------------------------------- summary (pure: tested in tests/)

def summarize(records: dict[str, dict[int, dict]], seeds: list[int]) -> dict:
    """Rows (mean and per-seed numbers of each side) and the goal checks, from per-(side, seed) records holding
    fp32/int8 {top1, macro_f1} and wall_s."""
    rows = {}
    for side in SIDES:
        recs = [records[side][s] for s in seeds]
        row = {"side": side, "name": NAMES[side], "seeds": seeds}
        for prec in ("fp32", "int8"):
            for m in ("top1", "macro_f1"):
                vals = [r[prec][m] for r in recs]
                row[f"{prec}_{m}"], row[f"{prec}_{m}_per_seed"] = statistics.mean(vals), vals
        row["int8_minus_fp32_per_seed"] = [r["int8"]["top1"] - r["fp32"]["top1"] for r in recs]
        row["int8_minus_fp32"] = statistics.mean(row["int8_minus_fp32_per_seed"])
        row["wall_s_per_seed"] = [r["wall_s"] for r in recs]
        row["wall_s"] = statistics.mean(row["wall_s_per_seed"])
        row["best_epoch_per_seed"] = [r.get("best_epoch") for r in recs]
        rows[side] = row
    plain, ek = rows["plain"], rows["edgekd"]
    for row in rows.values():
        row["wall_ratio_vs_plain"] = row["wall_s"] / plain["wall_s"]
    goals = {
        "edgekd_fp32_beats_plain": {
            "passed": ek["fp32_top1"] > plain["fp32_top1"], "edgekd": ek["fp32_top1"], "plain": plain["fp32_top1"],
            "margin": ek["fp32_top1"] - plain["fp32_top1"],
            "seeds_won": sum(e > p for e, p in zip(ek["fp32_top1_per_seed"], plain["fp32_top1_per_seed"],
                                                   strict=True)),
            "rule": "mean FP32 test top-1 over seeds, edgekd > plain"},
        "edgekd_int8_within_1pt": {
            "passed": ek["int8_minus_fp32"] >= -1.0, "int8_minus_fp32": ek["int8_minus_fp32"],
            "worst_seed": min(ek["int8_minus_fp32_per_seed"]),
            "rule": "mean over seeds of edgekd int8 top-1 - FP32 top-1 >= -1 point"},
        "edgekd_wall_le_3x": {
            "passed": ek["wall_ratio_vs_plain"] <= 3.0, "ratio": ek["wall_ratio_vs_plain"],
            "rule": "mean edgekd compress wall time (teacher included) <= 3 x mean plain script wall time"},
        "at_least_2_seeds": {"passed": len(seeds) >= 2, "seeds": len(seeds)},
    }
    return {"rows": [plain, ek], "goals": goals}


def table(summary: dict) -> str:
    lines = ["| side | FP32 top-1 % (per seed) | FP32 macro-F1 % | int8 top-1 % | int8 macro-F1 % | int8 - FP32 | "
             "wall s (mean) | wall vs plain |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        each = ", ".join(f"{v:.2f}" for v in r["fp32_top1_per_seed"])
        lines.append(f"| {r['name']} | {r['fp32_top1']:.2f} ({each}) | {r['fp32_macro_f1']:.2f} | "
                     f"{r['int8_top1']:.2f} | {r['int8_macro_f1']:.2f} | {r['int8_minus_fp32']:+.2f} | "
                     f"{r['wall_s']:.0f} | {r['wall_ratio_vs_plain']:.2f}x |")
    return "\n".join(lines)


def goal_lines(goals: dict) -> list[str]:
    g = goals
    return [
        f"- edgekd FP32 beats the plain script (mean): {'yes' if g['edgekd_fp32_beats_plain']['passed'] else 'NO'} "
        f"({g['edgekd_fp32_beats_plain']['margin']:+.2f} points; "
        f"{g['edgekd_fp32_beats_plain']['seeds_won']} of {g['at_least_2_seeds']['seeds']} seeds)",
        f"- edgekd int8 within 1 point of its FP32: {'yes' if g['edgekd_int8_within_1pt']['passed'] else 'NO'} "
        f"({g['edgekd_int8_within_1pt']['int8_minus_fp32']:+.2f} mean, worst seed "
        f"{g['edgekd_int8_within_1pt']['worst_seed']:+.2f})",
        f"- edgekd compress wall time <= 3x the script's: {'yes' if g['edgekd_wall_le_3x']['passed'] else 'NO'} "
        f"({g['edgekd_wall_le_3x']['ratio']:.2f}x)",
        f"- mean over >= 2 seeds: {'yes' if g['at_least_2_seeds']['passed'] else 'NO'}",
    ]


# ---------------------------------------------------------------- CLI

def git_state() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hymenoptera")
    ap.add_argument("--student", default="mobilevit_xxs")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30, help="student epochs (both sides)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (the split follows the seed, as edgekd's)")
    ap.add_argument("--max-train-samples", type=int, default=None,
                    help="class-balanced training subset (edgekd's --max-train-samples; the script picks the same)")
    ap.add_argument("--only", choices=SIDES, default=None, help="run this side's missing seeds and stop")
    ap.add_argument("--collect", action="store_true", help="run nothing: print the table from saved results")
    ap.add_argument("--edgekd-args", default="", help="extra `edgekd compress` arguments (experiments; recorded); "
                                                     "a --recipe in them is merged with the seed")
    ap.add_argument("--tag", default="", help="suffix of the dataset name in the result paths")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-plain")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.data = args.data.resolve()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is absent; this benchmark needs the shared data")
    seeds = [int(s) for s in args.seeds.split(",")]
    dataset = args.data.name + (f"-n{args.max_train_samples}" if args.max_train_samples else "") + args.tag
    per_seed_dir, workdir = args.out / f"plain_vs_edgekd-{dataset}", args.work / dataset
    settings = {"data": str(args.data), "student": args.student, "image_size": args.image_size,
                "epochs": args.epochs, "max_train_samples": args.max_train_samples}
    side_settings = {"plain": settings, "edgekd": {**settings, "edgekd_args": args.edgekd_args}}

    def load(side: str, seed: int) -> dict | None:
        f = per_seed_dir / f"{side}-s{seed}.json"
        if not f.is_file():
            return None
        rec = json.loads(f.read_text())
        if rec["settings"] != side_settings[side]:
            raise SystemExit(f"{f} was made with other settings ({rec['settings']}); delete it or pass --tag")
        return rec

    runners = {"plain": run_plain, "edgekd": run_edgekd}
    for side in ([args.only] if args.only else SIDES) if not args.collect else ():
        for seed in seeds:
            if load(side, seed) is not None:
                print(f"[{side} s{seed}] done before: {per_seed_dir / f'{side}-s{seed}.json'}")
                continue
            started, load0 = dt.datetime.now().isoformat(timespec="seconds"), os.getloadavg()
            rec = runners[side](args, seed, workdir)
            rec.update(side=side, seed=seed, settings=side_settings[side], started=started,
                       finished=dt.datetime.now().isoformat(timespec="seconds"),
                       loadavg_before_after=[load0, os.getloadavg()], git=git_state())
            per_seed_dir.mkdir(parents=True, exist_ok=True)
            tmp = per_seed_dir / f"{side}-s{seed}.json.tmp"
            tmp.write_text(json.dumps(rec, indent=2))
            tmp.replace(per_seed_dir / f"{side}-s{seed}.json")

    records = {side: {s: load(side, s) for s in seeds} for side in SIDES}
    missing = [f"{side}-s{s}" for side in SIDES for s in seeds if records[side][s] is None]
    if missing:
        print(f"\nnot finished yet: {', '.join(missing)}; no table")
        if args.collect:
            raise SystemExit(1)
        return

    from edgekd.bench.system import system_info

    summary = summarize(records, seeds)
    split = records["plain"][seeds[0]]["split"]
    print(f"\n{args.data.name}: student {args.student} at {args.image_size}px, {args.epochs} epochs, train "
          f"{split['train']} / val {split['val']} / test {split['test']} images, seeds {args.seeds}; all accuracies: "
          f"the OpenVINO IRs on the test split\n")
    print(table(summary))
    print("\n" + "\n".join(goal_lines(summary["goals"])))
    result = {"benchmark": "plain_vs_edgekd", "dataset": dataset, "settings": settings,
              "edgekd_args": args.edgekd_args, "seeds": seeds, "split": split, **summary,
              "per_seed": {side: {str(s): records[side][s] for s in seeds} for side in SIDES},
              "scoring": "evaluate_ir: OpenVINO CPU, INFERENCE_PRECISION_HINT f32, edgekd Preprocess "
                         f"({args.image_size}x{args.image_size} Pillow bilinear, ImageNet mean/std), all test images",
              "machine": system_info(), "git": git_state(), "argv": sys.argv[1:]}
    out = args.out / f"plain_vs_edgekd_{dataset}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
