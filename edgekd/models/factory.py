"""Create timm models and load weights safely (safetensors, or torch.load with weights_only=True)."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import ModelError, reason, writing


def create_timm(name: str, num_classes: int, pretrained: bool = False, stem_stride: int | None = None) -> nn.Module:
    """A classifier with ``num_classes`` outputs: edgekd's own CIFAR ResNets (``cifar_resnet56``...) or any timm
    model; unknown names get the closest suggestions. ``stem_stride`` sets the stride of a timm model's first
    convolution (:func:`adapt_stem`)."""
    from edgekd.models import cifar_resnet, segmentation

    if stem_stride is not None and (name in cifar_resnet.DEPTHS or segmentation.is_seg_model(name)):
        raise ModelError(f"stem_stride applies to timm classifiers, not {name} (CIFAR ResNets already keep 32 px "
                         f"at stride 1; U-Nets keep their resolution)")
    if name in cifar_resnet.DEPTHS:
        return cifar_resnet.create(name, num_classes)
    if segmentation.is_seg_model(name):
        return segmentation.create_seg(name, num_classes, pretrained)
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models() + list(cifar_resnet.DEPTHS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown timm model {name!r}{hint}")
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes)
    except Exception as exc:  # noqa: BLE001 - hub/network errors become one line
        raise ModelError(f"cannot create timm model {name!r}: {reason(exc)}") from exc
    return adapt_stem(model, stem_stride, name)


def adapt_stem(model: nn.Module, stride: int | None, name: str) -> nn.Module:
    """Set the stride of the model's first convolution (timm's ``pretrained_cfg["first_conv"]``, every branch of a
    re-parameterisable stem) to ``stride``; None leaves the model as built.

    A stride-1 stem keeps a small input (CIFAR's 32 px) at full resolution where a stride-2 stem would halve it,
    instead of upsampling the images 2x: after the stem the feature maps match the 2x-upsampled input's, and the
    stem itself costs a quarter. Weights do not depend on the stride, so pretrained weights load unchanged; the
    exported ONNX and its int8 versions carry the stride like any other attribute.
    """
    if stride is None:
        return model
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if not first:
        raise ModelError(f"{name}: timm names no first convolution for it (pretrained_cfg has no first_conv), so "
                         f"stem_stride cannot be applied")
    for path in [first] if isinstance(first, str) else list(first):
        conv = model.get_submodule(path)
        if not isinstance(conv, nn.Conv2d):
            raise ModelError(f"{name}: its first_conv {path} is a {type(conv).__name__}, not a convolution")
        conv.stride = (stride, stride)
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or a torch checkpoint loaded with ``weights_only=True`` (no code runs)."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends
        raise ModelError(
            f"{path}: refused to load: it is not a plain weights file (a pickle that needs code to load is never "
            f"executed); save it as safetensors or a state_dict"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: no state_dict of tensors found")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> bool:
    """Load ``state`` into ``model``. Returns False when only the classifier head did not fit (class count
    differs), in which case the head is left freshly initialised; any other mismatch is an error."""
    own = model.state_dict()
    head = _head_keys(model)
    bad_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]  # older checkpoints
    unexpected = [k for k in state if k not in own]
    if unexpected or [k for k in missing if k not in head]:
        raise ModelError(
            f"{source}: weights do not match the architecture ({len(missing)} missing, {len(unexpected)} "
            f"unexpected keys, e.g. {(missing + unexpected)[:2]}); is it the right timm name?"
        )
    if [k for k in bad_shape if k not in head]:
        raise ModelError(f"{source}: tensor shapes differ from the architecture, e.g. {bad_shape[0]}")
    fits = not bad_shape
    model.load_state_dict({k: v for k, v in state.items() if k not in bad_shape}, strict=False)
    return fits


def is_model(name: str) -> bool:
    import timm

    from edgekd.models import cifar_resnet, segmentation

    return name in cifar_resnet.DEPTHS or segmentation.is_seg_model(name) or timm.is_model(name)


def _head_keys(model: nn.Module) -> set[str]:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if head is None:
        return set()
    names = {id(m): n for n, m in model.named_modules()}
    prefix = names.get(id(head), "")
    return {f"{prefix}.{k}" if prefix else k for k in head.state_dict()}


def save_checkpoint(model: nn.Module, path: Path, card: dict[str, Any]) -> None:
    """Write ``path`` (safetensors) and ``path.with_suffix('.json')`` (the model card) atomically."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp))
    card_tmp = path.with_suffix(".json.tmp")
    with writing(path.with_suffix(".json"), card_tmp):
        card_tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, path)
    os.replace(card_tmp, path.with_suffix(".json"))


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_checkpoint` from its card and weights."""
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        raise ModelError(f"{path}: its card {card_path.name} is missing (edgekd checkpoints are a pair)")
    try:
        card = json.loads(card_path.read_text())
        arch, n = card["arch"], len(card["classes"])
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{card_path}: malformed model card ({exc})") from exc
    model = create_timm(arch, n, stem_stride=card.get("stem_stride"))
    if not load_weights(model, read_state_dict(path), str(path)):
        raise ModelError(f"{path}: head does not match the {n} classes of its card")
    return model.eval(), card
