"""The one atomic-write helper: all or nothing, one WriteError line, and no module hand-writes its own
tmp + replace except the multi-file commits listed here."""

import re
from pathlib import Path

import pytest

from edgekd.errors import WriteError
from edgekd.fileio import atomic, temp_of, write_text

EDGEKD = Path(__file__).resolve().parent.parent / "edgekd"
# writers that commit several files or a folder together (a checkpoint and its card, an IR's .xml and .bin, an
# ONNX graph with external data, the bundle folder, the decoded-image cache) or must not import edgekd
# (device_runner.py)
OWN_COMMIT = {"models/factory.py", "export/openvino.py", "export/onnx.py", "bundle.py", "data/__init__.py",
              "device_runner.py", "fileio.py"}


def test_atomic_replaces_the_file_when_the_block_succeeds(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with atomic(path) as tmp:
        assert tmp == temp_of(path) == tmp_path / "a.json.tmp"
        tmp.write_text("new")
        assert path.read_text() == "old"  # readers see the old file until the block is done
    assert path.read_text() == "new" and not tmp.exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with pytest.raises(WriteError, match=rf"^cannot write {re.escape(str(path))}: No space left on device$"):
        with atomic(path) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and not temp_of(path).exists()


def test_write_text_is_atomic_and_creates_the_file(tmp_path):
    write_text(tmp_path / "new.txt", "hello")
    assert (tmp_path / "new.txt").read_text() == "hello"
    with pytest.raises(WriteError, match="cannot write"):
        write_text(tmp_path / "missing-folder" / "x.txt", "hello")


def test_no_module_hand_writes_a_temporary_and_replaces_it():
    own = []
    for py in EDGEKD.rglob("*.py"):
        rel = py.relative_to(EDGEKD).as_posix()
        src = py.read_text()
        if rel not in OWN_COMMIT and re.search(r'name \+ "\.tmp"|with_suffix\("\.tmp"\)|\+ "\.tmp"\)', src):
            own.append(rel)
    assert not own, f"use edgekd.fileio.atomic instead of a hand-written tmp + replace in: {own}"
