"""The runtime interface shared by verify and bench."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runtime(ABC):
    """A loaded model. ``infer`` takes named float32 arrays and returns the outputs in graph order."""

    name: str = "runtime"
    input_name: str = "input"

    @abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    @property
    def input_shape(self) -> list:
        """The first input's dims; dynamic ones as strings or -1."""
        return []

    @property
    def executed_precision(self) -> str:
        """The precision the runtime really computes in (e.g. OpenVINO may pick bf16)."""
        return "fp32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.infer({self.input_name: x})[0]

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
