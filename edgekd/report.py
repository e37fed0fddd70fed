"""`edgekd report RUN...`: Markdown + matplotlib plots across run folders (and `edgekd bench --json` files).

A run folder is what `edgekd compress` writes: run.json, stages/*.json (bench: LatencyResult dicts, with
per-call latencies since issue 7), verify.json and bundle/manifest.json. Estimated points (a device that was
not attached) are drawn hollow and labelled "estimated" everywhere; they never pass as measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import ConfigError


@dataclass
class Point:
    """One model x runtime of one run."""

    run: str
    model: str
    runtime: str
    precision: str
    p50_ms: float
    fps: float
    score: float | None  # the run's metric (top-1 or mIoU); None without a verify report
    estimated: str | None
    latencies_ms: list[float] = field(default_factory=list)
    energy_mj: float | None = None  # millijoules per frame, when a meter (or an estimate) gave one
    # the energy figure's own label: None = read from a meter; else how it was estimated. Independent of
    # `estimated` (a latency measured here can carry a power-model energy)
    energy_estimated: str | None = None

    @property
    def label(self) -> str:
        return f"{self.run}: {self.model} ({self.runtime}{', estimated' if self.estimated else ''})"


def _read(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from exc


def load_points(path: Path) -> list[Point]:
    """The bench entries of a run folder (joined with its verify accuracies) or of a bench JSON file."""
    if not path.exists():
        raise ConfigError(f"run {path} does not exist")
    if path.is_file():
        doc = _read(path)
        entries = doc.get("results") if isinstance(doc, dict) else None
        if not entries:
            raise ConfigError(f"{path}: not an `edgekd bench --json` file (no results)")
        return [_point(path.stem, e, None) for e in entries]
    bench = path / "stages" / "bench.json"
    if not bench.is_file():
        raise ConfigError(f"{path}: not an edgekd run folder with a finished bench stage (no stages/bench.json)")
    name = path.name
    if (path / "run.json").is_file():
        name = _read(path / "run.json").get("config", {}).get("name") or name
    ver = path / "verify.json"
    verify = _read(ver) if ver.is_file() else None
    return [_point(name, e, verify) for e in _read(bench)["result"]]


def _point(run: str, e: dict, verify: dict | None) -> Point:
    key = e["model"].split("@")[0]
    score = None  # in the run's metric: top1 or miou
    if verify:
        from edgekd.results import VerifyReport

        score = VerifyReport.scores_in(verify).get("teacher" if key.startswith("teacher") else key)
    fps = e.get("throughput_fps") or e["fps"]
    energy = e.get("energy_mj_per_frame")
    return Point(run, e["model"], e["runtime"], e["precision"], e["p50_ms"], fps, score, e.get("estimated"),
                 list(e.get("latencies_ms") or []), energy, energy_label(e) if energy is not None else None)


def energy_label(entry: dict) -> str | None:
    """How a bench entry's energy figure was obtained: None when a meter measured it, else the estimate's method.
    A figure without its record (older or hand-made JSON) is never taken for a measurement."""
    rec = entry.get("energy")
    if not isinstance(rec, dict):
        return "estimated: no record of how this energy figure was obtained"
    if rec.get("measured") is True and not rec.get("estimated"):
        return None
    return rec.get("estimated") or "estimated"


def pareto(points: list[Point]) -> list[Point]:
    """Points no other point beats on both accuracy and FPS (ties kept)."""
    pts = [p for p in points if p.score is not None]
    return [p for p in pts if not any(q.fps >= p.fps and q.score >= p.score and (q.fps > p.fps or q.score > p.score)
                                      for q in pts)]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_latency(points: list[Point], out: Path) -> Path | None:
    pts = [p for p in points if p.latencies_ms]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(pts) + 1.5))
    ax.boxplot([p.latencies_ms for p in pts], orientation="horizontal", showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(pts) + 1), [p.label for p in pts], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms (log scale; box: p25-p75, line: median)")
    ax.set_title("Latency distribution (measured, every timed call)")
    return _save(plt, fig, out)


def plot_pareto(points: list[Point], out: Path) -> Path | None:
    pts = [p for p in points if p.score is not None]
    if not pts:
        return None
    plt = _plt()
    front = pareto(pts)
    fig, ax = plt.subplots(figsize=(8, 5))
    runs = list(dict.fromkeys(p.run for p in pts))
    for p in pts:
        c = f"C{runs.index(p.run) % 10}"  # one colour per run; hollow = estimated
        ax.scatter(p.fps, p.score, s=50, marker="o", facecolors="none" if p.estimated else c, edgecolors=c)
        ax.annotate(p.label, (p.fps, p.score), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = sorted(front, key=lambda p: p.fps)
    ax.plot([p.fps for p in front], [p.score for p in front], "k--", lw=1, label="Pareto front")
    ax.scatter([], [], facecolors="none", edgecolors="k", label="estimated (not measured)")
    ax.scatter([], [], color="k", label="measured")
    ax.set_xscale("log")
    ax.set_xlabel("FPS (log scale)")
    ax.set_ylabel("top-1 %")
    ax.set_title("Accuracy vs speed across runs and targets")
    ax.legend(fontsize=8)
    return _save(plt, fig, out)


def plot_energy(points: list[Point], out: Path) -> Path | None:
    pts = [p for p in points if p.energy_mj is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(pts) + 1.5))
    bars = ax.barh([f"{p.run}: {p.model} ({p.runtime}, {'estimated' if p.energy_estimated else 'measured'} energy)"
                    for p in pts], [p.energy_mj for p in pts])
    for b, p in zip(bars, pts, strict=True):
        if p.energy_estimated:
            b.set_hatch("//")
            b.set_facecolor("none")
            b.set_edgecolor("C0")
    ax.set_xlabel("energy per frame, mJ (hatched: estimated energy; solid: read from a meter)")
    ax.tick_params(axis="y", labelsize=8)
    return _save(plt, fig, out)


def _estimated(how: str) -> str:
    return how if how.startswith("estimated") else f"estimated: {how}"


def write_report(runs: list[Path], out: Path) -> Path:
    """Plots under ``out`` and ``out/report.md`` referencing them; returns the Markdown path."""
    points = [p for r in runs for p in load_points(r)]
    if not points:
        raise ConfigError("the runs hold no bench results to report")
    out.mkdir(parents=True, exist_ok=True)
    plots = {"Latency distribution": plot_latency(points, out / "latency_distribution.png"),
             "Accuracy vs FPS (Pareto)": plot_pareto(points, out / "pareto.png"),
             "Energy per frame": plot_energy(points, out / "energy.png")}
    front = {id(p) for p in pareto(points)}
    lines = [f"# edgekd report: {', '.join(str(r) for r in runs)}", "",
             "Measured points are latencies on the machine that ran the bench; points marked *estimated* come from "
             "a model of an absent device and are drawn hollow or hatched.", "",
             "| run | model | runtime | precision | top-1 % | p50 ms | FPS | latency: measured? | energy mJ/frame | "
             "energy: measured? | Pareto |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        energy = "-" if p.energy_mj is None else f"{p.energy_mj:.2f}"
        e_label = "-" if p.energy_mj is None else (_estimated(p.energy_estimated) if p.energy_estimated
                                                   else "measured")
        lines.append(f"| {p.run} | {p.model} | {p.runtime} | {p.precision} | "
                     f"{'-' if p.score is None else f'{p.score:.2f}'} | {p.p50_ms:.2f} | {p.fps:.1f} | "
                     f"{_estimated(p.estimated) if p.estimated else 'measured'} | {energy} | {e_label} | "
                     f"{'yes' if id(p) in front else ''} |")
    for title, path in plots.items():
        lines += ["", f"## {title}", ""]
        lines.append(f"![{title}]({path.name})" if path else "_no data for this plot in these runs_")
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n")
    return md
