"""TensorRT engines (TensorRT 10 Python API): deserialize, bind device buffers by tensor name, execute_async_v3.

Device memory is held in torch CUDA tensors (the documented interop: ``set_tensor_address(name, t.data_ptr())``
on torch's current stream), so this runtime serves verify and bench on an NVIDIA host where torch is installed;
the torch-free on-device runner uses ONNX Runtime's TensorRT execution provider instead.

Not run in this workplace: TensorRT cannot be installed here and no engine has been built; its test skips
where ``import tensorrt`` fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import BackendError, ModelError
from edgekd.runtimes.base import Runtime


class TrtRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, path: Path) -> None:
        try:
            import tensorrt as trt
            import torch
        except ImportError as exc:
            raise BackendError(f"the TensorRT runtime needs tensorrt and torch with CUDA ({exc})") from exc
        if not torch.cuda.is_available():
            raise BackendError("the TensorRT runtime needs an NVIDIA GPU (torch sees no CUDA device)")
        self._trt, self._torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT cannot load {path}: built by another TensorRT version or GPU?")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.input_name = self.inputs[0]
        self.has_int8 = any(self.engine.get_tensor_dtype(n) == trt.DataType.INT8 for n in names)

    @property
    def input_shape(self) -> list:
        return list(self.engine.get_tensor_shape(self.input_name))

    def _dtype(self, name: str):
        return self._torch.from_numpy(np.empty(0, dtype=self._trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        keep = []
        for name in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).to("cuda", self._dtype(name))
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        outs = []
        for name in self.outputs:
            t = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name), device="cuda")
            self.context.set_tensor_address(name, t.data_ptr())
            outs.append(t)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        stream.synchronize()
        return [o.float().cpu().numpy() for o in outs]

    @property
    def executed_precision(self) -> str:
        return "int8 (engine) + fp16" if self.has_int8 else "fp16/fp32 (engine)"

    def close(self) -> None:
        self.context = None
        self.engine = None
