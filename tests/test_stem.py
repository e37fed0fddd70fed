"""Students sized for their input (issue 20): ``stem_stride`` sets a timm student's first-convolution stride, and
the change survives checkpoints, pre-flight, ONNX export and int8 quantization."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekd.config import RunConfig
from edgekd.errors import ModelError
from edgekd.models.factory import adapt_stem, create_timm, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("name, first", [("mobilenetv3_small_100", ["conv_stem"]), ("resnet10t", ["conv1.0"]),
                                         ("mobilevit_xxs", ["stem.conv"]),
                                         ("fastvit_t8", ["stem.0.conv_kxk.0.conv", "stem.0.conv_scale.conv"])])
def test_stride_one_stem_doubles_the_feature_maps_and_keeps_the_weights(name, first):
    torch.manual_seed(0)
    plain = create_timm(name, 10).eval()
    torch.manual_seed(0)
    s1 = create_timm(name, 10, stem_stride=1).eval()
    assert all(s1.get_submodule(p).stride == (1, 1) for p in first)
    assert all(plain.get_submodule(p).stride == (2, 2) for p in first)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), s1.state_dict().values(), strict=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fp, fs = plain.forward_features(x), s1.forward_features(x)
    if fp.ndim == 4:  # NCHW feature maps: twice the side
        assert fs.shape[-2:] == (2 * fp.shape[-2], 2 * fp.shape[-1])
    assert s1(x).shape == (1, 10)


def test_stem_stride_is_refused_where_it_has_no_meaning():
    with pytest.raises(ModelError, match="stem_stride applies to timm classifiers, not cifar_resnet20"):
        create_timm("cifar_resnet20", 10, stem_stride=1)
    with pytest.raises(ModelError, match="not unet_plain8"):
        create_timm("unet_plain8", 2, stem_stride=1)

    class NoCfg(torch.nn.Module):
        pretrained_cfg: dict = {}

    with pytest.raises(ModelError, match="timm names no first convolution"):
        adapt_stem(NoCfg(), 1, "mine")
    with pytest.raises(ValueError):  # pydantic: a stride is a positive integer
        RunConfig(data="x", stem_stride=0)


def test_checkpoint_export_and_int8_keep_the_stride(tmp_path):
    import onnx
    import onnxruntime as ort

    from edgekd.artifacts import ExportedModel
    from edgekd.export.onnx import export_torch
    from edgekd.quantize.ptq import quantize_onnx

    torch.manual_seed(0)
    model = create_timm("mobilenetv3_small_100", 3, stem_stride=1).eval()
    path = tmp_path / "student.safetensors"
    save_checkpoint(model, path, {"arch": "mobilenetv3_small_100", "classes": ["a", "b", "c"], "stem_stride": 1})
    back, card = load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-5)
    assert back.conv_stem.stride == (1, 1) and card["stem_stride"] == 1

    onnx_path = export_torch(back, torch.zeros(1, 3, 32, 32), tmp_path / "student-fp32.onnx", {})
    first = next(n for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Conv")
    assert [a.ints for a in first.attribute if a.name == "strides"][0] == [1, 1]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    xs = x.numpy()
    out = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: xs[i:i + 1]})[0] for i in range(2)])
    assert np.allclose(out, model(x).detach().numpy(), atol=1e-4)

    calib = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32)
    q = quantize_onnx(ExportedModel("onnx", "fp32", str(onnx_path), (str(onnx_path),)), calib,
                      tmp_path / "student-int8.onnx")
    convs = [n for n in onnx.load(q.path).graph.node if n.op_type == "Conv"]
    assert [a.ints for a in convs[0].attribute if a.name == "strides"][0] == [1, 1]
    qs = ort.InferenceSession(q.path, providers=["CPUExecutionProvider"])
    assert qs.run(None, {qs.get_inputs()[0].name: xs[:1]})[0].shape == (1, 3)


def test_preflight_exports_the_strided_student(tmp_path, monkeypatch):
    import edgekd.models.factory as factory
    from edgekd.export import preflight
    from edgekd.targets import load_target

    seen, orig = {}, factory.create_timm

    def spy(name, n, pretrained=False, stem_stride=None):
        seen["stem_stride"] = stem_stride
        return orig(name, n, pretrained, stem_stride)

    monkeypatch.setattr(factory, "create_timm", spy)
    checked = preflight.preflight_student("mobilenetv3_small_100", 10, 32, load_target("cpu-x86"), tmp_path,
                                          stem_stride=1)
    assert seen == {"stem_stride": 1} and "onnxruntime" in checked


def test_distill_trains_the_strided_student_and_its_card_says_so(tmp_path):
    rec = tmp_path / "r.yaml"
    rec.write_text("stem_stride: 1\nloss: ce\n")
    p = subprocess.run([sys.executable, "-m", "edgekd", "distill", "--data", "builtin:shapes10", "--student",
                        "mobilenetv3_small_100", "--image-size", "32", "--epochs", "1", "--max-train-samples", "32",
                        "--max-eval-samples", "16", "--recipe", str(rec), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env={**os.environ, "EDGEKD_NUM_WORKERS": "0"})
    assert p.returncode == 0, p.stderr[-2000:]
    model, card = load_checkpoint(tmp_path / "o" / "student" / "student.safetensors")
    assert card["stem_stride"] == 1 and model.conv_stem.stride == (1, 1)


def test_recipe_key_reaches_the_config_and_the_cache_key():
    from edgekd.stages import STAGE

    assert RunConfig(data="x", stem_stride=1).stem_stride == 1
    assert "stem_stride" in STAGE["distill"].deps


def test_cli_bad_stem_stride_is_one_line(tmp_path):
    rec = tmp_path / "r.yaml"
    rec.write_text("stem_stride: 0\n")
    p = subprocess.run([sys.executable, "-m", "edgekd", "compress", "--data", "builtin:shapes10", "--recipe",
                        str(rec), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "stem_stride" in p.stderr and len(p.stderr.strip().splitlines()) == 1
