"""Eager PyTorch on an edgekd checkpoint (student.safetensors + its .json card): the reference runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.runtimes.base import Runtime


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, path: Path, threads: int) -> None:
        import torch

        from edgekd.models.factory import load_checkpoint

        self.torch = torch
        self.model, self.card = load_checkpoint(Path(path))
        self._prev_threads = torch.get_num_threads()
        torch.set_num_threads(threads)

    @property
    def input_shape(self) -> list:
        h, w = self.card["preprocess"]["size"]
        return [-1, 3, h, w]

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(next(iter(feeds.values()))))
        return [out.numpy()]

    def close(self) -> None:
        self.torch.set_num_threads(self._prev_threads)
