"""quantize/ is a library (issue 19): it takes a QuantSpec and returns files. No Run, no stage report, no
pipeline import; the NNCF arguments are built in one place and both routes share one int8 tail."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.artifacts import ExportedModel
from edgekd.quantize.spec import QuantSpec, is_transformer

QUANTIZE = Path(__file__).resolve().parent.parent / "edgekd" / "quantize"


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


@pytest.mark.parametrize("path", sorted(QUANTIZE.glob("*.py")), ids=lambda p: p.name)
def test_quantize_modules_know_no_run_and_write_no_report(path):
    mods = _imports(path)
    stage_side = {m for m in mods if m in ("edgekd.run_context", "edgekd.pipeline")
                  or m.startswith("edgekd.stages")}
    assert not stage_side, f"{path.name} imports {stage_side}: the library takes a QuantSpec, not a Run"
    src = path.read_text()
    assert "quantize.json" not in src and "r.path(" not in src


def test_nncf_arguments_come_from_the_spec_only():
    import nncf

    kw = QuantSpec("performance", transformer=True, ignored_scope=("head.*",), tensorrt=True).nncf_kwargs(nncf, 7)
    assert kw["subset_size"] == 7 and kw["preset"] == nncf.QuantizationPreset.PERFORMANCE
    assert kw["model_type"] == nncf.ModelType.TRANSFORMER
    assert list(kw["ignored_scope"].patterns) == ["head.*"]
    assert kw["advanced_parameters"].activations_quantization_params.per_channel is False
    plain = QuantSpec().nncf_kwargs(nncf, 3)
    assert set(plain) == {"subset_size", "preset"} and plain["preset"] == nncf.QuantizationPreset.MIXED
    # no other module of the package builds nncf.quantize arguments by hand
    for path in QUANTIZE.glob("*.py"):
        if path.name != "spec.py":
            assert "QuantizationPreset(" not in path.read_text() and "IgnoredScope(" not in path.read_text()


def test_transformer_is_decided_by_one_function():
    assert is_transformer("vit_tiny_patch16_224") and is_transformer("efficientformer_l1")
    assert is_transformer("mobilevit_s") and not is_transformer("mobilenetv3_small_100")
    root = QUANTIZE.parent
    for path in root.rglob("*.py"):
        if path.name != "spec.py":
            assert '"former" in' not in path.read_text(), path


def test_int8_tail_rewrites_for_tensorrt_and_derives_the_qonnx(tmp_path):
    """The tail both routes end in: a uint8 Q/DQ graph becomes symmetric int8 in place, then a QONNX at the spec's
    weight bit width comes from it; without TensorRT or QONNX in the spec it touches nothing."""
    from edgekd.export.onnx import export_torch
    from edgekd.export.tensorrt import check_onnx
    from edgekd.models.factory import create_timm
    from edgekd.quantize.ptq import quantize_onnx
    from edgekd.quantize.tail import int8_tail

    torch.manual_seed(0)
    p = export_torch(create_timm("mobilenetv3_small_050", 4).eval(), torch.zeros(1, 3, 32, 32),
                     tmp_path / "m-fp32.onnx", {"edgekd.arch": "mobilenetv3_small_050"})
    calib = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32)
    qdq = Path(quantize_onnx(ExportedModel("onnx", "fp32", str(p), (str(p),)), calib, tmp_path / "m-int8.onnx",
                             QuantSpec("performance")).path)
    before = qdq.read_bytes()
    assert not check_onnx(qdq).ok  # NNCF writes uint8 after ReLU-like ops: TensorRT would refuse it
    assert int8_tail(qdq, QuantSpec("performance"), tmp_path) == [] and qdq.read_bytes() == before
    out = int8_tail(qdq, QuantSpec("performance", tensorrt=True, qonnx_bits=4), tmp_path)
    assert check_onnx(qdq).ok
    assert [(e.format, e.precision) for e in out] == [("qonnx", "w4a8")] and Path(out[0].path).is_file()
