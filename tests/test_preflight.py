"""Op pre-flight: an untrained student's ONNX against the runtimes of a target, before any training."""

from pathlib import Path

import pytest
import torch

from edgekd.errors import ConfigError
from edgekd.export.preflight import WORKS_ON, check_graph, checks_for, preflight_student
from edgekd.targets import load_target


def _fpga_target():
    from edgekd.targets import Target

    raw = load_target("cpu-x86").model_dump()
    raw.update(name="fpga-test", device="fpga", formats=["qonnx"], runtimes=["onnxruntime"], precisions=["int8"])
    raw["parity"] = {"int8": raw["parity"]["int8"]}
    raw["fpga"] = load_target("fpga-zu").fpga.model_dump()  # an FPGA target must describe its part
    return Target.model_validate(raw)


def _custom_op_onnx(tmp_path: Path, domain: str = "com.example", op: str = "FancyGelu") -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["input"], ["logits"], domain=domain)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    onnx.save(m, tmp_path / "custom.onnx")
    return tmp_path / "custom.onnx"


def test_which_runtimes_each_target_checks():
    assert checks_for(load_target("cpu-x86")) == ["onnxruntime", "openvino"]
    assert checks_for(load_target("jetson-orin")) == ["onnxruntime", "tensorrt"]
    assert checks_for(_fpga_target()) == ["onnxruntime", "fpga"]


def test_a_custom_domain_op_is_refused_by_onnxruntime_and_openvino(tmp_path):
    problems = check_graph(_custom_op_onnx(tmp_path), load_target("cpu-x86"))
    assert [p.runtime for p in problems] == ["onnxruntime", "openvino"]
    assert all(p.ops == ("com.example.FancyGelu",) for p in problems), problems


def test_tensorrt_list_check_names_the_op(tmp_path):
    problems = check_graph(_custom_op_onnx(tmp_path, "", "Hardmax"), load_target("jetson-orin"))
    trt = [p for p in problems if p.runtime == "tensorrt"]
    assert trt and trt[0].ops == ("Hardmax",)


def test_student_outside_the_fpga_op_list_fails_with_one_actionable_line():
    with pytest.raises(ConfigError) as err:
        preflight_student("mobilenetv3_small_100", 10, 64, _fpga_target())
    msg = str(err.value)
    assert msg.startswith("fpga-test: the FPGA flow (QONNX op list check) cannot run ops HardSigmoid, HardSwish")
    assert "of student mobilenetv3_small_100" in msg and msg.endswith("try resnet10t or resnet18")
    assert "\n" not in msg


@pytest.mark.parametrize("target,arch", [("fpga", "resnet10t"), ("cpu-x86", "mobilevit_xxs"),
                                         ("jetson-orin", "mobilenetv3_small_100")])
def test_suggested_students_pass(target, arch):
    t = _fpga_target() if target == "fpga" else load_target(target)
    assert arch in WORKS_ON[checks_for(t)[-1]]
    assert preflight_student(arch, 10, (64, 64), t) == checks_for(t)


def test_tiny_unet_passes_the_fpga_list(tmp_path):
    from edgekd.export.onnx import export_torch
    from edgekd.models.unet import TinyUNet

    p = export_torch(TinyUNet(2).eval(), torch.zeros(1, 3, 32, 32), tmp_path / "u.onnx", {})
    assert check_graph(p, _fpga_target()) == []


def test_a_student_that_does_not_export_is_named(monkeypatch):
    import edgekd.export.onnx as onnx_mod
    from edgekd.errors import ModelError

    def boom(*a, **k):
        raise ModelError("ONNX export failed: op foo")

    monkeypatch.setattr(onnx_mod, "export_torch", boom)
    with pytest.raises(ConfigError, match="cpu-x86: student resnet10t does not export to ONNX"):
        preflight_student("resnet10t", 10, 64, load_target("cpu-x86"))
