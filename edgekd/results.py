"""Typed stage results: what each pipeline stage hands the stages after it, as dataclasses.

Each stage function returns one of these; the runner (pipeline.run) stores ``to_json()`` in RUN/stages/NAME.json
and rebuilds the object with ``from_json`` when it reuses the stage, so a stage reads ``r.results["teacher"].score``
instead of a dict key built as ``f"test_{metric}"``. The JSON layout is the one the records always had (older run
folders stay reusable, and the model cards and the bundle manifest keep their keys); ``Scores`` is the one place
that turns a metric name into those keys. A score is named by its metric (``top1`` for classification, ``miou``
for segmentation): nothing segmentation-specific travels in a field called top1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekd.artifacts import ExportedModel, LatencyResult, ParityResult, from_json, to_json


@dataclass(frozen=True)
class Scores:
    """Test scores in percent by name (top1, macro_f1, miou, fg_iou, ...); ``metric`` names the main one."""

    metric: str
    values: dict[str, float]

    @property
    def main(self) -> float:
        return self.values[self.metric]

    def keys(self, prefix: str) -> dict[str, Any]:
        """The record / card layout: ``{"metric": m, "<prefix>_<name>": value, ...}``."""
        return {"metric": self.metric, **{f"{prefix}_{k}": v for k, v in self.values.items()}}

    @classmethod
    def of(cls, report: dict) -> Scores:
        """From a test report (``distill.trainer.test_report``): its metric and every float in it."""
        return cls(report["metric"], {k: v for k, v in report.items() if isinstance(v, float)})

    @classmethod
    def read(cls, d: dict, prefix: str, metric: str | None = None) -> Scores:
        """From a record or card laid out by ``keys``."""
        head = prefix + "_"
        values = {k[len(head):]: float(v) for k, v in d.items()
                  if k.startswith(head) and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(metric or d.get("metric", "top1"), values)


def card_scores(report: dict) -> dict[str, Any]:
    """A model card's score keys from a test report (teacher and student cards share the layout)."""
    return Scores.of(report).keys("test")


@dataclass
class TeacherResult:
    """The teacher stage: every teacher's card (path, kind, view, weight, its own test scores) and the main
    (first) teacher's test scores."""

    teachers: list[dict]
    arch: str
    how: str
    test: Scores

    @property
    def score(self) -> float:
        return self.test.main

    @property
    def main(self) -> dict:
        return self.teachers[0]

    def to_json(self) -> dict:
        return {"teachers": self.teachers, "arch": self.arch, "how": self.how, **self.test.keys("test")}

    @classmethod
    def from_json(cls, d: dict) -> TeacherResult:
        return cls(list(d["teachers"]), d["arch"], d["how"], Scores.read(d, "test"))


@dataclass
class StudentResult:
    """The distill stage: the student checkpoint, its test scores, and the rest of its card (classes, preprocess,
    per-class report, best epoch, teacher check, sweep, weights start, ...)."""

    path: str
    arch: str
    test: Scores
    card: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.test.main

    def get(self, key: str, default: Any = None) -> Any:
        """A card field that not every run has (``teacher_check``, ``sweep``, ``weights``, ``stem_stride``)."""
        return self.card.get(key, default)

    def to_json(self) -> dict:
        return {"path": self.path, "arch": self.arch, **self.card, **self.test.keys("test")}

    @classmethod
    def from_json(cls, d: dict) -> StudentResult:
        test = Scores.read(d, "test")
        card = {k: v for k, v in d.items() if k not in ("path", "arch", "metric") and not k.startswith("test_")}
        return cls(d["path"], d["arch"], test, card)


@dataclass
class ModelsResult:
    """The export and quantize stages: the model files they wrote (FP32 exports; int8 models)."""

    models: list[ExportedModel]

    def __iter__(self):
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __add__(self, other: ModelsResult) -> list[ExportedModel]:
        return self.models + other.models

    def formats(self) -> list[str]:
        return [m.format for m in self.models]

    def to_json(self) -> list[dict]:
        return [to_json(m) for m in self.models]

    @classmethod
    def from_json(cls, d: list) -> ModelsResult:
        return cls([from_json(ExportedModel, m) for m in d])


