"""The slow list behind `make test-fast`: parsed from pytest's durations report, and every entry names a test
that exists (a renamed test must not silently fall into the fast set)."""

import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from slow_list import slow_ids  # noqa: E402

REPORT = """
============================= slowest durations ==============================
12.51s call     tests/test_a.py::test_trains
1.00s setup    tests/test_b.py::test_param[x-1]
0.99s call     tests/test_b.py::test_quick
0.50s call     tests/test_b.py::test_param[y-2]
(3 durations < 0.2s hidden.)
"""


def test_slow_ids_takes_any_phase_at_or_above_the_threshold_by_base_name():
    assert slow_ids(REPORT, 1.0) == ["tests/test_a.py::test_trains", "tests/test_b.py::test_param"]
    assert slow_ids(REPORT, 0.5) == ["tests/test_a.py::test_trains", "tests/test_b.py::test_param",
                                     "tests/test_b.py::test_quick"]


@pytest.mark.skipif(not (HERE / "slow.txt").is_file(), reason="no slow list written yet")
def test_every_listed_slow_test_exists():
    missing = []
    for node in (HERE / "slow.txt").read_text().split():
        path, _, name = node.partition("::")
        func = name.split("::")[-1]
        src = (HERE.parent / path).read_text() if (HERE.parent / path).is_file() else ""
        if not re.search(rf"def {re.escape(func)}\(", src):
            missing.append(node)
    assert not missing, f"tests/slow.txt names tests that do not exist: {missing}"
