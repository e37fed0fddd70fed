"""Defaults that fit the data: early stopping (and its resume), imbalance -> macro-F1 selection, class-weighted
cross-entropy, plan lines and the --teacher-epochs / --patience / --class-weights options."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekd.config import RunConfig, imbalance, resolve, resolve_for_data

from .imagefolders import make_folder


def shapes():
    from edgekd.data import load_data

    return load_data("builtin:shapes10", 32, max_train=32, max_eval=16)


def scripted_val(values: list[float], calls: dict):
    """A stand-in for trainer.evaluate that returns the given validation scores in order."""
    it = iter(values)

    def fake(*args, **kwargs):
        calls["n"] = calls.get("n", 0) + 1
        return next(it)

    return fake


def train(workdir: Path, settings, data=None):
    from edgekd.data.torchdata import loader
    from edgekd.distill import trainer
    from edgekd.distill.catalog import build_loss
    from edgekd.models.factory import create_timm

    data = data or shapes()
    torch.manual_seed(0)
    model = create_timm("cifar_resnet20", len(data.classes))
    tr = loader(data.train, data.preprocess, 16, shuffle=True, seed=0)
    va = loader(data.val, data.preprocess, 64, shuffle=False)
    return model, trainer.fit(model, tr, va, build_loss("ce"), settings, workdir)


# ---- early stopping -------------------------------------------------------------------------------------------

def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path, monkeypatch, capsys):
    from edgekd.distill import trainer

    calls: dict = {}
    # best at epoch 2; epochs 3, 4, 5 do not beat it (55, an equal 60, 59)
    monkeypatch.setattr(trainer, "evaluate", scripted_val([50, 60, 55, 60, 59, 99, 99, 99, 99, 99], calls))
    settings = trainer.TrainSettings(epochs=10, lr=1e-3, weight_decay=0.0, patience=3)
    model, res = train(tmp_path / "w", settings)
    assert calls["n"] == 5 and [h["epoch"] for h in res.history] == [1, 2, 3, 4, 5]
    assert res.stopped_early == 5 and res.best_epoch == 2 and res.best_val == 60
    done = json.loads((tmp_path / "w" / "done.json").read_text())
    assert done["stopped_early"] == 5 and done["best_epoch"] == 2
    best = torch.load(tmp_path / "w" / "best.pt", weights_only=True)  # the model holds epoch 2's weights
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    err = capsys.readouterr().err
    assert "stopping early after epoch 5 of 10" in err and "has not improved for 3 epochs" in err
    assert "left at" in err and "9 more of 10 epochs" in err  # the ETA line after the first epoch


@pytest.mark.parametrize("patience,keep", [(0, "best"), (2, "last")])
def test_no_early_stop_when_off_or_in_an_earlier_stage(tmp_path, monkeypatch, patience, keep):
    from edgekd.distill import trainer

    monkeypatch.setattr(trainer, "evaluate", scripted_val([60, 50, 50, 50, 50], {}))
    settings = trainer.TrainSettings(epochs=5, lr=1e-3, weight_decay=0.0, patience=patience, keep=keep)
    _, res = train(tmp_path / "w", settings)
    assert len(res.history) == 5 and res.stopped_early is None


def test_patience_count_survives_a_kill_and_resume(tmp_path, monkeypatch, capsys):
    """Killed during epoch 4's validation (best at epoch 2, epoch 3 worse): the resumed run counts epoch 3
    as stale already and stops after epoch 5, not 3 epochs after the restart."""
    from edgekd.distill import trainer

    def dies(*a, **k):
        raise KeyboardInterrupt

    calls: dict = {}
    seq = scripted_val([50, 60, 55], calls)
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: seq() if calls.get("n", 0) < 3 else dies())
    settings = trainer.TrainSettings(epochs=10, lr=1e-3, weight_decay=0.0, patience=3)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "w", settings)
    assert torch.load(tmp_path / "w" / "last.pt", weights_only=True)["epoch"] == 2  # epochs 1-3 finished
    assert not (tmp_path / "w" / "done.json").exists()
    calls2: dict = {}
    monkeypatch.setattr(trainer, "evaluate", scripted_val([58, 59, 99, 99, 99], calls2))
    _, res = train(tmp_path / "w", settings)
    assert "resuming after epoch 3" in capsys.readouterr().err
    assert calls2["n"] == 2 and [h["epoch"] for h in res.history] == [1, 2, 3, 4, 5]
    assert res.stopped_early == 5 and res.best_epoch == 2

    # killed after the stopping epoch's checkpoint but before done.json / final.pt: nothing is trained again
    (tmp_path / "w" / "done.json").unlink()
    (tmp_path / "w" / "final.pt").unlink()
    def no_more(*a, **k):
        raise AssertionError("an early-stopped run trained another epoch after its restart")

    monkeypatch.setattr(trainer, "evaluate", no_more)
    _, again = train(tmp_path / "w", settings)
    assert again.stopped_early == 5 and len(again.history) == 5 and again.best_epoch == 2
    assert json.loads((tmp_path / "w" / "done.json").read_text())["stopped_early"] == 5


# ---- defaults that depend on the data -------------------------------------------------------------------------

def test_default_patience_is_on_for_classification_folders_only():
    assert resolve(RunConfig()).patience == 0  # builtin:shapes10: the demo keeps its behaviour
    assert resolve(RunConfig(data="/some/folder")).patience == 10
    assert resolve(RunConfig(data="/some/folder", task="segment")).patience == 0
    assert resolve(RunConfig(data="/some/folder", patience=3)).patience == 3
    assert resolve(RunConfig(data="/some/folder", patience=0)).patience == 0


def test_imbalance_selects_macro_f1_unless_the_metric_was_given():
    cfg = resolve(RunConfig(data="/d"))
    assert cfg.select_metric == "top1"
    out, notes = resolve_for_data(cfg, {"ants": 10, "bees": 20})  # 2x: imbalanced
    assert out.select_metric == "macro_f1"
    assert notes == ["classes are imbalanced (bees 20 vs ants 10 training images): selecting by macro-F1"]
    out, notes = resolve_for_data(cfg, {"ants": 10, "bees": 19, "wasps": 12})  # < 2x: balanced enough
    assert out.select_metric == "top1" and notes == []
    given = resolve(RunConfig(data="/d", select_metric="top1"))
    assert resolve_for_data(given, {"ants": 10, "bees": 400}, metric_given=True)[0].select_metric == "top1"
    seg = resolve(RunConfig(data="/d", task="segment"))
    assert resolve_for_data(seg, {"background": 1, "crack": 100})[0].select_metric == "miou"
    assert imbalance({"a": 0, "b": 3}) == (("b", 3), ("a", 0)) and imbalance({"a": 5}) is None


def test_class_weights_are_refused_for_segmentation():
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="class_weights is for classification"):
        resolve(RunConfig(data="/d", task="segment", class_weights="balanced"))


# ---- class-weighted cross-entropy -----------------------------------------------------------------------------

def test_balanced_class_weights_by_hand():
    from edgekd.distill.losses import balanced_class_weights

    # 1/30, 1/10 -> mean 1/15 -> 0.5, 1.5
    assert torch.allclose(balanced_class_weights([30, 10]), torch.tensor([0.5, 1.5]))
    # 1/10, 1/10, 1/20 -> mean 1/12 -> 1.2, 1.2, 0.6
    assert torch.allclose(balanced_class_weights([10, 10, 20]), torch.tensor([1.2, 1.2, 0.6]))
    assert torch.allclose(balanced_class_weights([7, 7]), torch.ones(2))


def test_class_weights_change_every_hard_label_ce_term():
    from edgekd.distill.catalog import build_loss
    from edgekd.distill.losses import DistillBatch, set_class_weight

    torch.manual_seed(0)
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    y = torch.tensor([0, 1, 1, 1, 1, 1])
    w = torch.tensor([1.5, 0.5])
    per = F.cross_entropy(s, y, reduction="none")
    by_hand = (w[y] * per).sum() / w[y].sum()  # weighted mean: sum w_y * l / sum w_y
    b = DistillBatch(s, y, [t])
    for name, kw, ce_share in (("ce", {}, 1.0), ("kd", {"alpha": 0.5}, 0.5), ("dkd", {"ce_weight": 2.0}, 2.0)):
        loss = build_loss(name, **kw)
        plain = loss(b)
        set_class_weight(loss, w)
        weighted = loss(b)
        assert not torch.isclose(plain, weighted), name
        assert torch.isclose(weighted - plain, ce_share * (by_hand - per.mean()), atol=1e-6), name


def test_distillation_and_teacher_training_get_the_weights_and_the_settings(tmp_path, monkeypatch):
    """The loss objects that reach fit() carry the balanced weights; the teacher selects by macro-F1 on
    imbalanced data and stops early with the recipe's patience."""
    from edgekd.data import load_data
    from edgekd.distill import engine
    from edgekd.distill.trainer import TrainResult
    from edgekd.models.factory import create_timm
    from edgekd.teacher import TeacherRecipe, build_teacher

    data = load_data(str(make_folder(tmp_path / "d", {"ants": 8, "bees": 40})), 32)
    counts = np.bincount(data.train.labels, minlength=2)
    inv = 1 / counts
    expected = torch.tensor(inv / inv.mean(), dtype=torch.float32)
    seen = []

    def fake_fit(model, tr, va, loss_fn, settings, workdir, *a, **k):
        seen.append((loss_fn, settings))
        return TrainResult(1.0, 1, settings.select_metric)

    monkeypatch.setattr(engine, "fit", fake_fit)
    cfg = resolve(RunConfig(data=str(tmp_path / "d"), student="resnet10t", loss="ce", class_weights="balanced",
                            image_size=32, batch_size=8, patience=4))
    engine.distill_student(create_timm("resnet10t", 2), data, cfg, [], tmp_path / "s")
    mix, settings = seen[-1]
    assert torch.allclose(mix.terms[0].class_weight, expected) and settings.patience == 4

    import edgekd.teacher as teacher_mod

    monkeypatch.setattr(teacher_mod, "fit", fake_fit)
    _, card = build_teacher(data, TeacherRecipe("resnet10t", epochs=3, patience=2, class_weights="balanced"), None,
                            tmp_path / "tw", tmp_path / "t.safetensors")
    loss, settings = seen[-1]
    assert torch.allclose(loss.class_weight, expected)
    assert settings.select_metric == "macro_f1" and settings.patience == 2
    assert [r["class"] for r in card["per_class"]] == ["ants", "bees"] and "f1" in card["per_class"][0]


