"""Exporter options: onnxslim simplification, external data, opset; OpenVINO FP16 IR and static shapes."""

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.export.onnx import export_torch, onnx_files
from edgekd.export.openvino import OpenVinoExporter
from edgekd.models.factory import create_timm
from edgekd.runtimes import runtime_for


@pytest.fixture(scope="module")
def model_x():
    torch.manual_seed(0)
    model = create_timm("mobilenetv3_small_050", 5).eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return model, x, ref


@pytest.fixture(scope="module")
def plain_onnx(model_x, tmp_path_factory):
    return export_torch(model_x[0], torch.zeros(1, 3, 64, 64), tmp_path_factory.mktemp("p") / "m.onnx", {})


def _run(path, x):
    with runtime_for(path, "onnxruntime") as rt:
        return rt(x)


def test_onnxslim_simplifies_without_changing_outputs(model_x, plain_onnx, tmp_path):
    import onnx

    model, x, ref = model_x
    slim = export_torch(model, torch.zeros(1, 3, 64, 64), tmp_path / "s.onnx", {"edgekd.arch": "m"}, simplify=True)
    n_plain, n_slim = (len(onnx.load(str(p)).graph.node) for p in (plain_onnx, slim))
    assert n_slim <= n_plain  # the dynamo exporter's graph comes folded: onnxslim finds little or nothing there
    ts_plain, ts_slim = (export_torch(model, torch.zeros(1, 3, 64, 64), tmp_path / f"t{s}.onnx", {}, simplify=s,
                                      exporter="torchscript") for s in (False, True))
    assert len(onnx.load(str(ts_slim)).graph.node) < len(onnx.load(str(ts_plain)).graph.node)  # its Identity nodes
    assert np.abs(_run(ts_slim, x) - ref).max() < 1e-4
    assert {p.key for p in onnx.load(str(slim)).metadata_props} == {"edgekd.arch", "edgekd.onnx_exporter"}
    a, b = _run(plain_onnx, x), _run(slim, x)
    assert np.abs(a - b).max() <= 1e-6 and np.abs(b - ref).max() < 1e-4


def test_external_data_above_the_threshold(model_x, tmp_path):
    import onnx

    model, x, ref = model_x
    p = export_torch(model, torch.zeros(1, 3, 64, 64), tmp_path / "e.onnx", {}, external_data_mb=0.1)
    files = onnx_files(p)
    assert files == (str(p), str(tmp_path / "e.onnx.data"))
    assert Path(files[1]).stat().st_size > 10 * p.stat().st_size  # the weights live in the side file
    graph = onnx.load(str(p), load_external_data=False).graph
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    assert np.abs(_run(p, x) - ref).max() < 1e-4
    # re-exported below the threshold: one self-contained file, the stale side file removed
    export_torch(model, torch.zeros(1, 3, 64, 64), p, {}, external_data_mb=None)
    assert onnx_files(p) == (str(p),) and not Path(files[1]).exists()
    from edgekd.export.catalog import get_exporter

    assert get_exporter("onnx").export(p, tmp_path, "e").files == (str(p),)


def test_opset_option(model_x, tmp_path):
    import onnx

    p = export_torch(model_x[0], torch.zeros(1, 3, 64, 64), tmp_path / "o.onnx", {}, opset=13)
    assert next(o.version for o in onnx.load(str(p)).opset_import if o.domain in ("", "ai.onnx")) == 13
    assert np.abs(_run(p, model_x[1]) - model_x[2]).max() < 1e-4


def test_openvino_fp16_ir_is_half_the_size_and_close(model_x, plain_onnx, tmp_path):
    _, x, ref = model_x
    fp32 = OpenVinoExporter().export(plain_onnx, tmp_path, "m32")
    fp16 = OpenVinoExporter(precision="fp16").export(plain_onnx, tmp_path, "m16")
    assert fp16.precision == "fp16" and fp32.precision == "fp32"
    assert fp16.size_mb() < 0.6 * fp32.size_mb()
    with runtime_for(fp16.path, "openvino", precision_hint="f32") as rt:
        out = rt(x)
        # OpenVINO's runtime graph reports f16 for Convolution/FullyConnected fed by fp16 weights (it keeps them
        # compressed); the hint is f32 and the outputs below stay within f32-compute tolerance
        assert rt.executed_precision in ("f32", "f16") and rt.prop("INFERENCE_PRECISION_HINT") == "f32"
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.999 and (out.argmax(1) == ref.argmax(1)).all()


def test_openvino_static_and_dynamic_shapes(model_x, plain_onnx, tmp_path):
    from edgekd.errors import ConfigError

    _, x, ref = model_x
    dyn = OpenVinoExporter().export(plain_onnx, tmp_path, "dyn")
    static = OpenVinoExporter(input_shape=(1, 3, 64, 64)).export(plain_onnx, tmp_path, "static")
    with runtime_for(dyn.path) as rt:
        assert rt.input_shape == [-1, 3, 64, 64]
        assert np.abs(rt(x) - ref).max() < 1e-3  # batch 4 through the dynamic graph
    with runtime_for(static.path) as rt:
        assert rt.input_shape == [1, 3, 64, 64]
        assert np.abs(rt(x[:1]) - ref[:1]).max() < 1e-3
    with pytest.raises(ConfigError, match="fp32 or fp16"):
        OpenVinoExporter(precision="int8")
