"""The formats table (edgekd/formats.py, issue 19): every format, exporter and runtime edgekd names is in it, it
is the only place a file suffix maps to a runtime, and every exporter does what its row says."""

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from edgekd.errors import BackendError, ConfigError, ModelError
from edgekd.formats import (
    FORMATS,
    bundle_runtime,
    export_formats,
    files_of,
    format_of_path,
    reads,
    runtime_of_path,
    suffix_of,
    timed_runtime,
)

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "edgekd"


def test_every_target_format_and_every_exporter_has_a_row():
    from edgekd.export.catalog import EXPORTERS
    from edgekd.targets import Format, list_targets, load_target

    assert export_formats() == list(get_args(Format))  # the YAML schema and the table name the same formats
    for name in list_targets():
        assert set(load_target(name).formats) <= set(FORMATS), name
    assert sorted(f.exporter for f in FORMATS.values() if f.exporter) == EXPORTERS.names()
    for f in FORMATS.values():
        assert f.name and f.suffixes and all(s.startswith(".") for s in f.suffixes), f
        assert f.export_from in ((None,) if f.exporter is None else ("fp32", "int8")), f
        assert set(f.precisions) <= {"fp32", "fp16", "int8", *(f"w{b}a8" for b in range(2, 8))}, f


def test_every_runtime_named_exists():
    from edgekd.runtimes import RUNTIMES

    for f in FORMATS.values():
        assert f.runtime in RUNTIMES, f
        assert set(f.also_read_by) <= set(RUNTIMES), f
    assert set(RUNTIMES) == {f.runtime for f in FORMATS.values()}  # and every runtime opens some format


def test_format_of_path_on_each_suffix():
    for f in FORMATS.values():
        for s in f.suffixes:
            assert format_of_path(f"/some/dir/model-int8{s}") is f, s
            assert runtime_of_path(Path("m" + s)) == f.runtime
            assert reads(f.runtime, "m" + s)
    assert format_of_path("student-int8.qonnx.onnx").name == "qonnx"  # the longest suffix wins
    assert format_of_path("student-int8.onnx").name == "onnx"
    for bad in ("model.txt", "model.bin", "model.ONNX", ".onnx", "model"):
        assert format_of_path(bad) is None and runtime_of_path(bad) is None, bad
    assert reads("openvino", "m.onnx") and not reads("onnxruntime", "m.xml") and not reads("torch", "m.onnx")
    assert files_of("openvino", "d/m.xml") == ("d/m.xml", "d/m.bin")
    assert files_of("onnx", "d/m.onnx") == ("d/m.onnx",)
    assert suffix_of("qonnx", "student-int8") == "student-int8.qonnx.onnx"
    assert suffix_of("tensorrt") == ".engine"


def test_what_is_timed_and_bundled_here():
    assert [n for n in export_formats() if timed_runtime(n)] == ["onnx", "openvino"]
    assert [n for n in export_formats() if FORMATS[n].bundled] == ["onnx", "openvino", "qonnx"]
    assert [n for n in FORMATS if FORMATS[n].ptq] == ["onnx", "openvino"]
    assert bundle_runtime("onnx", ["tensorrt"]) == "onnxruntime"  # bundle.py sets a Jetson's ONNX entry itself
    assert bundle_runtime("qonnx", ["finn"]) == "finn"  # not the reference executor it is verified in here
    assert FORMATS["qonnx"].verify_samples == 64 and FORMATS["onnx"].verify_samples is None
    from edgekd.students import MEASURED_RUNTIMES

    assert MEASURED_RUNTIMES == ("onnxruntime", "openvino")