# ---- words ----------------------------------------------------------------------------------------------------

def test_plan_line_and_per_class_words(tmp_path):
    from edgekd.data import load_data
    from edgekd.plan import duration, per_class_f1_line, plan_line

    data = load_data(str(make_folder(tmp_path / "d", {"ants": 8, "bees": 40})), 32)
    n = np.bincount(data.train.labels)
    line = plan_line("teacher mobilevit_s", data, 30, 64, "macro_f1", 8)
    assert line == (f"plan: teacher mobilevit_s on {len(data.train)} train / {len(data.val)} val / {len(data.test)} "
                    f"test images (ants {n[0]}, bees {n[1]} in train), 2 classes, input 32 px, up to 30 epochs "
                    f"(early stop after 8 without improvement), batch 64, select by macro-F1")
    assert "up to" not in plan_line("x", data, 5, 8, "top1", 5) and ", 1 epoch," in plan_line("x", data, 1, 8, "top1")
    assert per_class_f1_line([{"class": "ants", "f1": 91.23}, {"class": "bees", "f1": 88.0}]) == \
        "per-class F1: ants 91.2, bees 88.0"
    assert (duration(42), duration(200), duration(3900)) == ("42 s", "3 min 20 s", "1 h 05 min")


# ---- the command line -----------------------------------------------------------------------------------------

