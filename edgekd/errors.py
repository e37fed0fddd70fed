"""Typed errors. The CLI turns each into one actionable line and a non-zero exit code."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path


class EdgeKDError(Exception):
    """Base class: a problem the user can act on. Its message is shown as one line."""

    exit_code = 1


class ConfigError(EdgeKDError):
    """A bad option, recipe, target or path given by the user."""

    exit_code = 2


class DataError(EdgeKDError):
    """The data folder is missing, empty or malformed."""

    exit_code = 3


class ModelError(EdgeKDError):
    """A model name, checkpoint or exported file cannot be used."""

    exit_code = 4


class BackendError(EdgeKDError):
    """An optional backend (openvino, onnxruntime, nncf, tensorrt) is missing or failed."""

    exit_code = 5


class ParityError(EdgeKDError):
    """An exported model disagrees with its PyTorch reference beyond the target's thresholds."""

    exit_code = 6


class TrainingError(EdgeKDError):
    """Training diverged (NaN loss) or could not continue."""

    exit_code = 7


class AccuracyError(EdgeKDError):
    """A quantized model cannot meet the accuracy bound that was asked for (the best one is still written)."""

    exit_code = 8


class IntegrityError(EdgeKDError):
    """A bundle fails its integrity checks (manifest digest, signature, file hashes, listing, names, samples):
    refused before anything in it is loaded."""

    exit_code = 9


class WriteError(EdgeKDError):
    """A file could not be written (disk full, read-only folder, no permission); the file it would have replaced
    is left as it was."""

    exit_code = 10


# lines of a backend's message that say where in its own sources it failed, not why
_NOISE = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|Traceback \(most recent call last\):"
                    r"|File \".*|\^+|~+|-+)$")
# torch's C++ checks prefix their reason with where they failed
_TORCH_ENFORCE = re.compile(r"\[enforce fail at [^\]]*\]\s*\.?\s*")


def reason(exc: BaseException | str, limit: int = 400) -> str:
    """An exception's message as one line that keeps its reason.

    Backends spread one message over several lines: OpenVINO starts with source locations ("Exception from
    src/inference/src/cpp/core.cpp:132:") and says why on a later line; ONNX Runtime continues a sentence
    ("... for the following indices") on the next ones. Location lines are dropped, the rest joined.
    """
    text = _TORCH_ENFORCE.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines()]
    kept = [ln for ln in lines if ln and not _NOISE.match(ln)]
    out = " ".join(kept) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return out if len(out) <= limit else out[:limit - 3].rstrip() + "..."


@contextmanager
def writing(path: str | Path, tmp: str | Path | None = None):
    """Run a block that writes ``path`` (through ``tmp`` when given); any failure becomes one WriteError line
    "cannot write PATH: reason" and ``tmp`` is removed. Only for blocks that do nothing but write: native
    writers (torch.save, safetensors, onnx, OpenVINO) report a full disk as RuntimeError or worse."""
    try:
        yield
    except EdgeKDError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the writer raises, the write failed
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else reason(exc)
        raise WriteError(f"cannot write {path}: {why}") from exc
