"""Typed errors. The CLI turns each into one actionable line and a non-zero exit code."""


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
