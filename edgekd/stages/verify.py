"""The verify stage: every exported model against the PyTorch student (the parity gate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.distill.metrics import METRIC_LABEL
from edgekd.errors import ParityError
from edgekd.fileio import write_text
from edgekd.progress import console
from edgekd.results import VerifyReport
from edgekd.run_context import Run
from edgekd.stages.common import inputs as _inputs

SEG_VERIFY_MAX = 200  # segmentation test images verify holds in memory at once (dense logits per runtime)


def verify(r: Run) -> VerifyReport:
    """Every exported model against the PyTorch student; a failure stops the run after the report is written."""
    import json

    import torch

    from edgekd.distill.trainer import score
    from edgekd.models.factory import load_checkpoint
    from edgekd.verify import verify_model

    seg = r.cfg.task == "segment"
    # dense outputs: the inputs, the reference and every runtime's output are held at once
    x, y = _inputs(r, "test", min(r.cfg.verify_samples, SEG_VERIFY_MAX) if seg else r.cfg.verify_samples)
    student, _ = load_checkpoint(Path(r.results["distill"].path))
    step = r.data.eval_batch
    with torch.no_grad():
        ref = np.concatenate([student(torch.from_numpy(x[i:i + step])).numpy() for i in range(0, len(x), step)])
    results, m = [], "miou" if seg else "top1"
    for exp in r.results["export"] + r.results["quantize"]:
        res = verify_model(exp, x, y, ref, r.target)
        mark = "[green]pass[/]" if res.passed else f"[red]FAIL[/] ({res.reason})"
        what = "pixel agreement" if seg else "agreement"
        console.print(f"verify {res.model}: {what} {res.top1_agreement:.4f}, max|diff| {res.max_abs_diff:.3g}, "
                      f"{METRIC_LABEL[m]} {res.metric:.2f}% ({res.metric_delta:+.2f}) {mark}")
        results.append(res)
    # the teacher's metric is the teacher stage's: its own view, the whole test split
    report = VerifyReport(len(y), m, r.results["teacher"].score, score(m, ref, y), results)
    write_text(r.path("verify.json"), json.dumps(report.to_json(), indent=2))
    failed = report.failed()
    if failed:
        raise ParityError(f"{failed[0].model} failed the {r.target.name} parity gate: {failed[0].reason} "
                          f"(report: {r.root / 'verify.json'})")
    return report
