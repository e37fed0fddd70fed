"""Teachers as the trainer sees them: a callable from the student's input batch to logits (and features).

Each teacher has its own view of the data (input size and normalisation): the student's normalised batch is
mapped back to [0, 1] pixels, resized and renormalised for the teacher, on the batch, so one data path feeds
every model. A PyTorch teacher can also expose tapped features; an ONNX teacher is a black box (logits only)
run with onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ConfigError, ModelError, reason
from edgekd.preprocess import Preprocess


@dataclass(frozen=True)
class View:
    """Input size (H, W) and normalisation of one model."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, pre: Preprocess) -> View:
        return cls(tuple(pre.size), tuple(pre.mean), tuple(pre.std))

    def to_dict(self) -> dict:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> View:
        return cls(tuple(d["size"]), tuple(d["mean"]), tuple(d["std"]))


def to_view(x: torch.Tensor, src: View, dst: View) -> torch.Tensor:
    """A batch normalised for ``src`` -> the same images as ``dst`` expects them."""
    if src == dst:
        return x
    m_s = torch.tensor(src.mean, device=x.device).view(1, 3, 1, 1)
    s_s = torch.tensor(src.std, device=x.device).view(1, 3, 1, 1)
    x = x * s_s + m_s
    if tuple(x.shape[-2:]) != tuple(dst.size):
        x = F.interpolate(x, size=dst.size, mode="bilinear", align_corners=False, antialias=True)
    m_d = torch.tensor(dst.mean, device=x.device).view(1, 3, 1, 1)
    s_d = torch.tensor(dst.std, device=x.device).view(1, 3, 1, 1)
    return (x - m_d) / s_d


class Viewed(nn.Module):
    """``model`` fed through ``to_view``: trains and evaluates a teacher on the student's data path."""

    def __init__(self, model: nn.Module, src: View, dst: View) -> None:
        super().__init__()
        self.model, self.src, self.dst = model, src, dst

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(to_view(x, self.src, self.dst))


class Teacher:
    """Common face of PyTorch and ONNX teachers."""

    name: str
    view: View
    has_features = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: torch.device) -> Teacher:
        return self


class TorchTeacher(Teacher):
    has_features = True

    def __init__(self, name: str, model: nn.Module, view: View, src: View, bf16: bool = False) -> None:
        self.name, self.model, self.view, self.src, self.bf16 = name, model.eval(), view, src, bf16
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(to_view(x, self.src, self.view)).float()

    def to(self, device: torch.device) -> TorchTeacher:
        self.model.to(device)
        return self


class OnnxTeacher(Teacher):
    """A black-box teacher: an ONNX classifier run on the CPU with onnxruntime."""

    def __init__(self, name: str, path: Path, view: View, src: View, threads: int = 0) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"ONNX teacher {path} does not exist")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # the teacher runs between the student's torch steps: ORT's default spin-waiting threads would keep
        # burning the cores torch needs next (measured here: 1.4x the student's step time with spinning on)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{path}: onnxruntime cannot load it ({reason(exc)})") from exc
        self.name, self.view, self.src, self.path = name, view, src, path
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xin = to_view(x.detach().float().cpu(), self.src, self.view).numpy()
        try:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(xin, dtype=np.float32)})[0]
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            batch = self.session.get_inputs()[0].shape[0]
            hint = (f"; its batch axis is fixed at {batch}: export it with a dynamic batch axis"
                    if isinstance(batch, int) and batch != xin.shape[0] else "")
            raise ModelError(f"ONNX teacher {self.path} failed on a batch of shape {list(xin.shape)}: "
                             f"{reason(exc).rstrip('.')}{hint}") from exc
        return torch.from_numpy(out).to(x.device)


class OpenVinoTeacher(Teacher):
    """An ONNX teacher compiled by OpenVINO at bf16 (a hint: f32 on CPUs without bf16 units) or int8 (NNCF PTQ on
    ``calib``, a float32 NCHW batch in the ``src`` view): a cheaper teacher to run online (``teacher_precision``)."""

    def __init__(self, name: str, path: Path, view: View, src: View, precision: str,
                 calib: np.ndarray | None = None) -> None:
        import openvino as ov

        if not path.is_file():
            raise ModelError(f"ONNX teacher {path} does not exist")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own exception types
            raise ModelError(f"{path}: OpenVINO cannot read it ({reason(exc)})") from exc
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if precision == "int8":
            if calib is None or not len(calib):
                raise ConfigError("teacher_precision int8 needs calibration images (calib_samples)")
            model = _ptq(model, to_view(torch.from_numpy(calib), src, view).numpy(), path)
        self.compiled = core.compile_model(model, "CPU", config)
        self.name, self.view, self.src, self.path, self.precision = name, view, src, path, precision

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xin = np.ascontiguousarray(to_view(x.detach().float().cpu(), self.src, self.view).numpy(), dtype=np.float32)
        return torch.from_numpy(np.asarray(self.compiled(xin)[0]).copy()).to(x.device)


def _ptq(model, calib: np.ndarray, path: Path):
    """NNCF post-training int8 of an OpenVINO model on a calibration batch (one image per sample)."""
    import nncf

    try:
        return nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                             subset_size=len(calib))
    except Exception as exc:  # noqa: BLE001 - NNCF raises many types
        raise ModelError(f"ONNX teacher {path}: NNCF could not quantize it to int8 ({reason(exc)})") from exc


def onnx_input_size(path: Path) -> tuple[int, int] | None:
    """The static (H, W) of an ONNX model's first input, or None when dynamic."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: not a readable ONNX file ({exc})") from exc
    dims = model.graph.input[0].type.tensor_type.shape.dim
    hw = [d.dim_value for d in dims[2:4]]
    return (hw[0], hw[1]) if len(hw) == 2 and all(hw) else None


def onnx_num_outputs(path: Path, size: tuple[int, int], dense: bool = False) -> int:
    """Class count of an ONNX classifier ([N, classes]) or segmenter (``dense``: [N, classes, H, W]), from one
    forward pass."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, *size), np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    if dense and out.ndim != 4:
        raise ConfigError(f"ONNX teacher {path}: output has shape {out.shape}; a segmentation teacher gives "
                          f"[N, classes, H, W]")
    if not dense and out.ndim != 2:
        raise ConfigError(f"ONNX teacher {path}: output has shape {out.shape}; a classifier gives [N, classes]")
    return int(out.shape[1])
