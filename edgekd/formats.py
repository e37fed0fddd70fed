"""One table of model formats (after Ultralytics' ``export_formats()``): for each format its file suffix, the
exporter that writes it, the runtime that opens it here, the precisions it holds, and whether bench and the
bundle take it. Exporters, runtimes, verify, bench, the deploy choice, the bundle and the CLI read this table;
it is the only place a file suffix maps to a runtime (tests/test_formats.py greps for other maps).

A leaf: it imports nothing heavy and nothing from edgekd but ``errors``, and it is shipped inside the bundle's
``run.pyz`` (``bundle.RUNNER_MODULES``), so the torch-free runner reads the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import ConfigError


@dataclass(frozen=True)
class Format:
    """One model format.

    Attributes:
        name: the format's name, as target YAMLs (``formats:``) and ``ExportedModel.format`` spell it.
        suffixes: file suffixes of the format; the first is the one edgekd writes.
        runtime: the runtime (``edgekd.runtimes.RUNTIMES``) that opens the file here; ``runtime_for``'s default
            for the suffix, and what verify runs it in.
        precisions: the precisions edgekd makes in this format (QONNX: ``w<bits>a8`` for sub-8-bit weights).
        exporter: its name in ``export/catalog.py``'s ``EXPORTERS``; None: not an export format (the checkpoint).
        export_from: the ONNX graph that exporter reads: ``"fp32"`` (the root graph ``export_torch`` writes; the
            ``onnx`` exporter records that graph itself) or ``"int8"`` (the int8 Q/DQ graph of the quantize
            stage); the export stage calls only the ``"fp32"`` ones.
        side: files beside the model with the same stem that belong to it (OpenVINO's weights, a card).
        also_read_by: other runtimes that open this format's files (OpenVINO and qonnx's executor read ONNX).
        ptq: NNCF post-training quantization makes this format's int8 model from its FP32 file.
        bench: timed on this machine (bench, the deploy choice, robustness); False where the runtime here is
            not the one the device runs (QONNX's reference executor, ~1 s per image) or needs the device itself.
        bundled: a bundle may carry the file (a TensorRT engine is not portable: the bundle carries its ONNX).
        verify_samples: verify checks at most this many inputs (None: all of them).
        role: what the format is for on its device, in words.
    """

    name: str
    suffixes: tuple[str, ...]
    runtime: str
    precisions: tuple[str, ...]
    exporter: str | None = None
    export_from: str | None = None
    side: tuple[str, ...] = ()
    also_read_by: tuple[str, ...] = ()
    ptq: bool = False
    bench: bool = False
    bundled: bool = False
    verify_samples: int | None = None
    role: str = ""

    @property
    def suffix(self) -> str:
        """The suffix edgekd writes."""
        return self.suffixes[0]


# QONNX: weights of 2..8 bits, activations int8 (QonnxExporter(weight_bits=...))
_QONNX_PRECISIONS = ("int8", *(f"w{b}a8" for b in range(2, 8)))

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", (".onnx",), "onnxruntime", ("fp32", "int8"), exporter="onnx", export_from="fp32",
           also_read_by=("openvino", "qonnx"), ptq=True, bench=True, bundled=True,
           role="the root graph every format derives from (int8 as Q/DQ pairs); on a Jetson target the bundle "
                "builds the TensorRT engine from it on the device (build_engine.sh)"),
    Format("openvino", (".xml",), "openvino", ("fp32", "fp16", "int8"), exporter="openvino", export_from="fp32",
           side=(".bin",), ptq=True, bench=True, bundled=True, role="OpenVINO IR for Intel CPUs, GPUs and NPUs"),
    Format("tensorrt", (".engine", ".plan", ".trt"), "tensorrt", ("fp32", "fp16", "int8"), exporter="tensorrt",
           export_from="fp32",
           role="TensorRT engine, built on the GPU that runs it: exported here only where TensorRT is importable; "
                "a bundle carries the ONNX and build_engine.sh instead"),
    Format("qonnx", (".qonnx.onnx",), "qonnx", _QONNX_PRECISIONS, exporter="qonnx", export_from="int8",
           bundled=True, verify_samples=64,
           role="FPGA (FINN dataflow): verified here in qonnx's reference executor on the first 64 inputs; its "
                "latency is the target's dataflow estimate; the board runs it in the target's runtime"),
    Format("torch", (".safetensors",), "torch", ("fp32",), bench=True,
           role="edgekd checkpoint (weights + .json card): the PyTorch reference, not an export format"),
)}


def get(name: str) -> Format:
    """The format called ``name``; ConfigError for an unknown one."""
    if name not in FORMATS:
        raise ConfigError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def export_formats() -> list[str]:
    """The formats an exporter writes (what a target's ``formats:`` may list), in table order."""
    return [f.name for f in FORMATS.values() if f.exporter is not None]


def format_of_path(path: str | Path) -> Format | None:
    """The format of a model file by its suffix (the longest matching one: ``x.qonnx.onnx`` is QONNX, not ONNX);
    None when no format has that suffix."""
    name = Path(path).name
    best: tuple[int, Format] | None = None
    for f in FORMATS.values():
        for s in f.suffixes:
            if name.endswith(s) and len(name) > len(s) and (best is None or len(s) > best[0]):
                best = (len(s), f)
    return best[1] if best else None


def runtime_of_path(path: str | Path) -> str | None:
    """The runtime that opens ``path`` here by default (by its suffix); None for an unknown suffix."""
    f = format_of_path(path)
    return f.runtime if f else None


def runtime_of(name: str) -> str:
    """The runtime that opens format ``name`` here (verify's runtime)."""
    return get(name).runtime


def timed_runtime(name: str) -> str | None:
    """The runtime format ``name`` is timed in on this machine; None when bench does not time it here."""
    f = FORMATS.get(name)
    return f.runtime if f is not None and f.bench else None


def bundle_runtime(name: str, target_runtimes: list[str] | tuple[str, ...]) -> str:
    """The runtime a bundle's manifest names for format ``name``: its own where it is timed here, otherwise the
    target's first runtime (QONNX runs in FINN's driver on the board, not in the reference executor)."""
    return timed_runtime(name) or target_runtimes[0]


def suffixes_read_by(runtime: str) -> tuple[str, ...]:
    """Every file suffix ``runtime`` opens, in table order."""
    return tuple(s for f in FORMATS.values() if runtime == f.runtime or runtime in f.also_read_by
                 for s in f.suffixes)


def reads(runtime: str, path: str | Path) -> bool:
    """Whether ``runtime`` opens a file with ``path``'s suffix."""
    name = Path(path).name
    return any(name.endswith(s) and len(name) > len(s) for s in suffixes_read_by(runtime))


def files_of(name: str, path: str | Path) -> tuple[str, ...]:
    """The model file and its side files (OpenVINO's .bin), as paths."""
    path = Path(path)
    return (str(path), *(str(path.with_suffix(s)) for s in get(name).side))


def suffix_of(name: str, stem: str | None = None) -> str:
    """The suffix edgekd writes for format ``name`` (with ``stem``: the file name, ``stem + suffix``)."""
    s = get(name).suffix
    return s if stem is None else stem + s


def known_suffixes() -> str:
    """Every suffix with a runtime, in words: ``.onnx, .xml, ... or .safetensors``."""
    all_ = [s for f in FORMATS.values() for s in f.suffixes]
    return ", ".join(all_[:-1]) + " or " + all_[-1]
