"""An installed copy of edgekd (no repository next to it) finds its target YAMLs and the demo's shipped teacher:
setup.py's build_py copies targets/ and models/ into the package (issue 19)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_installed_copy_finds_its_targets_and_the_demo_teacher(tmp_path):
    lib = tmp_path / "lib"
    p = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    pkg = lib / "edgekd"
    assert sorted(x.name for x in (pkg / "_targets").glob("*.yaml")) == sorted(x.name for x in
                                                                             (ROOT / "targets").glob("*.yaml"))
    assert (pkg / "_models" / "shapes10-mobilevit_s.safetensors").is_file()
    code = ("import edgekd, edgekd.targets as t; from edgekd.shipped import shipped_dir; print(edgekd.__file__); "
            "print(t.targets_dir()); print(shipped_dir('models')); print(t.load_target('cpu-x86').name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(lib)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(pkg / "__init__.py"), str(pkg / "_targets"), str(pkg / "_models"),
                                       "cpu-x86"]


def test_a_checkout_uses_its_own_folders():
    from edgekd.shipped import shipped_dir

    assert shipped_dir("targets") == ROOT / "targets" and shipped_dir("models") == ROOT / "models"
