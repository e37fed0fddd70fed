"""Hardware targets: facts about a deployment device, loaded from ``targets/*.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from edgekd.config import load_yaml
from edgekd.errors import ConfigError

Format = Literal["onnx", "openvino", "tensorrt", "qonnx"]
Precision = Literal["fp32", "fp16", "int8"]
# "finn": the driver FINN generates for a QONNX model on a Zynq board; it runs only on the board, so on any other
# machine an FPGA target is verified on the host and benchmarked by the dataflow estimator (edgekd/bench/fpga.py).
RuntimeName = Literal["torch", "onnxruntime", "openvino", "tensorrt", "finn"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParityThresholds(_Strict):
    """How close an exported model must stay to its PyTorch reference (per precision)."""

    min_top1_agreement: float = Field(ge=0, le=1, description="fraction of samples with the same top-1")
    max_abs_diff: float | None = Field(default=None, gt=0, description="largest |logit diff|; None: not checked")
    max_metric_drop: float = Field(ge=0, description="largest drop of the task metric, in points")


class PowerModel(_Strict):
    """Power figures used to estimate energy when no meter can be read. Each number states its basis: ``cited:
    DOCUMENT (what it says)`` or ``assumption: WHY``; the estimate's method carries both."""

    idle_w: float = Field(ge=0)
    idle_basis: str = Field(pattern=r"^(cited|assumption): \S", description="cited: SOURCE | assumption: WHY")
    active_w: float = Field(gt=0)
    active_basis: str = Field(pattern=r"^(cited|assumption): \S", description="cited: SOURCE | assumption: WHY")
    source: str = Field(description="what the figures describe (board, power mode) and that no meter was read")

    def describe(self) -> str:
        """'idle 5 W (assumption: ...), active 15 W (cited: ...)': every number with its basis."""
        return f"idle {self.idle_w:g} W ({self.idle_basis}), active {self.active_w:g} W ({self.active_basis})"


class PublishedFigure(_Strict):
    """A published batch-1 latency the estimate is fitted to and checked against (never measured here)."""

    model: str = Field(description="the network as the source names it")
    builder: str = Field(description="how benchmarks/estimate_loo.py builds its graph: timm:NAME | torchvision:NAME | "
                         "ultralytics:CFG")
    input: str = Field(pattern=r"^\d+x\d+$", description="H x W of the timed input")
    precision: Precision
    latency_ms: float = Field(gt=0)
    batch: PositiveInt = 1
    board: str
    software: str = Field(min_length=1, description="runtime and versions (JetPack / TensorRT / ORT / Vitis AI)")
    clocks: str = Field(min_length=1, description="power mode and clocks, or 'not stated'")
    timing: Literal["compute-only", "end-to-end"]
    conditions: str = Field(min_length=1, description="what the timer covers, in the source's words")
    source: str = Field(min_length=8, description="URL or repository + path of the figure")
    device_overrides: dict[str, float] = Field(
        default_factory=dict, description="peaks of the board as timed, where they differ from the target's "
        "(e.g. Orin Nano at MAXN_SUPER)")


class FittedParams(_Strict):
    """The two parameters of the per-node model, fitted to published figures (benchmarks/estimate_loo.py)."""

    efficiency: float = Field(gt=0, le=1, description="fraction of peak compute and bandwidth reached per node")
    layer_overhead_us: float = Field(ge=0, description="fixed time per layer (kernel launch, scheduling), us")
    fitted_to: str = Field(description="which figures: targets and precision, and how many")
    median_loo_error: float | None = Field(default=None, description="median |leave-one-out error| of the fit")


class DeviceModel(_Strict):
    """Peaks of a device that is not attached and the fitted per-node latency model (labelled ``estimated``)."""

    architecture: str = Field(description="what the model stands for (the engine the figures were timed on)")
    peak_int8_tops: float | None = Field(default=None, gt=0, description="dense INT8 tera-ops/s of that engine")
    peak_fp16_tflops: float | None = Field(default=None, gt=0, description="dense FP16 tera-FLOP/s")
    peak_fp32_tflops: float | None = Field(default=None, gt=0, description="FP32 tera-FLOP/s")
    memory_bandwidth_gbs: float = Field(gt=0)
    fuse_pointwise: bool = Field(
        default=True, description="pointwise ops (ReLU, SiLU, BN, Add) fused into the layer before them: no "
        "time of their own (TensorRT, DPU); false: each is a memory-bound node (ONNX Runtime on a CPU)")
    fit: dict[Precision, FittedParams] = Field(min_length=1)
    figures: list[PublishedFigure] = Field(default_factory=list)
    source: str

    @model_validator(mode="after")
    def _peaks_for_fitted_precisions(self) -> DeviceModel:
        for prec in self.fit:
            if self.peak(prec) is None:
                raise ValueError(f"fit for {prec} but no peak_{prec} rate")
        return self

    def peak(self, precision: str) -> float | None:
        """Peak ops/s at ``precision`` (None when the engine has no such rate)."""
        rate = {"int8": self.peak_int8_tops, "fp16": self.peak_fp16_tflops, "fp32": self.peak_fp32_tflops}
        return None if rate.get(precision) is None else rate[precision] * 1e12


