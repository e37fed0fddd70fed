"""The distillation engine: resume after a kill, ONNX and multi-teacher runs, progressive stages, and the
one-line errors for bad recipes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from .conftest import ROOT, SHARED_DATA

TINY = """
data: builtin:shapes10
image_size: 32
student: cifar_resnet20
epochs: 1
batch_size: 32
max_train_samples: 96
max_eval_samples: 48
"""


def edgekd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(res, code: int, text: str) -> None:
    assert res.returncode == code, res.stderr[-2000:]
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error:")]
    assert len(err) == 1 and text in err[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def torch_teacher(tmp_path_factory):
    """A local edgekd:cifar_resnet20 teacher checkpoint (random weights, 10 classes) as a state_dict file."""
    from edgekd.models.factory import create_timm

    p = tmp_path_factory.mktemp("teacher") / "r20.pt"
    torch.manual_seed(0)
    torch.save({"state_dict": create_timm("cifar_resnet20", 10).state_dict()}, p)
    return p


def onnx_classifier(path, classes: int, side: int = 32):
    from edgekd.export.onnx import export_torch
    from edgekd.models.factory import create_timm

    export_torch(create_timm("cifar_resnet20", classes).eval(), torch.zeros(1, 3, side, side), path, {})
    return path


def tiny_data():
    from edgekd.data import load_data

    return load_data("builtin:shapes10", 32, max_train=64, max_eval=32)


def test_fit_resumes_after_a_kill_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    from edgekd.data.torchdata import loader
    from edgekd.distill import trainer
    from edgekd.distill.catalog import build_loss
    from edgekd.models.factory import create_timm

    data = tiny_data()
    settings = trainer.TrainSettings(epochs=2, lr=1e-2, weight_decay=0.0, seed=3)

    def run(workdir):
        torch.manual_seed(0)
        model = create_timm("cifar_resnet20", 10)
        tr = loader(data.train, data.preprocess, 16, shuffle=True, augment=True, seed=3)
        va = loader(data.val, data.preprocess, 64, shuffle=False)
        return model, trainer.fit(model, tr, va, build_loss("ce"), settings, workdir)

    ref_model, ref = run(tmp_path / "ref")
    real_predict, calls = trainer.predict, {"n": 0}

    def killed(*a, **k):  # the process dies during the second epoch's validation
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_predict(*a, **k)

    monkeypatch.setattr(trainer, "predict", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed")
    assert (tmp_path / "killed" / "last.pt").is_file() and not (tmp_path / "killed" / "done.json").exists()
    monkeypatch.setattr(trainer, "predict", real_predict)
    model, res = run(tmp_path / "killed")
    assert [h["epoch"] for h in res.history] == [1, 2]
    assert res.history[1]["loss"] == pytest.approx(ref.history[1]["loss"], rel=1e-4)
    for (k, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), k


def test_view_bank_augmentation_is_deterministic_per_view():
    from edgekd.data.torchdata import TorchImageSet

    data = tiny_data()
    ds = TorchImageSet(data.train, data.preprocess, fixed_view=3, views=8)
    a, b = ds[0][0], ds[0][0]
    assert torch.equal(a, b) and ds[0][3] == 3
    plain = TorchImageSet(data.train, data.preprocess)[0][0]
    assert torch.equal(TorchImageSet(data.train, data.preprocess, fixed_view=0, views=8)[0][0], plain)  # view 0
    views = [TorchImageSet(data.train, data.preprocess, fixed_view=v, views=8)[0][0] for v in range(1, 8)]
    assert sum(not torch.equal(v, plain) for v in views) >= 5  # the other views are augmented
    assert len({v.numpy().tobytes() for v in views}) >= 5  # and differ from each other
    # training draws a view per (epoch, sample) from the bank: the image is exactly that view's rendering
    train = TorchImageSet(data.train, data.preprocess, augment="light", views=8)
    for epoch in range(4):
        x, _, i, v = train[(epoch, 0)]
        assert 0 <= v < 8
        assert torch.equal(x, TorchImageSet(data.train, data.preprocess, augment="light", fixed_view=v,
                                            views=8)[0][0])


WORKERS_SCRIPT = """
import sys, torch
from edgekd.data import load_data
from edgekd.data.torchdata import loader
data = load_data("builtin:shapes10", 32, max_train=64, max_eval=32)
dl = loader(data.train, data.preprocess, 16, shuffle=True, augment="strong", seed=5, workers=int(sys.argv[1]))
dl.sampler.set_epoch(4)
torch.save(torch.cat([x for x, *_ in dl]), sys.argv[2])
"""


def test_augmentation_is_seeded_per_sample_not_per_worker(tmp_path):
    """The same (seed, epoch, index) gives the same augmented image in any process; another epoch another.

    The loaders run in their own processes: in the pytest process, forkserver workers started after an OpenVINO
    model had been compiled with 2 threads (test_deploy) were followed by a heap corruption (SIGSEGV in
    pymalloc) in a later test; not reproduced outside that sequence, cause not found (see Makefile)."""
    from edgekd.data.torchdata import TorchImageSet

    data = tiny_data()
    ds = TorchImageSet(data.train, data.preprocess, augment="strong", seed=5)
    assert torch.equal(ds[(2, 7)][0], ds[(2, 7)][0])
    assert not torch.equal(ds[(2, 7)][0], ds[(3, 7)][0])
    out = {}
    for workers in (0, 2):
        out[workers] = tmp_path / f"w{workers}.pt"
        res = subprocess.run([sys.executable, "-c", WORKERS_SCRIPT, str(workers), str(out[workers])],
                             capture_output=True, text=True, env={**os.environ, "EDGEKD_NUM_WORKERS": str(workers)})
        assert res.returncode == 0, res.stderr[-2000:]
    a, b = (torch.load(out[w], weights_only=True) for w in (0, 2))
    assert a.shape[0] == 64 and torch.equal(a, b)


def test_progressive_multi_teacher_run_with_features(tmp_path, torch_teacher):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY + f"""
teachers:
  - {{spec: "edgekd:cifar_resnet20", weights: {torch_teacher}}}
  - {{spec: "edgekd:cifar_resnet20", weights: {torch_teacher}, image_size: 48, weight: 0.5}}
