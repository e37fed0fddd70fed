"""Packaging hook: ship ``targets/`` and ``models/`` inside the wheel (edgekd/_targets, edgekd/_models), where
``edgekd.shipped.shipped_dir`` finds them when no repository checkout is next to the installed package.
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FOLDERS = {"targets": "_targets", "models": "_models"}  # as edgekd/shipped.py


class BuildPyWithShipped(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        for src, dst in FOLDERS.items():
            if (root / src).is_dir():
                shutil.copytree(root / src, Path(self.build_lib) / "edgekd" / dst, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithShipped})
