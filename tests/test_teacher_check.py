"""The teacher check before distilling (issue 20): the teachers' validation score against a labels-only probe
student, one warning line when the teacher is not better, the student untouched, and its defaults."""

import pytest
import torch

from edgekd.config import RunConfig, resolve

from .imagefolders import make_folder


class ColourTeacher:
    """A stand-in teacher that reads the colour: ``sign=1`` is always right, ``sign=-1`` always wrong (classes
    sort as blue = 0, red = 1)."""

    def __init__(self, name: str, sign: float) -> None:
        self.name, self.sign = name, sign

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r, b = x[:, 0].mean((1, 2)), x[:, 2].mean((1, 2))
        return self.sign * 10 * torch.stack([b - r, r - b], 1)


@pytest.fixture()
def setup(tmp_path):
    from edgekd.data import load_data
    from edgekd.data.torchdata import loader

    folder = make_folder(tmp_path / "d", {"red": 40, "blue": 40})
    data = load_data(str(folder), 32)
    cfg = resolve(RunConfig(data=str(folder), student="resnet10t", image_size=32, batch_size=8, epochs=10,
                            teacher_check=1))
    tr = loader(data.train, data.preprocess, 8, shuffle=True, seed=0)
    va = loader(data.val, data.preprocess, 64, shuffle=False)
    return data, cfg, tr, va


def test_teacher_score_is_the_prior_weighted_ensemble(setup):
    from edgekd.distill.engine import teacher_score
    from edgekd.distill.trainer import Teaching

    data, _, _, va = setup
    right, wrong = ColourTeacher("right", 1), ColourTeacher("wrong", -1)
    assert teacher_score(Teaching([right]), va, "top1") == pytest.approx(100.0)
    assert teacher_score(Teaching([wrong]), va, "top1") == pytest.approx(0.0)
    assert teacher_score(Teaching([right, wrong], torch.tensor([0.8, 0.2])), va, "top1") == pytest.approx(100.0)
    assert teacher_score(Teaching([right, wrong], torch.tensor([0.2, 0.8])), va, "top1") == pytest.approx(0.0)


def test_a_teacher_worse_than_labels_alone_gets_one_warning_and_the_student_is_untouched(setup, tmp_path, capsys):
    from edgekd.distill.engine import teacher_check
    from edgekd.distill.trainer import Teaching
    from edgekd.models.factory import create_timm

    data, cfg, tr, va = setup
    torch.manual_seed(0)
    student = create_timm("resnet10t", 2)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    rec = teacher_check(student, Teaching([ColourTeacher("wrong", -1)]), data, cfg, data.preprocess, tr, va,
                        tmp_path / "check")
    assert rec["teacher_val"] == 0.0 and rec["probe_epochs"] == 1 and rec["metric"] == "top1"
    assert rec["probe_val"] > 0.0 and rec["teacher_better"] is False  # one epoch of labels beats an always-wrong one
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the probe trained a copy
    out = [line for line in "".join(capsys.readouterr()).splitlines() if "teacher check:" in line]
    assert len(out) == 1 and out[0].startswith("warning: teacher check: wrong scores 0.00 val top-1, no better than")
    assert "labels-only resnet10t after only 1 epoch (" in out[0] and "alpha 0.9" in out[0]


def test_a_better_teacher_passes_without_a_warning(setup, tmp_path, capsys, monkeypatch):
    from edgekd.distill import engine
    from edgekd.distill.trainer import Teaching, TrainResult
    from edgekd.models.factory import create_timm

    data, cfg, tr, va = setup
    seen = {}

    def fake_fit(model, train_dl, val_dl, loss_fn, settings, workdir, teaching=None, desc=""):
        seen.update(losses=loss_fn.names, epochs=settings.epochs, desc=desc, teachers=len(teaching.teachers))
        return TrainResult(55.0, 1, settings.select_metric)

    monkeypatch.setattr(engine, "fit", fake_fit)
    rec = engine.teacher_check(create_timm("resnet10t", 2), Teaching([ColourTeacher("right", 1)]), data, cfg,
                               data.preprocess, tr, va, tmp_path / "check")
    assert rec["teacher_better"] is True and rec["teacher_val"] == 100.0 and rec["probe_val"] == 55.0
    assert seen == {"losses": ["ce"], "epochs": 1, "desc": "labels-only probe resnet10t", "teachers": 0}
    out = "".join(capsys.readouterr())
    assert "warning" not in out and "teacher check: right scores 100.00 val top-1, above a labels-only" in out


