"""The loss sweep before distilling and dkd's beta for the class count (issue 20): `sweep:` / --sweep parsing and
refusals, the winner's choice (ties), the short runs inside the distill stage, a tiny end-to-end `edgekd distill
--sweep`, and dkd's default beta."""

import json
import subprocess
import sys

import pytest

from edgekd.config import (
    LossTerm,
    RunConfig,
    StageSpec,
    dkd_beta,
    make_config,
    parse_sweep,
    resolve,
    schedule,
    with_loss_defaults,
)
from edgekd.errors import ConfigError

from .imagefolders import make_folder


def edgekd(*args):
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True)


# ---- parsing and refusals -------------------------------------------------------------------------------------

def test_parse_sweep_text():
    assert parse_sweep("temperature=1,2,4 alpha=0.5,0.9") == {"temperature": [1.0, 2.0, 4.0], "alpha": [0.5, 0.9]}
    assert parse_sweep(" beta=2 ") == {"beta": [2.0]}


@pytest.mark.parametrize("text,words", [
    ("", "--sweep: empty"),
    ("temperature", "--sweep: 'temperature' is not OPTION=V1,V2,..."),
    ("temperature=1,x", "--sweep: temperature: 'x' is not a number"),
    ("alpha=0.5 alpha=0.9", "--sweep: alpha is given twice"),
])
def test_parse_sweep_refuses_malformed_text(text, words):
    with pytest.raises(ConfigError) as exc:
        parse_sweep(text)
    assert str(exc.value).startswith(words)


