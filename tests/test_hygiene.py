"""Checks on the test suite itself."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_assert_of_a_conditional_expression():
    """``assert a == b if c else x`` parses as ``assert (a == b) if c else x``: its else branch asserts the
    constant ``x`` and always passes. Parenthesise the expected value instead."""
    found = [f"{p.relative_to(ROOT)}:{n.lineno}"
             for d in ("tests", "edgekd", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Assert) and isinstance(n.test, ast.IfExp)]
    assert found == []
