"""Quantization-aware distillation (QAD): the fake-quantized student keeps learning from the FP32 teacher(s).

The route (verified in docs/research/nncf_qat_route.py, NNCF 3.4):
1. ``nncf.quantize`` on the torch student (calibration images, preset, ignored scope) gives a model with
   trainable FakeQuantizers, initialised as PTQ would (min-max ranges, smooth quant, fast bias correction).
2. The distillation engine fine-tunes it with the same losses (``kd``, ``hint``, ``multi_teacher``...) from the
   FP32 teachers: a short, low-LR stage with BatchNorm frozen; the best epoch by the validation metric is kept,
   and the PTQ start counts as epoch 0, so QAD never ends worse than the PTQ it started from.
3. Exports come from the torch QAT model (see qat_export.py): OpenVINO INT8 IR and standard Q/DQ ONNX.

Resume: the QAT structure (``nncf.torch.get_config``, plain JSON) and the PTQ-initialised state are written
before training starts; a rerun rebuilds the model from them (``load_from_config``) and the engine resumes
after the last finished epoch.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd._deps import require
from edgekd.errors import BackendError, reason
from edgekd.fileio import atomic, write_text
from edgekd.quantize.spec import QuantSpec

# NNCF JIT-compiles a C++ extension on first use (~20 s cold); its 60 s default limit is too short on a busy
# 2-core machine
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")


def nncf_torch():
    nncf = require("nncf")
    require("nncf.torch", "nncf")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def quantizers(model: nn.Module) -> dict[str, nn.Module]:
    """Every NNCF quantizer of a QAT model by its hook name (e.g. ``pre_hooks.stem/conv/conv2d/0__1.0``)."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    return {n: q for n, q in get_hook_storage(model).named_hooks() if isinstance(q, BaseQuantizer)}


def quantize_torch(student: nn.Module, calib: np.ndarray, spec: QuantSpec) -> nn.Module:
    """PTQ-initialised QAT model of (a copy of) ``student``; ``calib`` is N x C x H x W float32."""
    nncf = nncf_torch()
    x = torch.from_numpy(calib)
    batches = [x[i:i + spec.batch] for i in range(0, len(x), spec.batch)]
    ds = nncf.Dataset(batches)
    # NNCF counts dataset items, here batches: every image is used either way, but len(x) made it warn that
    # the dataset "contains only 3 samples, smaller than the requested subset size 82"
    kw = spec.nncf_kwargs(nncf, len(batches))
    try:
        qat = nncf.quantize(copy.deepcopy(student).eval(), ds, **kw)
    except Exception as exc:  # noqa: BLE001 - NNCF's errors are long; the first line names the problem
        raise BackendError(f"NNCF could not quantize the torch student: {reason(exc)}") from exc
    if spec.tensorrt:
        # NNCF picks unsigned (uint8) quantizers after ReLU-like ops; TensorRT takes signed int8 only. The scale
        # is kept, so a ReLU output keeps 7 bits of its range, as in TensorRT's own int8; QAD re-adapts.
        for q in quantizers(qat).values():
            if hasattr(q, "signed") and not q.signed:
                q.signed = True
    return qat.eval()


def save_qat(model: nn.Module, folder: Path, name: str) -> None:
    """The QAT structure (JSON) and state (tensors only), written atomically: ``name.json`` + ``name.pt``."""
    nncf_torch()
    import nncf.torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg, state = folder / f"{name}.json", folder / f"{name}.pt"
    with atomic(state) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    write_text(cfg, json.dumps(nncf.torch.get_config(model)))


def load_qat(fp32: nn.Module, folder: Path, name: str) -> nn.Module | None:
    """Rebuild a QAT model saved by :func:`save_qat` around a fresh FP32 ``fp32`` (None when absent)."""
    cfg, state = folder / f"{name}.json", folder / f"{name}.pt"
    if not (cfg.is_file() and state.is_file()):
        return None
    nncf_torch()
    import nncf.torch

    model = nncf.torch.load_from_config(copy.deepcopy(fp32).eval(), json.loads(cfg.read_text()))
    model.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
    return model.eval()


def start(student: nn.Module, calib: np.ndarray, spec: QuantSpec, folder: Path) -> nn.Module:
    """The PTQ-initialised QAT model, computed once per run folder (a rerun after a kill reloads it)."""
    model = load_qat(student, folder, "ptq-init")
    if model is None:
        model = quantize_torch(student, calib, spec)
        save_qat(model, folder, "ptq-init")
    return model


def train(qat: nn.Module, data, cfg, teacher_cards: list[dict], folder: Path, epochs: int, lr: float,
          losses: list) -> dict:
    """Fine-tune ``qat`` in place by distillation; keeps the best validation epoch (PTQ = epoch 0)."""
    from edgekd.config import StageSpec
    from edgekd.data.torchdata import loader
    from edgekd.distill.engine import distill_student
    from edgekd.distill.trainer import evaluate

    val_dl = loader(data.val, data.preprocess, data.eval_batch, shuffle=False)
    ptq_val = evaluate(qat, val_dl, cfg.select_metric)
    init = {k: v.detach().clone() for k, v in qat.state_dict().items()}
    stage = StageSpec(name="qad", epochs=epochs, losses=losses, lr=lr)
    tweak = {"freeze_bn": True, "warmup_epochs": 0.0, "weight_decay": 0.0}
    res, summary = distill_student(qat, data, cfg, teacher_cards, folder / "train", [stage], tweak)
    kept = "qad"
    if ptq_val >= res.best_val:  # fine-tuning did not beat its own start: keep the PTQ model
        qat.load_state_dict(init)
        kept = "ptq (no QAD epoch beat it)"
    qat.eval()
    return {"ptq_val": ptq_val, "qad_best_val": res.best_val, "best_epoch": res.best_epoch, "kept": kept,
            "history": summary[-1]["history"], "metric": cfg.select_metric}
