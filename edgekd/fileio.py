"""Writing a file all or nothing: the one helper for "write a temporary file beside it, then replace it".

A reader (a rerun, the device, a user's script) sees the old file or the new one, never half of one, and a
failed write (a full disk, a killed process) leaves what was there before. ``os.replace`` is atomic within one
filesystem, which a file and its temporary neighbour share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekd.errors import writing


def temp_of(path: str | Path) -> Path:
    """The temporary neighbour ``atomic`` writes first: ``NAME.tmp`` in the same folder."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write; when the block succeeds it replaces ``path``. Any failure removes the
    temporary file and becomes one ``WriteError`` line naming ``path`` (``errors.writing``); ``path`` is
    untouched."""
    path = Path(path)
    tmp = temp_of(path)
    with writing(path, tmp):
        yield tmp
        os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    """``Path.write_text``, all or nothing."""
    with atomic(path) as tmp:
        tmp.write_text(text)
