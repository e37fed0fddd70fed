"""Loss and exporter catalogs (issue 19): every registered name is reachable from one module, and the modules
that register do not import each other."""

import subprocess
import sys


def test_every_loss_and_exporter_name_is_known_in_a_fresh_process():
    code = ("from edgekd.distill.catalog import LOSSES, build_loss; from edgekd.export.catalog import EXPORTERS, "
            "get_exporter; import sys; print(sorted(LOSSES.names())); print(sorted(EXPORTERS.names())); "
            "print(type(get_exporter('tensorrt')).__name__, 'tensorrt' in sys.modules); "
            "print(type(build_loss('dice_ce')).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    losses, exporters, trt, dice = out.stdout.splitlines()
    assert losses == str(sorted(["ce", "kd", "dkd", "multi_teacher", "hint", "attention", "dice_ce", "pixel_kd",
                                 "cwd"]))
    assert exporters == str(["onnx", "openvino", "qonnx", "tensorrt"])
    assert trt == "TensorRTExporter False"  # the exporter is registered; the tensorrt library is imported on export
    assert dice == "DiceCE"


def test_the_registering_modules_do_not_import_their_catalog():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "edgekd"
    for f in ("distill/losses.py", "distill/seg_losses.py", "export/base.py", "export/onnx.py", "export/openvino.py",
              "export/qonnx.py", "export/tensorrt.py"):
        text = (root / f).read_text()
        assert "catalog" not in text.replace("catalog.py", ""), f
    assert "seg_losses" not in (root / "distill/losses.py").read_text().split('"""', 2)[2]
