"""The FP32 ONNX graph is written by the dynamo exporter (torch.export + onnxscript, opset 18) unless the legacy
TorchScript exporter (opset 17) is asked for; the dynamo graph keeps what ``export_torch`` guarantees downstream
(input/output names, the symbolic batch axis, metadata, the pooling op the FPGA list knows, one file, the
TorchScript exporter's module-path node names); when the dynamo exporter raises, the TorchScript exporter writes it
after a one-line note; opsets below 18 always use the TorchScript exporter; a run chooses with ``onnx_exporter``."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgekd.export import onnx as onnx_mod
from edgekd.export.onnx import EXPORTER_KEY, export_torch
from edgekd.export.preflight import check_fpga

META = {"edgekd.arch": "tiny", "edgekd.classes": ["a", "b", "c"]}


def tiny() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():  # a trained-looking BatchNorm, so folding it into the Conv is tested for real
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].bias.uniform_(-1, 1)
    return net.eval()


class DataDependent(nn.Module):
    """A branch on a tensor's value: torch.export refuses it, TorchScript tracing records the branch taken."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            return y.mean((2, 3))
        return -y.mean((2, 3))


def _props(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _dims(path):
    g = onnx.load(str(path)).graph
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*g.input, *g.output)}


def _run(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    net = tiny()
    return net, {ex: export_torch(net, torch.zeros(1, 3, 16, 16), d / f"{ex}.onnx", META, exporter=ex)
                 for ex in ("dynamo", "torchscript")}


def test_default_is_dynamo_at_18_and_torchscript_on_request_at_17(tmp_path, capsys):
    assert onnx_mod.EXPORTER == "dynamo"
    d = export_torch(tiny(), torch.zeros(1, 3, 16, 16), tmp_path / "d.onnx", META)
    assert _props(d)[EXPORTER_KEY] == "dynamo"
    assert next(o.version for o in onnx.load(str(d)).opset_import if o.domain in ("", "ai.onnx")) == 18
    assert "exporter failed" not in capsys.readouterr().err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d.onnx"]  # one self-contained file, nothing left over
    p = export_torch(tiny(), torch.zeros(1, 3, 16, 16), tmp_path / "t.onnx", META, exporter="torchscript")
    assert _props(p)[EXPORTER_KEY] == "torchscript"
    assert next(o.version for o in onnx.load(str(p)).opset_import if o.domain in ("", "ai.onnx")) == 17


class Inner(nn.Module):
    """A Sequential inside a Sequential, a module called twice, a BatchNorm the exporter folds into a Conv."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 1)))
        self.act, self.c, self.bn = nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.act(self.bn(self.c(self.act(self.fc(x))))) + x


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.blocks = nn.ModuleList([nn.Sequential(Inner(), Inner())])
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean((2, 3)))


def test_dynamo_nodes_carry_the_torchscript_module_path_names(tmp_path):
    """quant_ignored_scope patterns are written against node names: the dynamo graph's (``node_Conv_17`` as the
    exporter writes them) are renamed to the TorchScript exporter's module paths, the same strings node for node."""
    net = Nested().eval()
    with torch.no_grad():
        net.blocks[0][0].bn.running_mean.uniform_(-1, 1)
    kept = ("Conv", "Gemm", "Relu", "Add")

    def names(ex):
        p = export_torch(net, torch.zeros(1, 3, 8, 8), tmp_path / f"{ex}.onnx", {}, exporter=ex)
        assert _props(p)[EXPORTER_KEY] == ex
        return sorted(n.name for n in onnx.load(str(p)).graph.node if n.op_type in kept)

    dyn = names("dynamo")
    assert dyn == names("torchscript")
    assert {"/stem/Conv", "/blocks.0/blocks.0.0/fc/fc.2/fc.2.0/Conv", "/blocks.0/blocks.0.0/c/Conv",
            "/blocks.0/blocks.0.1/act_1/Relu", "/blocks.0/blocks.0.1/Add", "/head/Gemm"} <= set(dyn)
    assert len(dyn) == 16  # stem, 7 per block (3 Conv, 3 Relu, Add), head


def test_dynamo_graph_keeps_the_guarantees(both):
    net, paths = both
    dyn, ts = paths["dynamo"], paths["torchscript"]
    assert _dims(dyn) == _dims(ts) == {"input": ["batch", 3, 16, 16], "logits": ["batch", 3]}
    assert _props(dyn) == {"edgekd.arch": "tiny", "edgekd.classes": '["a", "b", "c"]', EXPORTER_KEY: "dynamo"}
    assert _props(ts) == {**_props(dyn), EXPORTER_KEY: "torchscript"}
    g = onnx.load(str(dyn))
    assert next(o.version for o in g.opset_import if o.domain in ("", "ai.onnx")) == 18
    ops = [n.op_type for n in g.graph.node]
    assert "BatchNormalization" not in ops and "ReduceMean" not in ops and "GlobalAveragePool" in ops
    assert all(len(n.metadata_props) == 0 for n in g.graph.node)  # no stack traces with this machine's paths
    assert check_fpga(dyn) is None and check_fpga(ts) is None
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)  # batch 3: the symbolic axis
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    a, b = _run(dyn, x), _run(ts, x)
    assert np.abs(a - ref).max() < 1e-5 and np.abs(a - b).max() < 1e-5