@dataclass
class VerifyReport:
    """The verify stage: every model against the PyTorch student on ``samples`` test inputs; the teacher's score
    (its own stage's, whole test split) and the PyTorch student's on those inputs, both in ``metric``."""

    samples: int
    metric: str
    teacher: float
    student: float
    models: list[ParityResult]

    def passed(self) -> set[str]:
        return {m.model for m in self.models if m.passed}

    def failed(self) -> list[ParityResult]:
        return [m for m in self.models if not m.passed]

    def manifest_metrics(self) -> dict[str, Any]:
        """The bundle manifest's ``metrics`` scores: the teacher's, the FP32 PyTorch student's, on how many."""
        return {"metric": self.metric, f"teacher_{self.metric}": self.teacher,
                f"student_fp32_{self.metric}": self.student, "samples": self.samples}

    def score_of(self, model: str) -> float | None:
        return next((m.metric for m in self.models if m.model == model), None)

    def to_json(self) -> dict:
        return {"samples": self.samples, "metric": self.metric, f"teacher_{self.metric}": self.teacher,
                f"student_{self.metric}": self.student, "models": [to_json(m) for m in self.models]}

    @staticmethod
    def scores_in(d: dict) -> dict[str, float | None]:
        """Each model's score in a verify.json read leniently (``edgekd report`` reads files of any age):
        ``teacher``, ``student-torch`` and every model key; missing entries are left out."""
        m = d.get("metric", "top1")
        out = {m2["model"]: m2.get("metric") for m2 in d.get("models", []) if "model" in m2}
        return {**out, "teacher": d.get(f"teacher_{m}"), "student-torch": d.get(f"student_{m}")}

    @classmethod
    def from_json(cls, d: dict) -> VerifyReport:
        m = d.get("metric", "top1")
        return cls(d["samples"], m, d[f"teacher_{m}"], d[f"student_{m}"],
                   [from_json(ParityResult, x) for x in d["models"]])


@dataclass
class BenchRow:
    """One bench row: the latency (measured here, or estimated for a device that is not attached) and the energy
    per frame from the target's power model (always an estimate; None when the target has none)."""

    latency: LatencyResult
    energy: dict | None = None

    @property
    def model(self) -> str:
        return self.latency.model

    def to_json(self) -> dict:
        out = to_json(self.latency)
        if self.energy is not None:
            out["energy"] = self.energy
            out["energy_mj_per_frame"] = self.energy["j_per_frame"] * 1e3
        return out

    @classmethod
    def from_json(cls, d: dict) -> BenchRow:
        lat = {k: v for k, v in d.items() if k not in ("energy", "energy_mj_per_frame")}
        if "latencies_ms" in lat:
            lat["latencies_ms"] = tuple(lat["latencies_ms"])
        return cls(from_json(LatencyResult, lat), d.get("energy"))


@dataclass
class BenchResult:
    """The bench stage: the teacher, the PyTorch student and every timed or estimated model."""

    rows: list[BenchRow]

    def __iter__(self):
        return iter(self.rows)

    def by_model(self) -> dict[str, dict]:
        """Each row's JSON by model name (what the deploy choice and the bundle read)."""
        return {r.model: r.to_json() for r in self.rows}

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.rows]

    @classmethod
    def from_json(cls, d: list) -> BenchResult:
        return cls([BenchRow.from_json(x) for x in d])


@dataclass
class RobustnessResult:
    """The opt-in robustness stage: edgekd.robustness's report (kept as its JSON) plus the files it wrote."""

    report: dict

    @property
    def models(self) -> list[dict]:
        return self.report["models"]

    def to_json(self) -> dict:
        return self.report

    @classmethod
    def from_json(cls, d: dict) -> RobustnessResult:
        return cls(dict(d))


@dataclass
class BundleResult:
    """The bundle stage: the folder, the tarball, the manifest and its digest, and the results table's rows."""

    path: str
    tarball: str
    manifest: dict
    digest: str
    rows: list[dict]

    def to_json(self) -> dict:
        return {"path": self.path, "tarball": self.tarball, "manifest": self.manifest, "digest": self.digest,
                "rows": self.rows}

    @classmethod
    def from_json(cls, d: dict) -> BundleResult:
        # records written before the rows' score was named by its metric called it top1 (mIoU too)
        rows = [{("score" if k == "top1" else k): v for k, v in row.items()} for row in d["rows"]]
        return cls(d["path"], d["tarball"], d["manifest"], d["digest"], rows)