def edgekd(*args):
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("args,text", [
    (["distill", "--patience", "-1"], "--patience: Input should be greater than or equal to 0"),
    (["compress", "--teacher-epochs", "0"], "--teacher-epochs: Input should be greater than 0"),
    (["distill", "--class-weights", "sometimes"], "--class-weights: Input should be 'none' or 'balanced'"),
    (["train-teacher", "--patience", "-2"], "--patience must be 0 (off) or positive"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, args, text):
    res = edgekd(*args, "--out", tmp_path / ("r" if args[0] != "train-teacher" else "t.safetensors"))
    assert res.returncode == 2, res.stderr[-2000:]
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error:")]
    assert len(err) == 1 and text in err[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_distill_on_an_imbalanced_folder_plans_selects_macro_f1_and_records_the_flags(tmp_path):
    data = make_folder(tmp_path / "d", {"ants": 8, "bees": 40})
    (tmp_path / "r.yaml").write_text("teacher_arch: resnet10t\nstudent: resnet10t\nepochs: 1\nbatch_size: 16\n"
                                     "image_size: 32\n")
    out = tmp_path / "run"
    res = edgekd("distill", "--data", data, "--recipe", tmp_path / "r.yaml", "--out", out, "--max-train-samples", 30,
                 "--teacher-epochs", 2, "--patience", 1, "--class-weights", "balanced")
    assert res.returncode == 0, res.stderr[-3000:]
    err = res.stderr
    # the split holds out 1 + 1 ants and 4 + 4 bees (test, val), leaving 6 ants and 32 bees; --max-train-samples
    # 30 takes them round robin: 6 + 24
    assert "classes are imbalanced (bees 24 vs ants 6 training images): selecting by macro-F1" in err
    assert ("plan: teacher resnet10t on 30 train / 5 val / 5 test images (ants 6, bees 24 in train), 2 classes, "
            "input 32 px, up to 2 epochs (early stop after 1 without improvement), batch 64, class-weighted CE "
            "(ants 1.60, bees 0.40), select by macro-F1") in err
    assert ("plan: distill resnet10t from resnet10t on 30 train / 5 val / 5 test images (ants 6, bees 24 in train), "
            "2 classes, input 32 px, 1 epoch, batch 16, losses kd, class-weighted CE (ants 1.60, bees 0.40), "
            "select by macro-F1") in err
    assert err.index("plan: teacher") < err.index("teacher resnet10t epoch 1") < err.index("plan: distill")
    assert "s/epoch (1 more of 2 epochs, fewer if it stops early)" in err  # ETA after the teacher's first epoch
    assert err.count("per-class F1: ants ") == 2  # after the teacher's and the student's test reports
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert (cfg["teacher_epochs"], cfg["patience"], cfg["select_metric"], cfg["class_weights"]) == \
        (2, 1, "macro_f1", "balanced")
    teacher = json.loads((out / "teacher" / "teacher0.json").read_text())
    assert teacher["recipe"]["patience"] == 1 and teacher["recipe"]["select_metric"] == "macro_f1"
    assert [r["class"] for r in teacher["per_class"]] == ["ants", "bees"]
    assert "val_macro_f1" in teacher["history"][0]
    student = json.loads((out / "student" / "student.json").read_text())
    assert student["select_metric"] == "macro_f1" and "stopped_early" in student and student["per_class"]


# ---- the epoch kept on a small validation split --------------------------------------------------------------

def test_a_small_validation_split_keeps_the_last_epoch_without_early_stopping():
    from edgekd.config import MIN_SELECT_VAL, resolve_select_epoch

    cfg = resolve(RunConfig(data="/photos"))
    assert cfg.patience == 10 and cfg.select_epoch is None
    small, lines = resolve_select_epoch(cfg, 24)
    assert (small.select_epoch, small.patience) == ("last", 0)
    assert lines == ["validation split: 24 images (one image moves the score by 4.2 points), too few to pick the "
                     "best epoch by: teacher and student keep their last epoch, early stopping off "
                     "(select_epoch: best, or patience N, in a recipe to choose otherwise)"]
    big, lines = resolve_select_epoch(cfg, MIN_SELECT_VAL)
    assert (big.select_epoch, big.patience, lines) == ("best", 10, [])
    # the user's own patience, the built-in data, segmentation and a given select_epoch are left as they are
    assert resolve_select_epoch(cfg, 24, patience_given=True)[0].select_epoch == "best"
    assert resolve_select_epoch(resolve(RunConfig()), 24)[0].select_epoch == "best"
    assert resolve_select_epoch(resolve(RunConfig(data="/cracks", task="segment")), 12)[0].select_epoch == "best"
    given = resolve(RunConfig(data="/photos", select_epoch="best"))
    assert resolve_select_epoch(given, 24) == (given, [])


def test_select_epoch_last_turns_early_stopping_off_and_refuses_a_patience():
    from edgekd.errors import ConfigError

    assert resolve(RunConfig(data="/photos", select_epoch="last")).patience == 0
    with pytest.raises(ConfigError, match="select_epoch last needs patience 0"):
        resolve(RunConfig(data="/photos", select_epoch="last", patience=3))


def test_keep_last_ends_on_the_last_epochs_weights_not_the_best(tmp_path, monkeypatch):
    from edgekd.distill import trainer
    from edgekd.distill.trainer import TrainSettings

    monkeypatch.setattr(trainer, "evaluate", scripted_val([50, 80, 60], {}))
    model, res = train(tmp_path / "w", TrainSettings(3, 1e-3, 0.0, seed=0, keep="last"))
    assert (res.best_epoch, res.best_val, len(res.history)) == (2, 80, 3)
    last = torch.load(tmp_path / "w" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in last.items())
    monkeypatch.setattr(trainer, "evaluate", scripted_val([50, 80, 60], {}))
    best_model, _ = train(tmp_path / "b", TrainSettings(3, 1e-3, 0.0, seed=0, keep="best"))
    assert not all(torch.equal(v, best_model.state_dict()[k]) for k, v in last.items())  # epoch 2's, not 3's


@pytest.mark.slow
def test_distill_on_a_folder_with_a_small_val_split_keeps_the_last_epochs(tmp_path):
    data = make_folder(tmp_path / "d", {"ants": 20, "bees": 20})
    (tmp_path / "r.yaml").write_text("teacher_arch: resnet10t\nstudent: resnet10t\nepochs: 2\nbatch_size: 16\n"
                                     "image_size: 32\nteacher_check: 0\n")
    out = tmp_path / "run"
    res = edgekd("distill", "--data", data, "--recipe", tmp_path / "r.yaml", "--out", out, "--teacher-epochs", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    err = res.stderr
    assert "validation split: 4 images (one image moves the score by 25.0 points), too few" in err
    assert err.count(", 2 epochs (keeps the last), batch ") == 2  # the teacher's plan and the student's
    assert "early stop after" not in err and "(last epoch kept, 2; best val top1" in err
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert (cfg["select_epoch"], cfg["patience"]) == ("last", 0)
    assert json.loads((out / "teacher" / "teacher0.json").read_text())["recipe"]["keep"] == "last"
    assert json.loads((out / "student" / "student.json").read_text())["select_epoch"] == "last"


@pytest.mark.slow
def test_train_teacher_alone_keeps_the_last_epoch_on_a_small_val_split(tmp_path):
    """`edgekd train-teacher` applies compress's rule: too few validation images -> the last epoch, no early stop;
    --patience given keeps early stopping and the best epoch."""
    data = make_folder(tmp_path / "d", {"ants": 20, "bees": 20})
    common = ["train-teacher", "--data", data, "--arch", "resnet10t", "--weights", "none", "--epochs", 2,
              "--batch-size", 16, "--image-size", 32]
    res = edgekd(*common, "--out", tmp_path / "t.safetensors")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "validation split: 4 images (one image moves the score by 25.0 points), too few" in res.stderr
    assert ", 2 epochs (keeps the last), batch " in res.stderr
    assert json.loads((tmp_path / "t.json").read_text())["recipe"]["keep"] == "last"
    res = edgekd(*common, "--patience", 3, "--out", tmp_path / "p.safetensors")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "too few" not in res.stderr and json.loads((tmp_path / "p.json").read_text())["recipe"]["keep"] == "best"
