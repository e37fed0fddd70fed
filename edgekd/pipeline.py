"""pipeline.run: teacher -> distill -> export -> quantize -> verify -> bench -> bundle.

The stages are declared once, in order, in ``edgekd.stages.STAGES``; each is a function ``(Run) -> JSON-able
result`` in its own module of ``edgekd/stages/``, and this runner knows none by name. Results are cached in
``RUN/stages/<stage>.json`` with a hash of the options that stage depends on, chained through the stages before
it, so a rerun after a kill (or with a changed option) redoes only the stages it must.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from edgekd.config import RunConfig
from edgekd.errors import ConfigError
from edgekd.fileio import write_text
from edgekd.integrity import sha256  # standard library only: no start-up cost
from edgekd.progress import console
from edgekd.run_context import Run, rank  # noqa: F401 - re-exported: pipeline.Run / pipeline.rank
from edgekd.stages import STAGES
from edgekd.targets import Target

# what a run writes at the top of its folder (the tarball is NAME.tar.gz, NAME from run.json)
RUN_ENTRIES = ("run.json", "stages", "cache", ".write-test", "run.json.tmp",  # run.json.tmp: fileio.atomic's
               *(entry for st in STAGES for entry in st.writes))


def clear_run_dir(root: Path) -> list[str]:
    """Remove what edgekd wrote in the run folder ``root`` (``--overwrite``); returns the names of the entries it
    left because edgekd did not write them (a user's notes, another tool's files)."""
    try:
        name = json.loads((root / "run.json").read_text())["config"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        name = root.name
    ours = {*RUN_ENTRIES, f"{name}.tar.gz", f"{name}.tar.gz.tmp"}
    kept = []
    for entry in sorted(root.iterdir()):
        if entry.name not in ours:
            kept.append(entry.name + ("/" if entry.is_dir() else ""))
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return kept


def check_run_dir(root: Path) -> None:
    """The run folder can be used: absent, empty, or an edgekd run. Reads only; :func:`run` calls it before the
    pre-flight (which exports the untrained student), so a wrong --out fails in a second."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / "run.json").is_file():
        raise ConfigError(f"--out {root} exists and is not an edgekd run folder; choose another --out")


def prepare_run_dir(root: Path, overwrite: bool) -> None:
    """Create or reuse a run folder; never delete anything that is not an edgekd run."""
    marker = root / "run.json"
    check_run_dir(root)
    if overwrite and marker.is_file():
        kept = clear_run_dir(root)
        if kept:
            console.print(f"--overwrite kept {len(kept)} entr{'y' if len(kept) == 1 else 'ies'} edgekd did not write "
                          f"in {root}: {', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}", soft_wrap=True,
                          markup=False)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {root} is not writable ({exc.strerror})") from exc


STAGE_RECORD_VERSION = 2  # stage JSON: paths relative to the run folder, sha256 of every output file


def _prefixes(root: Path) -> list[str]:
    """The spellings of ``root`` a stage may have written paths with (as given, absolute, resolved)."""
    out = []
    for p in (str(root), os.path.abspath(root), str(root.resolve())):
        p = p.rstrip(os.sep)
        if p and p not in out:
            out.append(p)
    return sorted(out, key=len, reverse=True)


def _portable(result: Any, root: Path) -> tuple[Any, list[list], dict[str, str]]:
    """``result`` with every path inside ``root`` made relative to it, the JSON pointers of those paths (so a
    loaded record turns them back into paths under the folder it now lies in: a copied or moved run uses its own
    files) and the sha256 of each that is a file."""
    prefixes = _prefixes(root)
    pointers: list[list] = []
    files: dict[str, str] = {}

    def walk(v: Any, at: list) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, [*at, k]) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, [*at, i]) for i, x in enumerate(v)]
        if isinstance(v, str):
            for pre in prefixes:
                if v.startswith(pre + os.sep):
                    rel = v[len(pre) + 1:]
                    pointers.append(at)
                    if (root / rel).is_file() and rel not in files:
                        files[rel] = sha256(root / rel)
                    return rel
        return v

    return walk(result, []), pointers, files


