import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli import app

runner = CliRunner()


def test_help_lists_every_stage():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("compress", "distill", "quantize", "export", "verify", "bench", "targets"):
        assert cmd in res.output


def test_cli_import_pulls_no_heavy_backend():
    heavy = "('torch', 'openvino', 'nncf', 'onnxruntime', 'timm')"
    code = f"import sys, edgekd.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_targets_list_and_show():
    res = runner.invoke(app, ["targets", "list"])
    assert res.exit_code == 0 and "cpu-x86" in res.output
    res = runner.invoke(app, ["targets", "show", "cpu-x86"])
    assert res.exit_code == 0 and "threads: 2" in res.output


def _edgekd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args,code,match", [
    (["compress", "--target", "nope"], 2, "unknown target 'nope'; known targets: cpu-arm64, cpu-x86, fpga-zu, "
                                          "jetson-agx-orin"),
    (["compress", "--epochs", "0"], 2, "--epochs: Input should be greater than 0"),
    (["compress", "--student", "mobilevit_xxxs", "--out", "{tmp}/r"], 4, "unknown timm model"),
    (["compress", "--data", "{tmp}/missing", "--out", "{tmp}/r2"], 3, "does not exist"),
    (["compress", "--recipe", "{tmp}/none.yaml"], 2, "recipe"),
    (["compress", "--teacher", "resnet50", "--data", "{tmp}/d", "--out", "{tmp}/r3"], 2, "expected timm:NAME"),
    (["bench", "{tmp}/none.onnx"], 2, "does not exist"),
    (["verify-bundle", "{tmp}"], 2, "not an edgekd bundle"),
    (["targets", "show", "nope"], 2, "unknown target"),
    (["train-teacher", "--max-train-samples", "0", "--out", "{tmp}/t.safetensors"], 2,
     "--max-train-samples and --max-eval-samples must be positive"),
])
def test_bad_input_gives_one_line_and_exit_code(tmp_path: Path, args, code, match):
    d = tmp_path / "d" / "cls"
    d.mkdir(parents=True)
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (8, 8)).save(d / f"{i}.png")
    res = _edgekd(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.returncode == code, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert len(lines) == 1 and match in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_the_traceback():
    res = _edgekd("--debug", "targets", "show", "nope")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_out_folder_that_is_not_a_run_is_never_touched(tmp_path: Path):
    keep = tmp_path / "precious.txt"
    keep.write_text("mine")
    res = _edgekd("compress", "--out", str(tmp_path), "--overwrite")
    assert res.returncode == 2 and "not an edgekd run folder" in res.stderr
    assert keep.read_text() == "mine"


def test_version_and_usage_errors():
    from edgekd import __version__

    res = _edgekd("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"edgekd {__version__}"
    for args, option in ((["compress", "--frobnicate"], "--frobnicate"), (["compress", "--lr", "fast"], "'--lr'"),
                         (["verify", "m.onnx"], "'--reference'")):
        res = _edgekd(*args)
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error:")]
        assert res.returncode == 2 and len(lines) == 1 and option in lines[0], res.stderr
        assert "internal error" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("raised,code,line", [
    (KeyboardInterrupt(), 130, "edgekd: interrupted; rerun the same command to resume"),
    (EOFError("Compressed file ended"), 1, "edgekd: error: aborted: Compressed file ended"),
])
def test_interrupt_and_end_of_input_are_one_line(monkeypatch, capsys, raised, code, line):
    """click turns Ctrl-C and EOFError inside a command into Abort, which used to print 'internal error: Abort:'."""
    import edgekd.cli_support
    from edgekd import cli

    def boom(*args, **kwargs):
        raise raised

    monkeypatch.setattr(edgekd.cli_support, "run_bench", boom)
    monkeypatch.setattr(sys, "argv", ["edgekd", "bench", "m.onnx"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == code and line in err.splitlines() and "internal error" not in err, err
