"""The per-node latency model for targets that are not attached: overhead term, fitting, CLI, cited figures."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgekd.bench.estimate import (
    estimate_latency,
    fit_params,
    graph_terms,
    load_shaped,
    node_costs,
    node_model_ms,
    raw_ms,
)
from edgekd.cli import app
from edgekd.export.onnx import export_torch
from edgekd.targets import list_targets, load_target

runner = CliRunner()


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    return export_torch(net, torch.zeros(1, 3, 32, 32), tmp_path_factory.mktemp("m") / "small.onnx", {})


def _terms(net, shape, tmp_path, fuse=True):
    p = export_torch(net.eval(), torch.zeros(*shape), tmp_path / "n.onnx", {})
    return graph_terms(node_costs(load_shaped(p)), fuse)


def test_shared_weights_behind_identity_are_counted(tmp_path):
    """The TorchScript exporter writes identical initializers once and feeds the other users through Identity (in a
    random timm ResNet every block's zero-initialised last BatchNorm folds into all-zero conv weights): every conv
    counts, there and in the dynamo exporter's graph of the same network."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1),
                              torch.nn.Conv2d(8, 8, 3, padding=1))
    with torch.no_grad():
        for conv in net[1:]:
            conv.weight.zero_()
            conv.bias.zero_()
    for exporter in ("torchscript", "dynamo"):  # the TorchScript exporter's Identity links; the dynamo one's graph
        p = export_torch(net.eval(), torch.zeros(1, 3, 16, 16), tmp_path / f"{exporter}.onnx", {}, exporter=exporter)
        g = load_shaped(p)
        if exporter == "torchscript":
            assert any(n.op_type == "Identity" for n in g.model.graph.node)  # the case under test is really there
        macs = [c.macs for c in node_costs(g) if c.op == "Conv"]
        assert macs == [16 * 16 * 8 * 3 * 9, 16 * 16 * 8 * 8 * 9, 16 * 16 * 8 * 8 * 9], exporter


def test_many_tiny_layers_are_slower_than_one_layer_of_equal_flops(tmp_path):
    # one 1x1 conv 64->64 vs 16 convs 16->16 on 16 channel groups' worth: same MACs, 16x the layers
    one = _terms(torch.nn.Conv2d(64, 64, 1, bias=False), (1, 64, 8, 8), tmp_path)
    many = _terms(torch.nn.Sequential(*[torch.nn.Conv2d(16, 16, 1, bias=False) for _ in range(16)]),
                  (1, 16, 8, 8), tmp_path)
    assert one.macs == many.macs == 64 * 64 * 64 and (one.layers, many.layers) == (1, 16)
    dev = load_target("jetson-orin-nano").estimate
    p = dev.fit["fp16"]
    t_one = node_model_ms(raw_ms(one, dev.peak("fp16"), dev.memory_bandwidth_gbs, "fp16"), one.layers,
                          p.efficiency, p.layer_overhead_us)
    t_many = node_model_ms(raw_ms(many, dev.peak("fp16"), dev.memory_bandwidth_gbs, "fp16"), many.layers,
                           p.efficiency, p.layer_overhead_us)
    assert t_many > t_one + 14 * p.layer_overhead_us * 1e-3


def test_per_node_cost_is_a_sum_of_per_node_maxima_not_a_max_of_totals(tmp_path):
    # a compute-bound conv then a memory-bound pool: the sum of both beats either total alone
    t = _terms(torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), torch.nn.MaxPool2d(2)),
               (1, 64, 32, 32), tmp_path)
    peak, bw = 1e12, 10.0
    f, m = np.asarray(t.flops) / peak, np.asarray(t.elems) * 2 / (bw * 1e9)
    assert raw_ms(t, peak, bw, "fp16") == pytest.approx(np.maximum(f, m).sum() * 1e3)
    assert raw_ms(t, peak, bw, "fp16") > max(f.sum(), m.sum()) * 1e3


def test_pointwise_ops_cost_nothing_when_fused_and_memory_when_not(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.SiLU())
    fused, unfused = _terms(net, (1, 8, 16, 16), tmp_path, True), _terms(net, (1, 8, 16, 16), tmp_path, False)
    assert fused.layers < unfused.layers and fused.macs == unfused.macs
    assert raw_ms(fused, 1e12, 10, "fp32") < raw_ms(unfused, 1e12, 10, "fp32")