def _localize(result: Any, pointers: list[list], root: Path) -> Any:
    """The inverse of :func:`_portable`: the recorded relative paths as paths under ``root``."""
    for at in pointers:
        node = result
        for key in at[:-1]:
            node = node[key]
        node[at[-1]] = str(root / node[at[-1]])
    return result


def _stale(saved: dict, root: Path) -> str | None:
    """Why a stage record whose options match cannot be reused (an output missing or changed), or None."""
    if saved.get("version") != STAGE_RECORD_VERSION:
        return "its record is from an older edgekd (no output hashes)"
    for rel, digest in saved.get("files", {}).items():
        f = root / rel
        if not f.is_file():
            return f"{rel} is missing"
        if sha256(f) != digest:
            return f"{rel} changed since it was written"
    return None


def _load_record(cache: Path, root: Path) -> dict | None:
    """A stage record with its paths under ``root``; None when the file is unreadable."""
    try:
        saved = json.loads(cache.read_text())
        if saved.get("version") == STAGE_RECORD_VERSION:
            saved["result"] = _localize(saved["result"], saved.get("paths", []), root)
        return saved
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def refresh_record(root: Path, name: str) -> None:
    """Re-hash the recorded outputs of stage ``name`` after edgekd itself changed them on purpose (a signature
    added to the bundle after its stage ran); missing files stay missing, so a rerun still rebuilds them."""
    cache = root / "stages" / f"{name}.json"
    saved = json.loads(cache.read_text())
    saved["files"] = {rel: sha256(root / rel) if (root / rel).is_file() else digest
                      for rel, digest in saved.get("files", {}).items()}
    write_text(cache, json.dumps(saved, indent=2))


def _write_record(cache: Path, chain: str, result: Any, root: Path) -> None:
    rel, pointers, files = _portable(result, root)
    cache.parent.mkdir(exist_ok=True)
    write_text(cache, json.dumps({"version": STAGE_RECORD_VERSION, "hash": chain, "result": rel, "paths": pointers,
                                  "files": files}, indent=2))


def _wait_for(cache: Path, chain: str, poll_s: float = 2.0) -> Any:
    """Other ranks wait (without a collective timeout) for rank 0 to finish a stage."""
    import time

    while True:
        if cache.is_file():
            saved = _load_record(cache, cache.parent.parent)
            if saved is not None and saved.get("hash") == chain:
                return saved["result"]
        time.sleep(poll_s)


def _default_teacher_trains(cfg: RunConfig) -> bool:
    """The run trains its default classification teacher on a folder, from ``auto`` weights."""
    return (cfg.task == "classify" and not cfg.teachers and not cfg.data.startswith("builtin:")
            and cfg.teacher_arch_weights == "auto")


