"""Does the data path keep up? Loader images/s alone, and the share of a training epoch spent waiting for data.

Side by side in one process, on the same training images and augmentation (``standard``: random-resized crop,
flip, colour jitter, erasing):

- ``torchvision ImageFolder``: what the plain fine-tuning script uses (decode + transforms v2 every epoch,
  2 workers);
- ``edgekd before``: edgekd's old path (main process only, decode every epoch);
- ``edgekd now``: workers (the cores available) + the decoded-image cache.

On a machine with a CUDA GPU the training rows run there in bf16 (edgekd's trainer through accelerate; the plain
script's loop with ``torch.autocast``), the plain script gets ``--plain-workers`` workers and pinned memory, and
the JSON goes to ``loader_throughput_gpu.json``; ``--data-root`` points at a copy of ``../shared/data``.

Loader rows iterate the training loader alone for ``--epochs`` epochs (epoch 1 includes the cache's decode);
training rows run edgekd's trainer (``--student``, labels only) for ``--train-epochs`` epochs and report the
share of epoch time spent waiting for the next batch (``data_wait_seconds`` of the trainer's history). Each is
repeated ``--rounds`` times, interleaved; medians are quoted.

    .venv/bin/python benchmarks/loader_throughput.py                      # CIFAR-10 (32 px) and hymenoptera
    .venv/bin/python benchmarks/loader_throughput.py --sets hymenoptera --rounds 1

Prints a Markdown table and writes benchmarks/results/loader_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SETS = {  # name: (folder, model input side, training images used)
    "cifar10": (SHARED / "cifar10-jpg", 64, 2000),
    "hymenoptera": (SHARED / "hymenoptera", 224, None),
}


def plain_loader(paths, labels, size: int, batch: int, workers: int = 2):
    """The plain script's loader: PIL decode + torchvision v2 transforms every epoch, ``workers`` workers."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    tf = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
                     v2.RandomHorizontalFlip(), v2.ColorJitter(0.3, 0.3, 0.3), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), v2.RandomErasing(p=0.25)])

    class Folder(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                return tf(im.convert("RGB")), labels[i]

    return DataLoader(Folder(), batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True,
                      pin_memory=torch.cuda.is_available())


def edgekd_loader(spec: str, size: int, n: int | None, batch: int, new: bool):
    from edgekd.data import Loading, load_data
    from edgekd.data.torchdata import loader

    load = Loading(workers=None if new else 0, cache="auto" if new else "off")
    data = load_data(spec, size, max_train=n, loading=load)
    return data, loader(data.train, data.preprocess, batch, shuffle=True, augment="standard", seed=0)


def time_epochs(make, epochs: int) -> list[float]:
    """Images/s of each epoch of iterating the loader ``make()`` builds, alone; epoch 1 includes building it
    (edgekd's decoded cache is filled then)."""
    out = []
    t0 = time.perf_counter()
    dl = make()
    for e in range(epochs):
        if hasattr(dl.sampler, "set_epoch"):
            dl.sampler.set_epoch(e)
        t0, n = t0 if e == 0 else time.perf_counter(), 0
        for x, *_ in dl:
            n += len(x)
        out.append(n / (time.perf_counter() - t0))
    return out


def train_wait(spec: str, size: int, n: int | None, student: str, epochs: int, new: bool, work: Path) -> dict:
    import shutil

    import torch

    from edgekd.data.torchdata import loader
    from edgekd.distill import trainer
    from edgekd.distill.catalog import build_loss
    from edgekd.models.factory import create_timm

    data, train_dl = edgekd_loader(spec, size, n, 64, new)
    val_dl = loader(data.val.head(64), data.preprocess, 64, shuffle=False)
    shutil.rmtree(work, ignore_errors=True)
    torch.manual_seed(0)
    model = create_timm(student, len(data.classes))
    t0 = time.perf_counter()
    res = trainer.fit(model, train_dl, val_dl, build_loss("ce"), trainer.TrainSettings(epochs, 2e-3, 0.05), work)
    hist = res.history
    return {"epoch_s": [h["train_seconds"] for h in hist], "wait_s": [h["data_wait_seconds"] for h in hist],
            "wait_share": [h["data_wait_seconds"] / h["train_seconds"] for h in hist],
            "wall_s": time.perf_counter() - t0, "images": len(data.train)}


def train_plain(paths, labels, n_classes: int, size: int, student: str, epochs: int, workers: int) -> dict:
    """The plain script's training loop (AdamW, cross-entropy, bf16 autocast on CUDA) on its own loader, timed
    like edgekd's trainer: the wait for each next batch against the epoch's time."""
    import torch

    from edgekd.models.factory import create_timm

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = create_timm(student, n_classes).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.05)
    dl = plain_loader(paths, labels, size, 64, workers)
    t_all, epoch_s, wait_s = time.perf_counter(), [], []
    for _ in range(epochs):
        t0, wait = time.perf_counter(), 0.0
        it = iter(dl)
        while True:
            tw = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - tw
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # the host waits for the step, as edgekd's trainer does when it logs the loss
        epoch_s.append(time.perf_counter() - t0)
        wait_s.append(wait)
    return {"epoch_s": epoch_s, "wait_s": wait_s, "wait_share": [w / e for w, e in zip(wait_s, epoch_s, strict=True)],
            "wall_s": time.perf_counter() - t_all, "images": len(paths)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="cifar10,hymenoptera")
    ap.add_argument("--epochs", type=int, default=3, help="loader-only epochs")
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--student", default="mobilevit_xxs")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-loader")
    ap.add_argument("--data-root", type=Path, default=SHARED, help="folder holding cifar10-jpg/ and hymenoptera/")
    ap.add_argument("--plain-workers", type=int, default=2, help="the plain script's loader workers")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the main process (default: 2 on CPU, as on the 2-core box; all on GPU)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: results/loader_throughput.json, or loader_throughput_gpu.json on a CUDA GPU")
    args = ap.parse_args()

    import torch

    from edgekd.bench.system import system_info
    from edgekd.data import load_data

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    args.out = args.out or Path(__file__).parent / "results" / (
        "loader_throughput_gpu.json" if gpu else "loader_throughput.json")
    torch.set_num_threads(args.threads or (os.cpu_count() if gpu else 2))
    results: dict = {"machine": system_info() | {"gpu": gpu, "torch": torch.__version__},
                     "settings": vars(args) | {"work": str(args.work), "out": str(args.out),
                                               "data_root": str(args.data_root),
                                               "training": "CUDA, bf16 autocast" if gpu else "CPU, fp32"},
                     "sets": {}}
    for name in args.sets.split(","):
        sub, size, n = SETS[name]
        folder = args.data_root / sub
        if not folder.is_dir():
            print(f"{name}: {folder} is absent, skipped")
            continue
        ref = load_data(str(folder), size, max_train=n)
        rows: dict = {"plain": [], "before": [], "now": [], "train_plain": [], "train_before": [], "train_now": []}
        for rnd in range(args.rounds):
            paths, labels = [str(p) for p in ref.train.paths], ref.train.labels.tolist()
            rows["plain"].append(time_epochs(partial(plain_loader, paths, labels, size, 64, args.plain_workers),
                                             args.epochs))
            for key, new in (("before", False), ("now", True)):
                make = partial(edgekd_loader, str(folder), size, n, 64, new)
                rows[key].append(time_epochs(lambda make=make: make()[1], args.epochs))
            rows["train_plain"].append(train_plain(paths, labels, len(ref.classes), size, args.student,
                                                   args.train_epochs, args.plain_workers))
            for key, new in (("train_before", False), ("train_now", True)):
                rows[key].append(train_wait(str(folder), size, n, args.student, args.train_epochs, new,
                                            args.work / f"{name}-{key}-{rnd}"))
        results["sets"][name] = {"folder": str(folder), "input": size, "train_images": len(ref.train), **rows}

    print(f"\n{results['machine']['cpu']} ({', '.join(results['machine']['isa'])}), "
          f"{results['machine'].get('usable_cpus')} usable cores"
          f"{f'; training on {gpu} (bf16)' if gpu else ''}; medians over {args.rounds} rounds\n")
    print("| set | loader | images/s epoch 1 | images/s epochs 2+ | training: data wait share epochs 2+ | "
          "s/epoch 2+ | training images/s epochs 2+ |")
    print("|---|---|---|---|---|---|---|")
    labels = {"plain": f"torchvision ImageFolder, {args.plain_workers} workers (plain script)",
              "before": "edgekd before (0 workers, decode every epoch)", "now": "edgekd now (workers + decoded cache)"}
    summary = {}
    for name, s in results["sets"].items():
        for key, label in labels.items():
            first = statistics.median(r[0] for r in s[key])
            later = statistics.median(v for r in s[key] for v in r[1:])
            tr = s.get(f"train_{key}")
            share = statistics.median(v for r in tr for v in r["wait_share"][1:]) if tr else None
            ep = statistics.median(v for r in tr for v in r["epoch_s"][1:]) if tr else None
            ips = s["train_images"] / ep if ep else None
            summary[f"{name}/{key}"] = {"images_s_first": first, "images_s_later": later, "wait_share_later": share,
                                        "epoch_s_later": ep, "train_images_s_later": ips}
            print(f"| {name} ({s['train_images']} imgs, {s['input']} px) | {label} | {first:.0f} | {later:.0f} | "
                  f"{'-' if share is None else f'{100 * share:.1f} %'} | {'-' if ep is None else f'{ep:.2f}'} | "
                  f"{'-' if ips is None else f'{ips:.0f}'} |")
    results["summary"] = summary
    goal = [v["wait_share_later"] for k, v in summary.items() if k.endswith("/now")]
    results["goal_wait_below_10pct"] = bool(goal) and all(g < 0.10 for g in goal)
    print(f"\ngoal (edgekd now: data wait < 10 % of epoch time after epoch 1): "
          f"{'met' if results['goal_wait_below_10pct'] else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