def test_defaults_a_tenth_of_the_epochs_on_a_users_folder_and_off_for_the_demo(tmp_path):
    d = str(tmp_path)
    assert resolve(RunConfig(data=d, epochs=20)).teacher_check == 2
    assert resolve(RunConfig(data=d, epochs=60)).teacher_check == 3
    assert resolve(RunConfig(data=d, epochs=9)).teacher_check == 0
    assert resolve(RunConfig(data=d, epochs=9, teacher_check=2)).teacher_check == 2
    assert resolve(RunConfig(data="builtin:shapes10", epochs=30)).teacher_check == 0
    staged = RunConfig(data=d, epochs=5, stages=[{"epochs": 10, "losses": [{"name": "ce"}]},
                                                 {"epochs": 20, "losses": [{"name": "kd"}]}])
    assert resolve(staged).teacher_check == 3


def test_distill_student_runs_the_check_only_with_teachers_and_not_under_qad(monkeypatch, setup, tmp_path):
    from edgekd.distill import engine
    from edgekd.distill.trainer import TrainResult
    from edgekd.models.factory import create_timm

    data, cfg, _, _ = setup
    calls = []
    monkeypatch.setattr(engine, "teacher_check", lambda *a, **k: calls.append(1) or {"teacher_better": True})
    monkeypatch.setattr(engine, "fit", lambda *a, **k: TrainResult(1.0, 1, "top1"))
    ce = cfg.model_copy(update={"loss": "ce"})
    engine.distill_student(create_timm("resnet10t", 2), data, ce, [], tmp_path / "s")
    assert calls == []  # no teacher, nothing to check
    monkeypatch.setattr(engine, "load_teachers", lambda *a, **k: [ColourTeacher("right", 1)])
    card = {"kind": "torch", "arch": "right", "view": {"size": [32, 32]}, "classes": data.classes}
    monkeypatch.setattr(engine, "check_schedule", lambda *a, **k: None)
    monkeypatch.setattr(engine, "cache_logits", lambda *a, **k: None)
    check: dict = {}
    engine.distill_student(create_timm("resnet10t", 2), data, cfg, [card], tmp_path / "k", check=check)
    assert calls == [1] and check == {"teacher_better": True}
    engine.distill_student(create_timm("resnet10t", 2), data, cfg, [card], tmp_path / "q", tweak={"freeze_bn": True})
    assert calls == [1]  # QAD's own stage does not check again


def test_report_md_states_the_check():
    from edgekd.bundle import _teacher_check

    rec = {"teachers": "mobilevit_s", "teacher_val": 64.0, "probe_val": 70.83, "probe_epochs": 2, "metric": "top1",
           "teacher_better": False}
    assert _teacher_check(rec) == ("Teacher check: mobilevit_s scored 64.00 validation top1, **not better** than a "
                                   "labels-only student after 2 epochs (70.83).\n\n")
    assert "scored 99.00 validation top1, better than" in _teacher_check({**rec, "teacher_val": 99.0,
                                                                         "teacher_better": True})
    assert _teacher_check(None) == "" and _teacher_check({}) == ""


def test_teacher_score_of_a_segmentation_teacher_reads_the_masks_at_the_view_size(tmp_path):
    """Segmentation (the CrackForest benchmark failed here): the masks are files at their native size (96 x 64),
    the view is smaller; the teacher is scored against the masks the loader yields, pixel by pixel."""
    import numpy as np

    from edgekd.data import load_data
    from edgekd.data.torchdata import loader
    from edgekd.distill.engine import teacher_score
    from edgekd.distill.trainer import Teaching

    from .segdata import make_seg_folder

    data = load_data(str(make_seg_folder(tmp_path / "seg", n=24)), 32, 0.25, task="segment")
    va = loader(data.val, data.preprocess, 4, shuffle=False)

    def background(x):  # every pixel "background": IoU of background = its pixel share, crack IoU 0
        return torch.stack([torch.ones_like(x[:, 0]), torch.zeros_like(x[:, 0])], 1) * 5

    batches = [(x, y.numpy()) for x, y, *_ in va]
    masks = np.concatenate([y for _, y in batches])
    assert masks.shape[1:] == tuple(batches[0][0].shape[2:]) != (64, 96) and 0 < masks.mean() < 1
    expected = 100 * (masks == 0).mean() / 2
    assert teacher_score(Teaching([background]), va, "miou") == pytest.approx(expected)
