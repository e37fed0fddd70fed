"""The opt-in robustness stage: accuracy under ImageNet-C corruptions."""

from __future__ import annotations

from edgekd.progress import console
from edgekd.results import RobustnessResult
from edgekd.run_context import Run


def robustness(r: Run) -> RobustnessResult:
    """Opt-in (``robustness:``): the teacher and every exported student on test images under ImageNet-C corruptions
    (edgekd.robustness); RUN/robustness.json and .png, a section of the bundle's report.md."""
    from edgekd import robustness as rb
    from edgekd.config import RobustnessSpec

    spec = r.cfg.robustness if isinstance(r.cfg.robustness, RobustnessSpec) else RobustnessSpec()
    names = spec.corruptions or list(rb.DEFAULT)
    report = rb.score_run(r, names, spec.severities, spec.samples, spec.seed)
    paths = rb.write(report, r.path("robustness.json"), r.path("robustness.png"))
    for m in report["models"]:
        rel = "-" if m["relative"] is None else f"{m['relative']:.3f}"
        console.print(f"robustness {m['model']}: clean {m['clean']:.2f}%, mCA {m['mca']:.2f}% (x{rel})")
    return RobustnessResult({**report, **paths})