def test_a_failing_dynamo_export_falls_back_with_one_line(tmp_path, monkeypatch, capsys):
    def boom(*_a, **_k):
        raise RuntimeError("torch.export cannot trace this")

    monkeypatch.setattr(onnx_mod, "_export_dynamo", boom)
    p = export_torch(tiny(), torch.zeros(1, 3, 16, 16), tmp_path / "f.onnx", META, exporter="dynamo")
    assert _props(p)[EXPORTER_KEY] == "torchscript"
    assert _dims(p) == {"input": ["batch", 3, 16, 16], "logits": ["batch", 3]}
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["note: the dynamo ONNX exporter failed (RuntimeError: torch.export cannot trace this); exporting "
                   "with the TorchScript exporter instead"]


def test_a_model_torch_export_refuses_falls_back_for_real(tmp_path, capsys):
    p = export_torch(DataDependent().eval(), torch.ones(1, 3, 8, 8), tmp_path / "d.onnx", {}, exporter="dynamo")
    assert _props(p)[EXPORTER_KEY] == "torchscript"
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("note: the dynamo ONNX exporter failed ("), err


def test_torchscript_when_asked_or_below_opset_18(tmp_path, capsys):
    net = tiny()
    a = export_torch(net, torch.zeros(1, 3, 16, 16), tmp_path / "a.onnx", {}, exporter="torchscript")
    b = export_torch(net, torch.zeros(1, 3, 16, 16), tmp_path / "b.onnx", {}, opset=17, exporter="dynamo")
    assert _props(a)[EXPORTER_KEY] == _props(b)[EXPORTER_KEY] == "torchscript"
    assert next(o.version for o in onnx.load(str(b)).opset_import if o.domain in ("", "ai.onnx")) == 17
    assert "exporter failed" not in capsys.readouterr().err
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="dynamo, torchscript"):
        export_torch(net, torch.zeros(1, 3, 16, 16), tmp_path / "c.onnx", {}, exporter="jit")


def test_depthwise_convs_keep_a_bias_for_nncf_and_onnxruntime(tmp_path):
    """The dynamo exporter's optimizer drops all-zero Conv biases (a fresh BatchNorm folded in, zero-initialised
    biases); a depthwise Conv gets a zero one back (NNCF quantizes its input per channel, and ONNX Runtime cannot run
    that Q/DQ graph of a bias-less depthwise Conv), the others may stay without: the same function either way."""
    from edgekd.artifacts import ExportedModel
    from edgekd.quantize.ptq import quantize_onnx
    from edgekd.quantize.spec import QuantSpec

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 4, 1, bias=False)).eval()
    nn.init.zeros_(net[3].bias)

    def conv_inputs(p):
        return [len(n.input) for n in onnx.load(str(p)).graph.node if n.op_type == "Conv"]

    paths = {ex: export_torch(net, torch.zeros(1, 3, 8, 8), tmp_path / f"{ex}.onnx", {}, exporter=ex)
             for ex in ("dynamo", "torchscript")}
    assert _props(paths["dynamo"])[EXPORTER_KEY] == "dynamo"
    assert conv_inputs(paths["dynamo"])[1] == 3 and conv_inputs(paths["torchscript"]) == [3, 3, 2]
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert np.abs(_run(paths["dynamo"], x) - _run(paths["torchscript"], x)).max() < 1e-5
    p = paths["dynamo"]
    q = quantize_onnx(ExportedModel("onnx", "fp32", str(p), (str(p),)), x, tmp_path / "q.onnx",
                      QuantSpec("performance"))
    assert _run(q.path, x).shape == (2, 4, 8, 8)  # runs in ONNX Runtime


def test_a_run_chooses_the_exporter_and_only_a_set_choice_joins_the_export_hash():
    from edgekd.config import RunConfig, resolve
    from edgekd.stages import STAGE

    assert "onnx_exporter" not in STAGE["export"].options(resolve(RunConfig()))  # older runs keep their hashes
    assert STAGE["export"].options(resolve(RunConfig(onnx_exporter="dynamo")))["onnx_exporter"] == "dynamo"
    with pytest.raises(ValueError):
        RunConfig(onnx_exporter="jit")
