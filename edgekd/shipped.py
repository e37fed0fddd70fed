"""Folders shipped with edgekd: target YAMLs and the demo's recipe and teacher.

In a repository checkout they are the top-level ``targets/`` and ``models/``; an installed wheel has no repository
next to it, so ``setup.py`` copies both into the package (``edgekd/_targets``, ``edgekd/_models``) at build time.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import ConfigError

HERE = Path(__file__).resolve().parent
FOLDERS = {"targets": "_targets", "models": "_models"}


def shipped_dir(name: str) -> Path:
    """``targets`` or ``models``: the checkout's folder when there is one, else the packaged copy."""
    for cand in (HERE.parent / name, HERE / FOLDERS[name]):
        if cand.is_dir():
            return cand
    raise ConfigError(f"no {name}/ folder found next to the edgekd package, nor edgekd/{FOLDERS[name]} inside it "
                      f"(a wheel built without setup.py's build_py step?)")