def test_recipe_sweep_block_and_its_default_epochs(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 20\nsweep:\n  temperature: [1, 2, 4]\n  alpha: [0.5, 0.9]\n")
    cfg = resolve(make_config(recipe, data=str(tmp_path)))
    assert cfg.sweep == {"temperature": [1.0, 2.0, 4.0], "alpha": [0.5, 0.9]} and cfg.sweep_epochs == 3
    assert resolve(cfg.model_copy(update={"epochs": 10, "sweep_epochs": None})).sweep_epochs == 2
    assert resolve(cfg.model_copy(update={"epochs": 3, "sweep_epochs": None})).sweep_epochs == 1
    assert resolve(cfg.model_copy(update={"sweep_epochs": 5})).sweep_epochs == 5  # a given value is kept
    assert resolve(RunConfig(data=str(tmp_path))).sweep_epochs is None  # no sweep, no sweep epochs
    dkd = resolve(RunConfig(loss="dkd", sweep={"beta": [2, 8], "alpha": [1, 2]}))  # dkd's alpha is a weight
    assert dkd.sweep == {"beta": [2.0, 8.0], "alpha": [1.0, 2.0]}
    one = resolve(RunConfig(losses=[{"name": "multi_teacher"}], sweep={"temperature": [2]}))
    assert one.sweep == {"temperature": [2.0]}


@pytest.mark.parametrize("opts,words", [
    ({"sweep": {"lr": [1e-3]}}, "sweep cannot tune 'lr'; it takes temperature, alpha (and beta with loss dkd)"),
    ({"sweep": {}}, "sweep is empty"),
    ({"sweep": {"temperature": []}}, "sweep temperature: give at least one value"),
    ({"sweep": {"temperature": [0, 2]}}, "sweep temperature: every value must be above 0"),
    ({"sweep": {"alpha": [0.5, 0.5]}}, "sweep alpha: 0.5 is given twice"),
    ({"sweep": {"beta": [2]}}, "sweep beta: beta is dkd's NCKD weight; loss kd takes temperature and alpha"),
    ({"sweep": {"alpha": [0.5, 1.5]}}, "sweep alpha: kd's alpha is the soft-target share, 0 to 1 (got 1.5)"),
    ({"sweep": {"alpha": [0.5]}, "loss": "ce"}, "sweep tunes kd, dkd or multi_teacher; loss ce has no"),
    ({"sweep": {"alpha": [0.5]}, "stages": [{"epochs": 2, "losses": [{"name": "kd"}]}]},
     "sweep tunes the loss of a single-stage run; with `stages:`"),
    ({"sweep": {"alpha": [0.5]}, "losses": [{"name": "kd"}, {"name": "ce", "weight": 0.5}]},
     "sweep tunes one loss; `losses:` lists 2 (kd, ce)"),
    ({"sweep_epochs": 2}, "sweep_epochs is the length of each sweep run; add `sweep:`"),
])
def test_bad_sweeps_are_one_config_error(opts, words):
    with pytest.raises(ConfigError) as exc:
        resolve(make_config(None, **opts))
    assert words in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("args,text", [
    (["distill", "--sweep", "temperature=1,abc"], "--sweep: temperature: 'abc' is not a number"),
    (["distill", "--sweep", "temperature"], "--sweep: 'temperature' is not OPTION=V1,V2,..."),
    (["compress", "--sweep", "lr=0.1"], "--sweep: Value error, sweep cannot tune 'lr'; it takes temperature, alpha"),
    (["distill", "--sweep", "beta=2,4"], "sweep beta: beta is dkd's NCKD weight; loss kd takes temperature"),
    (["distill", "--sweep-epochs", "0", "--sweep", "alpha=0.5"], "--sweep-epochs: Input should be greater than 0"),
])
def test_bad_sweep_flags_exit_2_with_one_line(tmp_path, args, text):
    res = edgekd(*args, "--out", tmp_path / "r")
    assert res.returncode == 2, res.stderr[-2000:]
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error:")]
    assert len(err) == 1 and text in err[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not (tmp_path / "r").exists()


def test_a_kd_sweep_over_alpha_gets_one_caution_line_and_other_sweeps_none():
    from edgekd.distill.sweep import alpha_caution

    line = alpha_caution("kd", {"temperature": [1.0, 4.0], "alpha": [0.5, 0.9]})
    assert line is not None and "\n" not in line and "alpha" in line and "sweep_effect.py" in line
    assert alpha_caution("multi_teacher", {"alpha": [0.5, 0.9]}) == line
    assert alpha_caution("kd", {"temperature": [1.0, 2.0, 4.0]}) is None  # temperature only
    assert alpha_caution("kd", {"alpha": [0.5]}) is None  # one value: nothing is ranked
    assert alpha_caution("dkd", {"alpha": [0.5, 1.0]}) is None  # dkd's alpha weights TCKD, not the labels


# ---- the winner -----------------------------------------------------------------------------------------------

def test_grid_and_winner():
    from edgekd.distill.sweep import configured, grid, pick

    assert grid({"temperature": [1, 4], "alpha": [0.5, 0.9]}) == [
        {"temperature": 1, "alpha": 0.5}, {"temperature": 1, "alpha": 0.9},
        {"temperature": 4, "alpha": 0.5}, {"temperature": 4, "alpha": 0.9}]

    def res(*pairs):
        return [{"params": p, "val": v} for p, v in pairs]

    t = [{"temperature": x} for x in (1.0, 2.0, 4.0)]
    defaults = {"temperature": 4.0}
    assert pick(res((t[0], 50.0), (t[1], 70.0), (t[2], 60.0)), defaults) == 1  # the best score wins
    assert pick(res((t[0], 70.0), (t[1], 70.0), (t[2], 70.0)), defaults) == 2  # ties: the configured value first
    assert pick(res((t[2], 60.0), (t[1], 70.0), (t[0], 70.0)), defaults) == 2  # then the smaller temperature
    ta = [{"temperature": 4.0, "alpha": 0.5}, {"temperature": 2.0, "alpha": 0.9}, {"temperature": 4.0, "alpha": 0.9}]
    assert pick(res((ta[0], 80.0), (ta[1], 80.0), (ta[2], 80.0)), {"temperature": 4.0, "alpha": 0.9}) == 2
    assert pick(res((ta[0], 80.0), (ta[1], 80.0), (ta[2], 79.0)), {"temperature": 4.0, "alpha": 0.9}) == 1
    assert pick(res(({"alpha": 0.9}, 10.0), ({"alpha": 0.5}, 10.0)), {"alpha": 0.1}) == 0  # then grid order
    # a tie between combinations that keep one configured value each: the smaller temperature
    tb = [{"temperature": 4.0, "alpha": 0.5}, {"temperature": 2.0, "alpha": 0.9}]
    assert pick(res((tb[0], 80.0), (tb[1], 80.0)), {"temperature": 4.0, "alpha": 0.9}) == 1
    # the configured values: the term's own, else the loss's defaults
    assert configured(LossTerm(name="kd", temperature=2.0), ["temperature", "alpha"]) == {"temperature": 2.0,
                                                                                         "alpha": 0.9}
    assert configured(LossTerm(name="dkd", beta=4.0), ["beta", "alpha"]) == {"beta": 4.0, "alpha": 1.0}


def test_distill_student_sweeps_then_trains_the_full_run_with_the_winner(tmp_path, monkeypatch, capsys):
    import torch

    from edgekd.data import load_data
    from edgekd.distill import engine
    from edgekd.distill.trainer import TrainResult
    from edgekd.models.factory import create_timm

    folder = make_folder(tmp_path / "d", {"red": 20, "blue": 20})
    data = load_data(str(folder), 32)
    cfg = resolve(RunConfig(data=str(folder), student="resnet10t", image_size=32, batch_size=8, epochs=7,
                            teacher_check=0, temperature=3.0, sweep={"temperature": [1, 2, 4], "alpha": [0.5, 0.9]},
                            sweep_epochs=2, seed=5))
    calls = []
    scores = {1.0: 40.0, 2.0: 70.0, 4.0: 60.0}  # temperature 2 teaches best, alpha does not matter: a tie

    def fake_fit(model, train_dl, val_dl, loss_fn, settings, workdir, teaching=None, desc=""):
        term = loss_fn.terms[0]
        calls.append({"t": term.temperature, "a": term.alpha, "epochs": settings.epochs, "seed": settings.seed,
                      "desc": desc, "dir": workdir.name, "patience": settings.patience, "same": model is student})
        return TrainResult(scores[term.temperature], 1, settings.select_metric)

    monkeypatch.setattr(engine, "fit", fake_fit)
    monkeypatch.setattr(engine, "load_teachers", lambda *a, **k: [lambda x: torch.zeros(len(x), 2)])
    monkeypatch.setattr(engine, "check_schedule", lambda *a, **k: None)
    monkeypatch.setattr(engine, "cache_logits", lambda *a, **k: None)
    card = {"kind": "torch", "arch": "t", "view": {"size": [32, 32]}, "classes": data.classes}
    student = create_timm("resnet10t", 2)
    rec: dict = {}
    _, summary = engine.distill_student(student, data, cfg, [card], tmp_path / "s", sweep=rec)
    short, full = calls[:6], calls[6:]
    assert [(c["t"], c["a"]) for c in short] == [(1, .5), (1, .9), (2, .5), (2, .9), (4, .5), (4, .9)]
    assert all(c["epochs"] == 2 and c["seed"] == 5 and c["patience"] == 0 and not c["same"] for c in short)
    assert short[2]["desc"] == "sweep 3/6 (temperature 2, alpha 0.5)" and short[2]["dir"] == "3-temperature2-alpha0.5"
    # 2 wins; alpha 0.9 (the configured value) breaks the tie with 0.5
    assert rec["winner"] == {"temperature": 2.0, "alpha": 0.9} and rec["winner_val"] == 70.0
    assert rec["configured"] == {"temperature": 3.0, "alpha": 0.9} and rec["epochs"] == 2 and rec["loss"] == "kd"
    assert [r["val"] for r in rec["results"]] == [40.0, 40.0, 70.0, 70.0, 60.0, 60.0]
    assert len(full) == 1 and (full[0]["t"], full[0]["a"], full[0]["epochs"]) == (2.0, 0.9, 7) and full[0]["same"]
    assert summary[0]["losses"][0]["temperature"] == 2.0 and summary[0]["losses"][0]["alpha"] == 0.9
    err = "".join(capsys.readouterr())
    assert ("sweep: 6 combinations of kd (temperature, alpha) x 2 epochs each, resnet10t from its start, best val "
            "top-1 wins; then the full run of 7 epochs") in err
    assert "sweep 4/6: temperature 2, alpha 0.9: val top-1 70.00" in err
    assert "sweep winner: temperature 2, alpha 0.9 (val top-1 70.00); the full run uses it" in err
    # QAD's own stage (tweak) and a given schedule do not sweep again
    calls.clear()
    stage = StageSpec(name="qad", epochs=1, losses=[LossTerm(name="kd")])
    engine.distill_student(student, data, cfg, [card], tmp_path / "q", [stage], {"freeze_bn": True})
    assert [c["t"] for c in calls] == [4.0]


@pytest.mark.slow
def test_distill_with_a_sweep_end_to_end_records_it_and_trains_with_the_winner(tmp_path):
    data = make_folder(tmp_path / "d", {"red": 24, "blue": 24})
    (tmp_path / "r.yaml").write_text("teacher_arch: resnet10t\nteacher_arch_weights: none\nstudent: resnet10t\n"
                                     "student_weights: none\nepochs: 1\nteacher_epochs: 1\nbatch_size: 16\n"
                                     "image_size: 32\naugment: none\ntemperature: 3\n")
    out = tmp_path / "run"
    res = edgekd("distill", "--data", data, "--recipe", tmp_path / "r.yaml", "--out", out, "--sweep",
                 "temperature=1,4")
    assert res.returncode == 0, res.stderr[-3000:]
    err = res.stderr
    assert "sweep: 2 combinations of kd (temperature) x 1 epoch each, resnet10t from its start" in err
    assert err.count("sweep 1/2: temperature 1: val top-1 ") == 1 and err.count("sweep 2/2: temperature 4: val") == 1
    assert err.index("sweep 2/2: temperature 4: val") < err.index("sweep winner: temperature ") < \
        err.index("plan: distill resnet10t")
    card = json.loads((out / "student" / "student.json").read_text())
    sweep = card["sweep"]
    assert sweep["grid"] == {"temperature": [1.0, 4.0]} and sweep["epochs"] == 1 and sweep["metric"] == "top1"
    assert [r["params"] for r in sweep["results"]] == [{"temperature": 1.0}, {"temperature": 4.0}]
    assert sweep["configured"] == {"temperature": 3.0}
    best = max(r["val"] for r in sweep["results"])
    assert sweep["winner_val"] == best and sweep["winner"]["temperature"] in (1.0, 4.0)
    # the full run trained with the winner, not the recipe's 3
    assert card["stages"][0]["losses"][0]["temperature"] == sweep["winner"]["temperature"]
    assert json.loads((out / "stages" / "distill.json").read_text())["result"]["sweep"] == sweep
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["sweep"] == {"temperature": [1.0, 4.0]} and cfg["sweep_epochs"] == 1
    # a rerun reuses the stage; a changed grid is a changed option
    again = edgekd("distill", "--data", data, "--recipe", tmp_path / "r.yaml", "--out", out, "--sweep",
                   "temperature=1,4")
    assert again.returncode == 0 and "distill: reused" in again.stderr + again.stdout


def test_sweep_and_the_dkd_rule_join_the_distill_hash_only_when_they_apply():
    from edgekd.stages import STAGE

    options = STAGE["distill"].options
    plain = options(resolve(RunConfig()))
    assert "sweep" not in plain and "sweep_epochs" not in plain and "dkd_beta" not in plain  # older runs' hashes
    swept = options(resolve(RunConfig(sweep={"temperature": [1, 2]})))
    assert swept["sweep"] == {"temperature": [1.0, 2.0]} and swept["sweep_epochs"] == 1
    assert {k: v for k, v in swept.items() if k not in ("sweep", "sweep_epochs")} == plain
    assert "dkd_beta" in options(resolve(RunConfig(loss="dkd")))
    given = RunConfig(losses=[{"name": "dkd", "beta": 2.0}])
    assert "dkd_beta" not in options(resolve(given))


# ---- dkd's beta ----------------------------------------------------------------------------------------------

def test_dkd_beta_follows_the_class_count():
    assert dkd_beta(100) == 8.0 and dkd_beta(1000) == 8.0  # the paper's CIFAR-100 value
    assert dkd_beta(10) == 4.0 and dkd_beta(2) == 1.0 and dkd_beta(50) == 7.0
    assert all(dkd_beta(c) <= dkd_beta(c + 1) for c in range(2, 120))  # fewer classes, a smaller NCKD weight


def test_dkd_beta_default_written_into_the_schedule_and_an_explicit_one_kept():
    def beta(cfg, classes):
        return with_loss_defaults(schedule(resolve(cfg)), classes)[0].losses[0].params["beta"]

    assert beta(RunConfig(loss="dkd"), 10) == 4.0
    assert beta(RunConfig(loss="dkd"), 100) == 8.0
    assert beta(RunConfig(losses=[{"name": "dkd", "beta": 8.0}]), 10) == 8.0
    assert beta(RunConfig(losses=[{"name": "dkd", "beta": 0.5, "temperature": 1.0}]), 100) == 0.5
    kd = with_loss_defaults(schedule(resolve(RunConfig())), 10)[0].losses[0]
    assert "beta" not in kd.params  # other losses are untouched


def test_dkd_beta_reaches_the_loss_and_the_card(tmp_path, monkeypatch):
    """The default beta is the one the loss trains with, and the stage summary (the card's `stages`) says so."""
    import torch

    from edgekd.data import load_data
    from edgekd.distill import engine
    from edgekd.distill.trainer import TrainResult
    from edgekd.models.factory import create_timm

    folder = make_folder(tmp_path / "d", {"red": 12, "blue": 12})
    data = load_data(str(folder), 32)
    seen = []
    monkeypatch.setattr(engine, "fit", lambda model, tr, va, loss_fn, *a, **k: seen.append(loss_fn.terms[0].beta)
                        or TrainResult(1.0, 1, "top1"))
    monkeypatch.setattr(engine, "load_teachers", lambda *a, **k: [lambda x: torch.zeros(len(x), 2)])
    monkeypatch.setattr(engine, "check_schedule", lambda *a, **k: None)
    monkeypatch.setattr(engine, "cache_logits", lambda *a, **k: None)
    card = {"kind": "torch", "arch": "t", "view": {"size": [32, 32]}, "classes": data.classes}
    cfg = resolve(RunConfig(data=str(folder), loss="dkd", teacher_check=0, batch_size=8))
    _, summary = engine.distill_student(create_timm("resnet10t", 2), data, cfg, [card], tmp_path / "s")
    assert seen == [1.0] and summary[0]["losses"][0]["beta"] == 1.0  # 2 classes
    cfg = cfg.model_copy(update={"loss": None, "losses": [LossTerm(name="dkd", beta=6.0)]})
    _, summary = engine.distill_student(create_timm("resnet10t", 2), data, cfg, [card], tmp_path / "e")
    assert seen[-1] == 6.0 and summary[0]["losses"][0]["beta"] == 6.0


def test_report_md_states_the_sweep():
    from edgekd.bundle import _sweep

    rec = {"loss": "kd", "grid": {"temperature": [1.0, 4.0], "alpha": [0.5, 0.9]}, "epochs": 1, "metric": "top1",
           "results": [{}] * 4, "winner": {"temperature": 4.0, "alpha": 0.5}, "winner_val": 62.5}
    assert _sweep(rec) == ("Loss sweep: 4 combinations of `kd` (temperature 1, 4; alpha 0.5, 0.9), 1 epoch each; "
                           "winner temperature 4, alpha 0.5 (validation top1 62.50), used for the full run.\n\n")
    assert _sweep(None) == "" and _sweep({}) == ""