class FpgaModel(_Strict):
    """An FPGA fabric for the dataflow estimate (edgekd/bench/fpga.py): every figure is the part's, with its source."""

    part: str = Field(description="the FPGA part, e.g. XCZU7EV-2FFVC1156")
    dsp_slices: PositiveInt = Field(description="DSP slices of the part (DSP48E2 on UltraScale+)")
    clock_mhz: float = Field(gt=0, description="fabric clock the accelerator is assumed to close timing at")
    bram_mbit: float = Field(ge=0, description="block RAM, Mbit")
    uram_mbit: float = Field(ge=0, description="UltraRAM, Mbit")
    weight_bits: int = Field(ge=1, le=16, description="default weight bit width (QONNX Quant nodes)")
    activation_bits: int = Field(ge=1, le=16, description="default activation bit width")
    macs_per_dsp: dict[int, float] = Field(
        min_length=1, description="MACs one DSP slice completes per cycle, keyed by the wider operand's bit width")
    source: str

    @model_validator(mode="after")
    def _rate_for_default_bits(self) -> FpgaModel:
        if max(self.weight_bits, self.activation_bits) > max(self.macs_per_dsp):
            raise ValueError(f"macs_per_dsp has no entry for {max(self.weight_bits, self.activation_bits)} bits")
        return self

    def rate(self, bits: int) -> float:
        """MACs per DSP per cycle at ``bits``: the entry of the smallest width that holds ``bits``."""
        fits = [b for b in self.macs_per_dsp if b >= bits]
        if not fits:
            raise ConfigError(f"{self.part}: no DSP packing rate for {bits}-bit operands "
                              f"(known: {sorted(self.macs_per_dsp)})")
        return self.macs_per_dsp[min(fits)]


class TensorRTSettings(_Strict):
    """How the engine is built on the device (trtexec / TensorRT builder)."""

    workspace_mb: PositiveInt = 1024
    fp16: bool = True
    max_batch: PositiveInt = 8
    dla_core: int | None = Field(default=None, ge=0, description="run on this DLA core (GPU fallback on)")
    timing_cache: str = "timing.cache"


class Target(_Strict):
    """A deployment device and what edgekd should produce for it."""

    name: str
    description: str
    device: Literal["cpu", "gpu", "jetson", "fpga"]
    arch: str
    runtimes: list[RuntimeName] = Field(min_length=1)
    formats: list[Format] = Field(min_length=1)
    precisions: list[Precision] = Field(min_length=1)
    bundle_precision: Precision = "int8"
    deploy: Literal["fastest", "int8"] | None = Field(
        default=None, description="which passing model the bundle recommends: the fastest on this machine (CPU "
                                  "targets' default) or int8 (Jetson and FPGA default: what the device runs)")
    threads: PositiveInt
    latency_budget_ms: float | None = Field(default=None, gt=0)
    openvino_inference_precision: Literal["f32", "bf16", "f16"] | None = Field(
        default="f32", description="pinned INFERENCE_PRECISION_HINT; None lets OpenVINO choose"
    )
    parity: dict[Precision, ParityThresholds]
    power: PowerModel | None = None
    quant_preset: Literal["performance", "mixed"] | None = Field(
        default=None, description="overrides the recipe's; TensorRT needs symmetric int8 (performance)")
    estimate: DeviceModel | None = None
    tensorrt: TensorRTSettings | None = None
    fpga: FpgaModel | None = None

    @property
    def deploy_policy(self) -> str:
        return self.deploy or ("int8" if self.device in ("jetson", "fpga") else "fastest")

    @model_validator(mode="after")
    def _fpga_needs_its_model(self) -> Target:
        if (self.device == "fpga") != (self.fpga is not None):
            raise ValueError("an `fpga:` section is required for device fpga and refused for any other device")
        return self


def not_this_machine(target: Target) -> str | None:
    """Why timings and meters of the machine running edgekd say nothing about ``target`` (a board that is not
    attached, another CPU architecture), or None when the target is this kind of machine."""
    import platform

    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    if target.device in ("jetson", "fpga"):
        return f"{target.name} is a {target.device} board, not this {machine} machine"
    if target.arch != machine:
        return f"{target.name} is an {target.arch} {target.device}, not this {machine} machine"
    return None


def targets_dir() -> Path:
    """The folder of shipped target YAMLs (repository checkout or the copy packaged in an installed wheel)."""
    from edgekd.shipped import shipped_dir

    return shipped_dir("targets")


def list_targets() -> list[str]:
    return sorted(p.stem for p in targets_dir().glob("*.yaml"))


def load_target(name_or_path: str) -> Target:
    """Load a target by name (``cpu-x86``) or by a YAML path; unknown names list the known ones."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"target file {path} does not exist")
    elif "/" in name_or_path or "\\" in name_or_path or name_or_path.startswith("."):
        # a name is looked up in targets/; one with separators would resolve outside it
        raise ConfigError(f"unknown target {name_or_path!r}: a target name has no path separators (give a .yaml "
                          f"file's path, or one of: {', '.join(list_targets())})")
    else:
        path = targets_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown target {name_or_path!r}; known targets: {', '.join(list_targets())}")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a target file must be a mapping")
    try:
        target = Target.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from exc
    if target.deploy_policy == "int8" and "int8" not in target.precisions:
        why = "" if target.deploy else f" (the default for {target.device} targets)"
        raise ConfigError(f"{path}: deploy: int8{why} needs int8 in precisions; add it, or set deploy: fastest")
    missing = [p for p in target.precisions if p not in target.parity]
    if missing:
        raise ConfigError(f"{path}: parity thresholds missing for precision(s) {missing}")
    return target


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "<root>"
    return f"{loc}: {err['msg']}" + (f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else "")
