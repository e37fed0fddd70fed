"""What an int8 model is made to (a leaf: no torch, no NNCF at import).

``QuantSpec`` is the one description both quantization routes take (NNCF PTQ of the exported graphs in
``quantize/ptq.py``, and the torch route's QAT model in ``quantize/qad.py``); :meth:`QuantSpec.nncf_kwargs` is the
one place it becomes ``nncf.quantize`` arguments, and :func:`is_transformer` the one place an architecture name
says "attention model" (NNCF's transformer mode keeps softmax / LayerNorm paths out of int8).
"""

from __future__ import annotations

from dataclasses import dataclass


def is_transformer(arch: str) -> bool:
    """Whether ``arch`` (a timm name) has attention blocks NNCF should quantize in its transformer mode."""
    name = arch.lower()
    return "vit" in name or "former" in name


@dataclass(frozen=True)
class QuantSpec:
    """How a student is quantized: the choices every route and every int8 file of a run share."""

    preset: str = "mixed"  # NNCF preset: "performance" = symmetric everywhere; "mixed" = asymmetric activations
    transformer: bool = False
    ignored_scope: tuple[str, ...] = ()  # regular expressions over node names kept in FP32
    # TensorRT's explicit quantization: symmetric, signed int8, per-tensor activations; the Q/DQ ONNX is rewritten
    # to it (export/tensorrt.py make_tensorrt_ready)
    tensorrt: bool = False
    qonnx_bits: int | None = None  # a QONNX file for FPGA flows at this weight bit width (None: none)
    batch: int = 32  # calibration batch of the torch route

    def nncf_kwargs(self, nncf, subset_size: int) -> dict:
        """``nncf.quantize`` keyword arguments (any backend) for ``subset_size`` dataset items."""
        kw: dict = {"subset_size": subset_size, "preset": nncf.QuantizationPreset(self.preset)}
        if self.ignored_scope:  # NNCF refuses a pattern that matches nothing
            kw["ignored_scope"] = nncf.IgnoredScope(patterns=list(self.ignored_scope))
        if self.transformer:
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        if self.tensorrt:
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

            kw["advanced_parameters"] = AdvancedQuantizationParameters(
                activations_quantization_params=QuantizationParameters(per_channel=False))
        return kw
