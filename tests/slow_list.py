"""Write tests/slow.txt from pytest's ``--durations`` report: every test whose setup, call or teardown took at
least ``--min`` seconds (default 1) is marked slow by conftest.py and left out of ``make test-fast``.

    PYTEST_ADDOPTS="--durations=0 --durations-min=0.2" make test 2>&1 | tee durations.txt
    .venv/bin/python tests/slow_list.py durations.txt

A parametrized test is listed by its base name when any of its cases is slow (one line per test function).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(tests/\S+)")


def slow_ids(text: str, min_s: float) -> list[str]:
    """Base node ids (``tests/test_x.py::test_y``) with any phase of any case at or above ``min_s`` seconds."""
    out = set()
    for line in text.splitlines():
        m = LINE.match(line)
        if m and float(m.group(1)) >= min_s:
            out.add(m.group(3).split("[", 1)[0])
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("durations", type=Path, nargs="+")
    ap.add_argument("--min", type=float, default=1.0)
    args = ap.parse_args()
    ids = slow_ids("\n".join(p.read_text() for p in args.durations), args.min)
    Path(__file__).with_name("slow.txt").write_text("\n".join(ids) + "\n")
    print(f"{len(ids)} slow tests written to tests/slow.txt")


if __name__ == "__main__":
    main()