def run(cfg: RunConfig, target: Target, root: Path, overwrite: bool = False, until: str | None = None) -> Run:
    """Run the stages in order (up to ``until``), reusing cached results whose options did not change."""
    from edgekd.config import resolve, resolve_for_data
    from edgekd.stages.preflight import preflight

    given = cfg
    if rank() == 0:
        check_run_dir(root)
    cfg = resolve(cfg, target.device)  # the task's defaults, written to run.json as used
    r = Run(cfg, target, root)
    if cfg.budget_ms is not None or cfg.budget_fps is not None:  # the student for the budget, before any training
        from edgekd.students import for_run

        r.budget = for_run(r, explicit_student=given.student is not None, overwrite=overwrite)
        cfg = r.cfg
    if given.teacher_arch is None and _default_teacher_trains(cfg):  # offline: born-again, not a scratch giant
        from edgekd.models.pretrained import scratch_teacher

        why = scratch_teacher(cfg.teacher_arch, cfg.student, cfg.student_weights)
        if why is not None:
            cfg = r.cfg = cfg.model_copy(update={"teacher_arch": cfg.student})
            console.print(why, soft_wrap=True, markup=False)
    preflight(r)
    main = rank() == 0
    if main:
        prepare_run_dir(root, overwrite)
    if cfg.task == "classify" and given.select_metric is None:  # defaults that depend on the (loaded) data
        from edgekd.plan import class_counts

        cfg, notes = resolve_for_data(cfg, class_counts(r.data))
        r.cfg = cfg  # what the data loaded with is unchanged: resolve_for_data sets no data option
        for line in notes:
            console.print(line, soft_wrap=True, markup=False)
    if cfg.select_epoch is None:  # the best epoch by a handful of validation images is noise
        from edgekd.config import resolve_select_epoch

        cfg, notes = resolve_select_epoch(cfg, len(r.data.val), patience_given=given.patience is not None)
        r.cfg = cfg
        for line in notes:
            console.print(line, soft_wrap=True, markup=False)
    if main:
        info = {"config": cfg.model_dump(mode="json"), "target": target.name}
        if r.budget is not None:
            info["student_choice"] = r.budget
        write_text(root / "run.json", json.dumps(info, indent=2))
    chain = ""
    redo: str | None = None  # once a stage is recomputed because its outputs were bad, every later one is too
    for stage in STAGES:
        if not stage.on(cfg):  # an opt-in stage that is off: skipped, and out of the chain
            continue
        name = stage.name
        chain = hashlib.sha256((chain + name + json.dumps(stage.key(r), default=str, sort_keys=True)).encode()
                               ).hexdigest()
        cache = root / "stages" / f"{name}.json"
        if not main and stage.ranks != "all":  # distributed run: rank 0 does everything but the training itself
            if stage.ranks != "shared":
                break
            r.results[name] = stage.load(_wait_for(cache, chain))
            continue
        if cache.is_file() and redo is None:
            saved = _load_record(cache, root)
            why = "its record is unreadable" if saved is None else _stale(saved, root)
            if saved is not None and saved.get("hash") == chain and why is None:
                console.print(f"[green]✓[/] {name}: reused (options unchanged, outputs verified)")
                r.results[name] = stage.load(saved["result"])
                if name == until:
                    break
                continue
            if saved is not None and saved.get("hash") == chain:  # same options, but its outputs cannot be trusted
                redo = f"{name}: {why}"
                console.print(f"[yellow]![/] {name}: recomputed, since {why}; the stages after it follow",
                              soft_wrap=True, markup=False)
        elif cache.is_file():
            console.print(f"[yellow]![/] {name}: recomputed, since {redo.split(': ', 1)[0]} was", soft_wrap=True,
                          markup=False)
        console.rule(f"[bold]{name}")
        r.stage_key = chain[:12]
        r.results[name] = stage.function()(r)
        if not main:
            break
        _write_record(cache, chain, r.results[name].to_json(), root)
        if name == until:
            break
    return r


def open_run(run_dir: Path, target: str | None = None):
    """A finished run folder (of `edgekd compress`) as a Run with its teacher, distill, export and quantize
    results, for commands that work on a run afterwards (`verify --corruptions`); its data loads (the same split)
    when first used. ``target``: whose threads the runtimes use (default: the run's)."""
    from edgekd.config import RunConfig
    from edgekd.targets import load_target

    saved = run_dir / "run.json"
    if not saved.is_file():
        raise ConfigError(f"{run_dir}: not an edgekd run folder (no run.json); --corruptions scores the models of "
                          f"a run written by edgekd compress")
    try:
        info = json.loads(saved.read_text())
        cfg = RunConfig.model_validate(info["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{saved}: unreadable run record ({exc})") from exc
    if target is not None:
        tgt = load_target(target)
    else:
        try:
            tgt = load_target(info["target"])
        except ConfigError:  # a target YAML the run was given by path, not at hand now: its threads are 2 too
            tgt = load_target("cpu-x86")
    r = Run(cfg, tgt, run_dir)
    for stage in (st for st in STAGES if st.models):
        name = stage.name
        rec = _load_record(run_dir / "stages" / f"{name}.json", run_dir)
        if rec is None:
            raise ConfigError(f"{run_dir}: the {name} stage has not finished (no stages/{name}.json); finish the run "
                              f"with edgekd compress first")
        r.results[name] = stage.load(rec["result"])
    return r