features:
  - {{student: layer2, teacher: layer3, teacher_index: 0}}
  - {{student: layer3, teacher: layer2, teacher_index: 1}}
select_metric: macro_f1
stages:
  - name: align
    epochs: 1
    losses: [{{name: hint, weighting: entropy}}, {{name: attention, mode: masked, weight: 0.5}}]
  - name: joint
    epochs: 1
    lr: 0.001
    losses: [{{name: multi_teacher, temperature: 2}}, {{name: attention, mode: transfer}}, {{name: dkd, weight: 0.1}}]
""")
    res = edgekd("distill", "--recipe", recipe, "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    card = json.loads((tmp_path / "run" / "student" / "student.json").read_text())
    assert [s["stage"] for s in card["stages"]] == ["align", "joint"]
    assert set(card["stages"][0]["history"][0]["parts"]) == {"hint", "attention"}
    assert set(card["stages"][1]["history"][0]["parts"]) == {"multi_teacher", "attention", "dkd"}
    assert card["select_metric"] == "macro_f1" and len(card["per_class"]) == 10 and 0 <= card["test_macro_f1"] <= 100
    teachers = json.loads((tmp_path / "run" / "stages" / "teacher.json").read_text())["result"]["teachers"]
    assert [t["view"]["size"] for t in teachers] == [[32, 32], [48, 48]] and teachers[1]["weight"] == 0.5
    # rerun with --resume: every stage is reused, nothing trains again
    again = edgekd("distill", "--recipe", recipe, "--out", tmp_path / "run", "--resume")
    assert again.returncode == 0 and "epoch 1/1" not in again.stderr
    assert "export" not in again.stderr  # `distill` stops after its stage, reused or not


def test_onnx_teacher_distills_with_cached_logits(tmp_path):
    onnx = onnx_classifier(tmp_path / "t.onnx", 10)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY + f"teachers: [{{spec: 'onnx:{onnx}'}}]\nloss: dkd\naugment: true\nteacher_cache_views: 4\n")
    res = edgekd("distill", "--recipe", recipe, "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cache t.onnx view 4" in res.stderr
    teachers = json.loads((tmp_path / "run" / "stages" / "teacher.json").read_text())["result"]["teachers"]
    assert teachers[0]["kind"] == "onnx" and teachers[0]["view"]["size"] == [32, 32]


@pytest.mark.parametrize("extra, text", [
    ("loss: kdd\n", "unknown loss 'kdd'"),
    ("losses: [{name: kd, temprature: 2}]\n", "its parameters are: temperature, alpha"),
    ("teachers: [{spec: 'onnx:ONNX'}]\nlosses: [{name: hint}]\nfeatures: [{student: layer2, teacher: x}]\n",
     "is ONNX (logits only)"),
    ("teachers: [{spec: 'onnx:ONNX5'}]\n", "predicts 5 classes but the data has 10"),
    ("teachers: [{spec: 'edgekd:cifar_resnet20', weights: W}]\nlosses: [{name: hint}]\n"
     "features: [{student: layer9, teacher: layer3}]\n", "student cifar_resnet20 has no layer 'layer9'"),
    ("teachers: [{spec: 'edgekd:cifar_resnet20', weights: W}]\nlosses: [{name: hint}]\n"
     "features: [{student: layer2, teacher: layer3.99}]\n", "has no layer 'layer3.99'"),
    ("losses: [{name: hint}]\n", "need `features:`"),
    ("teachers: [{spec: 'timm:resnet18', weights: W, mean: [1, 2]}]\n", "teachers.0.mean"),
])
def test_bad_recipes_stop_with_one_clear_line(tmp_path, torch_teacher, extra, text):
    extra = extra.replace("ONNX5", str(onnx_classifier(tmp_path / "t5.onnx", 5)) if "ONNX5" in extra else "")
    extra = extra.replace("ONNX", str(onnx_classifier(tmp_path / "t.onnx", 10)) if "ONNX" in extra else "")
    extra = extra.replace("W", str(torch_teacher))
    (tmp_path / "r.yaml").write_text(TINY + extra)
    one_line_error(edgekd("distill", "--recipe", tmp_path / "r.yaml", "--out", tmp_path / "run"), 2, text)


def test_resume_without_a_run_is_refused(tmp_path):
    one_line_error(edgekd("distill", "--out", tmp_path / "nothing", "--resume"), 2, "holds no edgekd run")


def test_hump_kd_recipe_names_real_layers_of_its_models():
    """The shipped HumP-KD recipe: every layer it names exists in Swin-Tiny, ViT-Base and MobileViT-S, and the
    shapes line up as its comments say (hierarchical pairs, tokens -> maps)."""
    from edgekd.config import make_config
    from edgekd.distill.features import FeatureTap
    from edgekd.models.factory import create_timm

    cfg = make_config(ROOT / "models" / "hump-kd.yaml")
    assert [t.spec for t in cfg.teachers] == ["timm:swin_tiny_patch4_window7_224", "timm:vit_base_patch16_224"]
    assert [s.name for s in cfg.stages] == ["align", "joint", "logits"]
    student = create_timm(cfg.student, 2)
    tap = FeatureTap(student, [p.student for p in cfg.features], [p.student_layout for p in cfg.features], "s")
    student.eval()(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
    assert [tuple(m.shape[1:]) for m in tap.maps()] == [(128, 16, 16), (160, 8, 8)]
    for k, spec in enumerate(cfg.teachers):
        model = create_timm(spec.spec.split(":")[1], 2).eval()
        pairs = [p for p in cfg.features if p.teacher_index == k]
        t = FeatureTap(model, [p.teacher for p in pairs], [p.teacher_layout for p in pairs], spec.spec)
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
        assert [tuple(m.shape[1:]) for m in t.maps()] == ([(384, 14, 14)] if k == 0 else [(768, 14, 14)])


@pytest.mark.slow
def test_hump_kd_recipe_runs_with_local_teacher_weights(tmp_path):
    """Swin-Tiny + ViT-Base (random weights saved locally, as a user's fine-tuned files would be) -> MobileViT-S
    through all three stages, on a handful of images."""
    import yaml
    from safetensors.torch import save_file

    from edgekd.models.factory import create_timm

    raw = yaml.safe_load((ROOT / "models" / "hump-kd.yaml").read_text())
    for t in raw["teachers"]:
        name = t["spec"].split(":")[1]
        t["weights"] = str(tmp_path / f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in create_timm(name, 10).state_dict().items()}, t["weights"])
    raw.update(data="builtin:shapes10", max_train_samples=8, max_eval_samples=4, batch_size=4, image_size=64)
    for st in raw["stages"]:
        st["epochs"] = 1
    raw["features"][0]["student"], raw["features"][1]["student"] = "stages.2", "stages.3"  # 64 px input
    (tmp_path / "hump.yaml").write_text(yaml.safe_dump(raw))
    res = edgekd("distill", "--recipe", tmp_path / "hump.yaml", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    card = json.loads((tmp_path / "run" / "student" / "student.json").read_text())
    assert [s["stage"] for s in card["stages"]] == ["align", "joint", "logits"]
    assert all(np.isfinite(s["history"][0]["loss"]) for s in card["stages"])


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "teachers" / "cifar10_resnet56.onnx").is_file(), reason="../shared absent")
def test_cifar10_resnet56_onnx_teacher_keeps_its_accuracy_in_its_own_view(tmp_path):
    """The real teacher runs as a black box at 32 px while the student trains at 64 px; its measured accuracy
    must stay that of the original model (83.2% on the full test set)."""
    res = edgekd("distill", "--recipe", ROOT / "models" / "cifar10-resnet56.yaml", "--max-train-samples", 128,
                 "--max-eval-samples", 1000, "--epochs", 1, "--out", tmp_path / "run", cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    t = json.loads((tmp_path / "run" / "stages" / "teacher.json").read_text())["result"]["teachers"][0]
    assert t["kind"] == "onnx" and t["test_top1"] > 78


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "teachers" / "cifar10_resnet56.th").is_file(), reason="../shared absent")
def test_cifar10_resnet56_checkpoint_loads_as_edgekd_arch_and_matches_its_onnx():
    """The PyTorch checkpoint (weights_only) is the same function as the ONNX file: a feature-capable teacher."""
    import onnxruntime as ort

    from edgekd.models.factory import create_timm, load_weights, read_state_dict

    model = create_timm("cifar_resnet56", 10).eval()
    assert load_weights(model, read_state_dict(SHARED_DATA / "teachers" / "cifar10_resnet56.th"), "th")
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(SHARED_DATA / "teachers" / "cifar10_resnet56.onnx"))
    with torch.no_grad():
        assert np.abs(model(torch.from_numpy(x)).numpy() - sess.run(None, {"input": x})[0]).max() < 1e-3


def test_two_process_data_parallel_distillation_on_cpu(tmp_path):
    """The same command under torchrun (2 CPU processes, gloo): rank 0 runs the teacher stage and writes,
    both ranks train their shard of each batch in DDP."""
    torchrun = ROOT / ".venv" / "bin" / "torchrun"
    if not torchrun.is_file():
        pytest.skip("torchrun not in .venv")
    (tmp_path / "r.yaml").write_text(TINY + "lr: 0.002\n")
    res = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "edgekd", "distill", "--recipe",
                          str(tmp_path / "r.yaml"), "--epochs", "2", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("distill cifar_resnet20 epoch 2:") == 2  # both ranks trained
    assert res.stdout.count("student:") == 1  # rank 0 reports
    card = json.loads((tmp_path / "run" / "student" / "student.json").read_text())
    assert len(card["stages"][0]["history"]) == 2


@pytest.mark.slow
def test_compress_with_an_onnx_teacher_end_to_end(tmp_path, relaxed_target):
    """Every later stage (verify, bench, bundle) copes with a black-box teacher."""
    onnx = onnx_classifier(tmp_path / "t.onnx", 10)
    (tmp_path / "r.yaml").write_text(TINY + "calib_samples: 16\nverify_samples: 32\nbench_iters: 5\n"
                                            "bench_warmup: 1\n")
    res = edgekd("compress", "--recipe", tmp_path / "r.yaml", "--teacher", f"onnx:{onnx}", "--target",
                 relaxed_target, "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "bundle" / "manifest.json").read_text())
    assert manifest["teacher"]["arch"] == "t.onnx"
    # the default CPU policy: the fastest passing model by alternating passes, and why, in manifest and output
    deploy = manifest["deploy"]
    assert deploy["policy"] == "fastest" and deploy["statement"] in res.stdout
    assert "alternating passes" in deploy["method"]
    assert manifest["models"][0]["role"] == "deploy" and manifest["recommended"] == manifest["models"][0]["file"]
    assert deploy["p50_ms"][deploy["model"]] <= min(deploy["p50_ms"].values()) * 1.10
    bench = json.loads((tmp_path / "run" / "stages" / "bench.json").read_text())["result"]
    assert bench[0]["model"] == "teacher-onnxruntime"


def test_a_changed_loss_retrains_instead_of_reusing_old_checkpoints(tmp_path, torch_teacher):
    base = TINY + f"teachers: [{{spec: 'edgekd:cifar_resnet20', weights: {torch_teacher}}}]\n"
    (tmp_path / "ce.yaml").write_text(base + "loss: ce\n")
    (tmp_path / "kd.yaml").write_text(base + "loss: kd\n")
    for name in ("ce", "kd"):
        res = edgekd("distill", "--recipe", tmp_path / f"{name}.yaml", "--out", tmp_path / "run")
        assert res.returncode == 0, res.stderr[-3000:]
        card = json.loads((tmp_path / "run" / "student" / "student.json").read_text())
        assert set(card["stages"][0]["history"][0]["parts"]) == {name}
        assert "finished earlier" not in res.stderr


@pytest.mark.slow
def test_kill_9_mid_distillation_then_rerun_resumes_and_finishes(tmp_path):
    """A real `edgekd distill` process is killed (SIGKILL) once an epoch checkpoint exists; the same command
    then resumes after that epoch instead of starting over, and finishes every epoch."""
    import signal
    import time

    (tmp_path / "r.yaml").write_text(TINY.replace("epochs: 1", "epochs: 6").replace("max_train_samples: 96",
                                                                                    "max_train_samples: 320"))
    cmd = [sys.executable, "-m", "edgekd", "distill", "--recipe", str(tmp_path / "r.yaml"), "--out",
           str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "run" / "student").glob("train-*/*/last.pt")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = list((tmp_path / "run" / "student").glob("train-*/*/last.pt"))
    assert last, "no epoch checkpoint appeared before the deadline"
    done_epoch = torch.load(last[0], weights_only=True)["epoch"] + 1
    assert done_epoch < 6, "the run finished before it could be killed"
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "teacher: reused" in res.stderr and "resuming after epoch" in res.stderr
    card = json.loads((tmp_path / "run" / "student" / "student.json").read_text())
    assert [h["epoch"] for h in card["stages"][0]["history"]] == [1, 2, 3, 4, 5, 6]


def _onnx_card(path, data, side: int = 32) -> dict:
    from edgekd.distill.teachers import View
    from edgekd.preprocess import Preprocess

    view = View.of(Preprocess((side, side), data.preprocess.mean, data.preprocess.std))
    return {"kind": "onnx", "arch": path.name, "path": str(path), "view": view.to_dict(), "classes": data.classes}


def test_teacher_precision_routes_onnx_teachers_to_openvino(tmp_path):
    """fp32 (unset): onnxruntime; bf16 / int8: OpenVINO (int8 calibrated on training images), same output shape;
    bf16 close to fp32. A PyTorch teacher cannot be int8 (one config error line)."""
    from edgekd.distill.engine import load_teachers
    from edgekd.distill.teachers import OnnxTeacher, OpenVinoTeacher, TorchTeacher
    from edgekd.errors import ConfigError

    data = tiny_data()
    card = _onnx_card(onnx_classifier(tmp_path / "t.onnx", 10), data)
    x = torch.from_numpy(np.stack([data.preprocess(data.train.image(i)) for i in range(16)]))
    (fp32,), (bf16,), (int8,) = (load_teachers([card], data, precision=p, calib_samples=32)
                                 for p in (None, "bf16", "int8"))
    assert isinstance(fp32, OnnxTeacher) and isinstance(bf16, OpenVinoTeacher) and isinstance(int8, OpenVinoTeacher)
    ref, b, q = fp32(x), bf16(x), int8(x)
    assert ref.shape == b.shape == q.shape == (16, 10) and q.dtype == torch.float32
    assert torch.allclose(b, ref, atol=0.05 * float(ref.abs().max()) + 1e-3)
    torch_card = {**card, "kind": "torch"}
    with pytest.raises(ConfigError, match="int8 covers ONNX teachers"):
        load_teachers([torch_card], data, precision="int8")
    t = TorchTeacher("m", torch.nn.Linear(4, 2), fp32.view, fp32.view, bf16=True)
    assert t.bf16 and t(torch.zeros(3, 4)).dtype == torch.float32


@pytest.mark.skipif(not (SHARED_DATA / "teachers" / "cifar10_resnet56.onnx").is_file(), reason="shared data absent")
def test_a_real_teacher_keeps_its_answers_at_bf16_and_int8():
    """The pretrained CIFAR-10 ResNet-56 on 200 real test images: bf16 and int8 (calibrated on 100 training images)
    agree with fp32 onnxruntime on >= 97 % and >= 95 % of the top-1 answers."""
    from edgekd.data import load_data
    from edgekd.distill.engine import load_teachers

    data = load_data(str(SHARED_DATA / "cifar10-jpg"), 32, max_train=100, max_eval=200)
    card = _onnx_card(SHARED_DATA / "teachers" / "cifar10_resnet56.onnx", data)
    test = data.test.head(200)
    x = torch.from_numpy(np.stack([data.preprocess(test.image(i)) for i in range(len(test))]))
    ref = load_teachers([card], data)[0](x).argmax(1)
    for precision, least in (("bf16", 0.97), ("int8", 0.95)):
        got = load_teachers([card], data, precision=precision, calib_samples=100)[0](x).argmax(1)
        assert float((got == ref).float().mean()) >= least, precision


def test_teacher_precision_enters_the_distill_and_quantize_hashes_only_when_set():
    from edgekd.config import RunConfig, resolve
    from edgekd.stages import STAGE

    for stage in ("distill", "quantize"):
        assert "teacher_precision" not in STAGE[stage].options(resolve(RunConfig()))  # older runs keep their hashes
        assert STAGE[stage].options(resolve(RunConfig(teacher_precision="int8")))["teacher_precision"] == "int8"
    assert "teacher_precision" not in STAGE["teacher"].options(resolve(RunConfig(teacher_precision="int8")))