def _tiny_onnx(path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["logits"])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_runtime_for_defaults_to_the_table(tmp_path):
    from edgekd.runtimes import runtime_for

    src = _tiny_onnx(tmp_path / "m.onnx")
    with runtime_for(src) as rt:
        assert rt.name == "onnxruntime"
    q = tmp_path / "m.qonnx.onnx"
    q.write_bytes(src.read_bytes())
    with runtime_for(q) as rt:
        assert rt.name == "qonnx"
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    from edgekd.export.tensorrt import available

    if not available():  # .engine -> tensorrt (before the table: "cannot tell the runtime from the suffix")
        with pytest.raises(BackendError, match="tensorrt is not importable"):
            runtime_for(engine)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot tell the runtime.*\.xml.*\.safetensors"):
        runtime_for(tmp_path / "m.txt")
    with pytest.raises(ConfigError, match="onnxruntime reads .onnx files only"):
        runtime_for(engine, "onnxruntime")


def test_every_exporter_keeps_its_rows_contract(tmp_path):
    """What each exporter reads (``export_from``) and writes (format, precision, suffix) is what its row says."""
    from edgekd.export import tensorrt
    from edgekd.export.catalog import get_exporter

    fp32 = _tiny_onnx(tmp_path / "tiny-fp32.onnx")
    checked = []
    for f in FORMATS.values():
        if f.exporter is None or (f.name == "tensorrt" and not tensorrt.available()):
            continue
        exporter = get_exporter(f.exporter)
        assert exporter.name == f.exporter
        if f.export_from == "int8":
            with pytest.raises(ModelError, match="int8 Q/DQ"):
                exporter.export(fp32, tmp_path, "tiny")
            continue
        exp = exporter.export(fp32, tmp_path, "tiny")
        assert exp.format == f.name and exp.precision in f.precisions, exp
        assert format_of_path(exp.path) is f and all(Path(p).is_file() for p in exp.files), exp
        checked.append(f.name)
    assert {"onnx", "openvino"} <= set(checked)


# a dict literal keyed by a model-file suffix (".xml": ..., '.onnx': ...), or a format name mapped to a runtime
_SUFFIX_KEY = re.compile(r"""["'](\.qonnx)?\.(onnx|xml|safetensors|engine|plan|trt)["']\s*:\s*\S""")
_FORMAT_RUNTIME = re.compile(r"""["'](onnx|openvino|qonnx|tensorrt)["']\s*:\s*"""
                             r"""["'](onnxruntime|openvino|qonnx|tensorrt)["']""")


def test_no_other_module_maps_a_suffix_or_format_to_a_runtime():
    offenders = []
    for py in sorted([*PKG.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        if py == PKG / "formats.py":
            continue
        for i, line in enumerate(py.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _SUFFIX_KEY.search(code) or _FORMAT_RUNTIME.search(code):
                offenders.append(f"{py.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert _SUFFIX_KEY.search('SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".xml": "openvino"}')  # the check bites
    assert _FORMAT_RUNTIME.search('{"onnx": "onnxruntime", "openvino": "openvino"}[fmt]')
    for name in ("SUFFIX_RUNTIME", "RUNTIME_OF_FORMAT", "VERIFY_ONLY"):
        assert not any(name in p.read_text() for p in PKG.rglob("*.py")), name


def test_formats_is_a_leaf_shipped_in_run_pyz():
    from edgekd.bundle import RUNNER_MODULES

    tree = ast.parse((PKG / "formats.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m and m.startswith("edgekd")} == {"edgekd.errors"}
    # every edgekd module the runner's modules import at load time is in run.pyz (formats.py among them)
    shipped = {"edgekd." + m[:-3].replace("/", ".").removesuffix(".__init__") for m in RUNNER_MODULES}
    for rel in RUNNER_MODULES:
        for node in ast.parse((PKG / rel).read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgekd"):
                assert node.module in shipped, (rel, node.module)
    assert "formats.py" in RUNNER_MODULES
    out = subprocess.run([sys.executable, "-c", "import sys, edgekd.formats; print(sorted(m for m in sys.modules if "
                          "m.split('.')[0] in ('torch', 'numpy', 'pydantic', 'onnx')))"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