def test_a_clamp_right_after_a_conv_is_part_of_that_layer_on_a_cpu_engine(tmp_path):
    """ONNX Runtime (FusedConv at FP32, the output range at int8) and XNNPACK (output min / max) apply a Relu / Clip
    that only reads a conv's output as that layer's clamp: no layer, no pass over memory of its own."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 8, 1), torch.nn.ReLU6())
    t = _terms(net, (1, 3, 16, 16), tmp_path, fuse=False)
    assert t.layers == 3  # Conv, MaxPool, Conv: the Relu and the ReLU6 (Clip) are the convs' clamps

    class Fork(torch.nn.Module):  # the conv's output is read twice: the Relu is a pass of its own
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(8, 8, 1)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) + y

    t = _terms(Fork(), (1, 8, 8, 8), tmp_path, fuse=False)
    assert t.layers == 3  # Conv, Relu, Add


def test_a_clamp_behind_the_qdq_pair_of_an_int8_graph_is_the_convs_too(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w, s, z])
    path = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    costs = node_costs(load_shaped(path))
    assert [(c.op, c.clamp_of_mac) for c in costs] == [("Conv", False), ("Relu", True)]
    assert graph_terms(costs, False).layers == 1


def test_integer_shape_arithmetic_is_not_a_layer(tmp_path):
    """A channel shuffle exported with a symbolic batch computes C // groups on int64 shape tensors at run time:
    no layer (a static-shape export, as Ultralytics', folds it away)."""

    class Shuffle(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(8, 8, 1)

        def forward(self, x):
            x = self.conv(x)
            b, c, h, w = x.size()
            return x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)

    # the TorchScript exporter writes the C // groups arithmetic; the dynamo exporter (the default) folds it away
    p = export_torch(Shuffle().eval(), torch.zeros(1, 8, 4, 4), tmp_path / "shuffle.onnx", {}, exporter="torchscript")
    costs = node_costs(load_shaped(p))
    assert any(c.shape_arith for c in costs)  # the case under test is really there
    assert graph_terms(costs, False).layers == 2  # Conv, Transpose
    d = export_torch(Shuffle().eval(), torch.zeros(1, 8, 4, 4), tmp_path / "shuffle-dynamo.onnx", {})
    assert graph_terms(node_costs(load_shaped(d)), False).layers == 2  # the same layers from either exporter


def test_fit_recovers_known_parameters_from_synthetic_figures():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 30, 12)
    layers = rng.integers(20, 400, 12)
    eff, ovh = 0.37, 18.0
    y = [node_model_ms(r, n, eff, ovh) for r, n in zip(raw, layers, strict=True)]
    e, o = fit_params(list(raw), list(layers), y)
    assert e == pytest.approx(eff, rel=1e-3) and o == pytest.approx(ovh, rel=1e-2)
    # with noise the fit stays close, and one figure alone fixes the overhead at 0
    noisy = [v * f for v, f in zip(y, rng.uniform(0.95, 1.05, 12), strict=True)]
    e, o = fit_params(list(raw), list(layers), noisy)
    assert e == pytest.approx(eff, rel=0.1) and o == pytest.approx(ovh, rel=0.3)
    e1, o1 = fit_params([2.0], [10], [4.0])
    assert (e1, o1) == (pytest.approx(0.5, rel=1e-4), 0.0)


def test_estimate_is_labelled_with_method_and_fitted_params(small_onnx):
    est = estimate_latency(small_onnx, load_target("jetson-orin"), "int8")
    assert est.estimated == "estimated" and est.latency_ms > 0 and est.precision == "int8"
    assert est.method.startswith("per-node roofline on jetson-orin") and "fitted to" in est.method
    assert est.params["efficiency"] == load_target("jetson-orin").estimate.fit["int8"].efficiency


def test_cli_estimate_text_and_json(small_onnx):
    res = runner.invoke(app, ["estimate", str(small_onnx), "--target", "fpga-zu"])
    assert res.exit_code == 0 and "ms (estimated: per-node roofline on fpga-zu" in res.output
    res = runner.invoke(app, ["estimate", str(small_onnx), "--target", "jetson-orin-nx", "--precision", "fp16",
                              "--json"])
    d = json.loads(res.output)
    assert res.exit_code == 0 and d["latency_ms"] > 0 and d["estimated"] == "estimated"
    assert d["target"] == "jetson-orin-nx" and d["precision"] == "fp16" and "method" in d
    assert {"efficiency", "layer_overhead_us"} <= set(d["params"])


@pytest.mark.parametrize(("args", "code", "words"), [
    (["nope.onnx", "--target", "fpga-zu"], 2, "does not exist"),
    (["{bad}", "--target", "fpga-zu"], 4, "not a readable ONNX model"),
    (["{good}", "--target", "no-such-board"], 2, "unknown target"),
    (["{good}", "--target", "cpu-x86"], 2, "no `estimate:` section"),
    (["{good}", "--target", "cpu-arm64", "--precision", "int8"], 2, "no parameters fitted at int8"),
    (["{good}", "--target", "fpga-zu", "--precision", "bf16"], 2, "--precision must be"),
])
def test_cli_estimate_bad_inputs_are_one_line_with_the_right_code(args, code, words, small_onnx, tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("not a model")
    args = [a.format(bad=bad, good=small_onnx) for a in args]
    res = subprocess.run([sys.executable, "-m", "edgekd", "estimate", *args], capture_output=True, text=True)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert res.returncode == code and len(lines) == 1 and words in lines[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("name", [n for n in list_targets() if load_target(n).estimate is not None])
def test_every_published_figure_has_a_source_and_its_conditions(name):
    est = load_target(name).estimate
    for f in est.figures:
        assert f.source and f.conditions and f.board and f.software and f.clocks and f.timing
        assert f.batch == 1 and f.latency_ms > 0 and f.precision in est.fit
        assert any(s in f.source for s in ("http", "github.com", "docs/"))
    for prec, p in est.fit.items():
        assert "published" in p.fitted_to and est.peak(prec)
