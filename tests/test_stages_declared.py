"""The stages are declared once (edgekd/stages/__init__.py STAGES) and the runner knows none by name: no stage
name appears as a string in pipeline.py, every declared stage resolves to its function, and what --overwrite
clears covers what every stage writes. No training."""

import ast
from pathlib import Path

from edgekd.config import RunConfig, resolve
from edgekd.stages import STAGE, STAGES

PIPELINE = Path(__file__).resolve().parent.parent / "edgekd" / "pipeline.py"


def test_stages_are_unique_and_each_resolves_to_its_function():
    names = [s.name for s in STAGES]
    assert len(names) == len(set(names)) and names[0] == "teacher" and names[-1] == "bundle"
    for s in STAGES:
        fn = s.function()
        assert callable(fn) and fn.__module__ == f"edgekd.stages.{s.name}", s.name


def test_the_runner_names_no_stage():
    names = {s.name for s in STAGES}
    literals = {n.value for n in ast.walk(ast.parse(PIPELINE.read_text()))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not names & literals, sorted(names & literals)


def test_overwrite_clears_what_every_stage_writes():
    from edgekd.pipeline import RUN_ENTRIES

    for s in STAGES:
        assert set(s.writes) <= set(RUN_ENTRIES), s.name


def test_opt_in_and_rank_roles_are_fields():
    assert not STAGE["robustness"].on(resolve(RunConfig())) and STAGE["robustness"].on(
        resolve(RunConfig(robustness=True)))
    assert all(s.on(resolve(RunConfig())) for s in STAGES if s.name != "robustness")
    assert STAGE["distill"].ranks == "all" and STAGE["teacher"].ranks == "shared"
    assert {s.name for s in STAGES if s.models} == {"teacher", "distill", "export", "quantize"}
