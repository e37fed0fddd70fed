"""Accuracy under ImageNet-C corruptions (issue 20): the corruptions themselves, the scoring, the CLI's bad inputs,
the recipe key, the Corrupt training augmentation and the compress stage."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd import robustness as rb
from edgekd.errors import ConfigError


def _images(n: int = 4, side: int = 48) -> np.ndarray:
    """Gradients with a red block and mild noise: natural enough that blur and JPEG change them."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        y, x = np.mgrid[0:side, 0:side]
        a = np.stack([x * 5, y * 5, (x + y) * 2.5], -1).astype(np.float32)
        a[10 + k:30, 12:28 + k] = [220, 40, 40]
        out.append((a + rng.normal(0, 5, a.shape)).clip(0, 255).astype(np.uint8))
    return np.stack(out)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255 ** 2 / mse)


@pytest.mark.parametrize("name", rb.DEFAULT)
def test_a_corruption_is_deterministic_per_image_corruption_and_severity(name):
    img = _images(1)[0]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = rb.corrupt(img, name, 3, rb.image_seed(img, name, 3))
    b = rb.corrupt(img.copy(), name, 3, rb.image_seed(img.copy(), name, 3))
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's global RNG is left as it was
    # another severity, corruption or seed is another image
    assert not np.array_equal(a, rb.corrupt(img, name, 4, rb.image_seed(img, name, 4)))
    other = next(n for n in rb.DEFAULT if n != name)
    assert not np.array_equal(a, rb.corrupt(img, other, 3, rb.image_seed(img, other, 3)))
    if name in ("gaussian_noise", "motion_blur", "fog"):  # the random ones
        assert not np.array_equal(a, rb.corrupt(img, name, 3, rb.image_seed(img, name, 3, seed=1)))


def test_image_seed_depends_on_pixels_not_on_position():
    ims = _images(3)
    fwd = rb.corrupt_images(ims, "gaussian_noise", 2)
    rev = rb.corrupt_images(ims[::-1].copy(), "gaussian_noise", 2)
    assert np.array_equal(fwd, rev[::-1])
    assert rb.image_seed(ims[0], "fog", 1) != rb.image_seed(ims[1], "fog", 1)


@pytest.mark.parametrize("name", rb.DEFAULT)
def test_distortion_grows_with_severity(name):
    """Mean PSNR against the clean image falls at every step 1 -> 5; fog draws a new random plasma per severity,
    so on 4 small images only 1 -> 3 -> 5 is sure to fall."""
    ims = _images(4)
    psnr = {s: np.mean([_psnr(im, c) for im, c in zip(ims, rb.corrupt_images(ims, name, s), strict=True)])
            for s in rb.SEVERITIES}
    steps = (1, 3, 5) if name == "fog" else rb.SEVERITIES
    vals = [psnr[s] for s in steps]
    assert all(a > b for a, b in zip(vals, vals[1:], strict=False)), psnr
    assert psnr[5] < 30


def test_the_same_corrupted_image_reaches_every_model():
    ims, labels = _images(4), np.array([0, 1, 0, 1])
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": [], "c": []}

    def recorder(key):
        def fn(x):
            seen[key].append(x.copy())
            return np.zeros((len(x), 2), np.float32)
        return fn

    models = [(k, "stand-in", "fp32", recorder(k)) for k in seen]
    rb.score(ims, labels, _normalize, models, ["gaussian_noise", "motion_blur"], [2, 5])
    assert len(seen["a"]) == 1 + 2 * 2
    for xa, xb, xc in zip(seen["a"], seen["b"], seen["c"], strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(xa, xc)
    # call 0 is the clean batch, call 2 motion-blurred at severity 2... in corruption-major order
    assert np.array_equal(seen["a"][0], np.stack([_normalize(im) for im in ims]))
    want = np.stack([_normalize(im) for im in rb.corrupt_images(ims, "motion_blur", 5)])
    assert np.array_equal(seen["a"][4], want)


def _normalize(im: np.ndarray) -> np.ndarray:
    return (im.astype(np.float32) / 255.0).transpose(2, 0, 1)


def test_scores_table_and_json_equal_a_hand_computation(tmp_path: Path):
    """Stand-in models whose answers are known: always class 1 (3 of 4 labels are 1), right only on the clean
    images, right only at severity 1 (the corrupted inputs recomputed here: the corruptions are deterministic)."""
    ims, labels = _images(4), np.array([0, 1, 1, 1])
    names, sevs = ["defocus_blur", "jpeg_compression"], [1, 3, 5]
    right, wrong = np.eye(2, dtype=np.float32)[labels], np.eye(2, dtype=np.float32)[1 - labels]
    clean = np.stack([_normalize(im) for im in ims])
    sev1 = [np.stack([_normalize(im) for im in rb.corrupt_images(ims, n, 1)]) for n in names]
    models = [
        ("always-1", "stand-in", "fp32", lambda x: np.tile([0.0, 1.0], (len(x), 1))),
        ("clean-only", "stand-in", "fp32", lambda x: right if np.array_equal(x, clean) else wrong),
        ("sev1-only", "stand-in", "int8", lambda x: right if any(np.array_equal(x, s) for s in sev1) else wrong),
    ]
    rep = rb.score(ims, labels, _normalize, models, names, sevs, seed=0)
    by = {m["model"]: m for m in rep["models"]}
    assert rep["samples"] == 4 and rep["corruptions"] == names and rep["severities"] == sevs
    assert by["always-1"]["clean"] == 75.0 and by["always-1"]["mca"] == 75.0 and by["always-1"]["relative"] == 1.0
    assert by["always-1"]["accuracy"] == {n: {"1": 75.0, "3": 75.0, "5": 75.0} for n in names}
    assert (by["clean-only"]["clean"], by["clean-only"]["mca"], by["clean-only"]["relative"]) == (100.0, 0.0, 0.0)
    s1 = by["sev1-only"]
    assert s1["clean"] == 0.0 and s1["relative"] is None
    assert s1["accuracy"] == {n: {"1": 100.0, "3": 0.0, "5": 0.0} for n in names}
    assert s1["severity_mean"] == {"1": 100.0, "3": 0.0, "5": 0.0}
    assert s1["corruption_mean"] == pytest.approx({n: 100 / 3 for n in names})
    assert s1["mca"] == pytest.approx(100 / 3)
    table = rb.markdown(rep).splitlines()
    assert table[0] == "| model | runtime | clean % | defocus % | JPEG % | mCA % | mCA / clean |"
    assert table[2] == "| always-1 | stand-in fp32 | 75.00 | 75.00 | 75.00 | 75.00 | 1.000 |"
    assert table[3] == "| clean-only | stand-in fp32 | 100.00 | 0.00 | 0.00 | 0.00 | 0.000 |"
    assert table[4] == "| sev1-only | stand-in int8 | 0.00 | 33.33 | 33.33 | 33.33 | - |"
    paths = rb.write(rep, tmp_path / "r.json", tmp_path / "r.png")
    assert json.loads(Path(paths["json"]).read_text())["models"][2]["accuracy"]["jpeg_compression"]["1"] == 100.0
    assert Path(paths["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("spec,want", [(None, list(rb.DEFAULT)), ("fog, contrast", ["fog", "contrast"]),
                                       ("all", list(rb.NAMES)), (["fog", "fog"], ["fog"])])
def test_corruption_names_parse(spec, want):
    assert rb.parse_names(spec) == want


@pytest.mark.parametrize("spec,want", [(None, [1, 2, 3, 4, 5]), ("5,1,3", [1, 3, 5]), ("2-4", [2, 3, 4]),
                                       ([3], [3])])
def test_severities_parse(spec, want):
    assert rb.parse_severities(spec) == want


@pytest.mark.parametrize("spec", ["0", "6", "1,6", "x", "", "-1"])
def test_bad_severities_are_config_errors(spec):
    with pytest.raises(ConfigError, match="--severities"):
        rb.parse_severities(spec)


def test_small_images_and_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="at least 32x32"):
        rb.corrupt(np.zeros((16, 16, 3), np.uint8), "fog", 1, 0)
    with pytest.raises(ConfigError, match="unknown corruption 'smoke'"):
        rb.parse_names("fog,smoke")


def _edgekd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True)


@pytest.mark.parametrize("extra,match", [
    (["--corruption-set", "gaussian_noise,smoke"], "--corruption-set: unknown corruption 'smoke'"),
    (["--severities", "0"], "--severities: severity 0 is out of range"),
    (["--severities", "1,6"], "--severities: severity 6 is out of range"),
    (["--models", "teacher"], "not an edgekd run folder"),
])
def test_verify_corruptions_bad_input_is_one_line_exit_2(tmp_path: Path, extra, match):
    res = _edgekd("verify", str(tmp_path), "--corruptions", *extra)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgekd: error")]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and match in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_corruption_options_without_corruptions_are_refused():
    res = _edgekd("verify", "m.onnx", "--severities", "1")
    assert res.returncode == 2 and "add --corruptions" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("value,match", [({"corruptions": ["smoke"]}, "robustness.RobustnessSpec.corruptions"),
                                         ({"severities": [0, 1]}, "severity 0 is out of range"),
                                         ({"samples": 0}, "greater than 0")])
def test_recipe_robustness_is_validated(tmp_path: Path, value, match):
    import yaml

    from edgekd.config import make_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"robustness": value}))
    with pytest.raises(ConfigError, match=match):
        make_config(recipe)
    assert make_config(None, robustness=True).robustness is True
    assert make_config(None).robustness is False


def _augmented(augment, seed: int, epoch: int, index: int):
    from edgekd.data import ImageSet
    from edgekd.data.torchdata import TorchImageSet
    from edgekd.preprocess import Preprocess

    ims = _images(3, 32)
    ds = TorchImageSet(ImageSet(labels=np.array([0, 1, 0]), images=ims), Preprocess((32, 32)), augment, seed=seed)
    return ds[(epoch, index)][0]


def test_corrupt_augmentation_follows_the_loaders_seeding():
    import torch

    aug = [{"name": "Corrupt", "names": ["gaussian_noise", "defocus_blur", "fog"], "severity": [1, 3], "p": 1.0}]
    a = _augmented(aug, 0, 1, 2)
    assert torch.equal(a, _augmented(aug, 0, 1, 2))  # same (seed, epoch, index): same sample
    plain = _augmented("none", 0, 1, 2)
    assert not torch.equal(a, plain)  # p=1: always corrupted
    others = [_augmented(aug, s, e, 2) for s, e in ((1, 1), (0, 2), (0, 3), (0, 4))]
    assert any(not torch.equal(a, o) for o in others)  # another seed or epoch draws another corruption
    never = [{"name": "Corrupt", "p": 0.0}]
    assert torch.equal(_augmented(never, 0, 1, 2), plain)


def test_corrupt_augmentation_bad_entries_are_config_errors():
    from edgekd.data import augment

    for entry, match in (({"names": ["smoke"]}, "unknown corruption 'smoke'"), ({"severity": [0, 3]}, "severity"),
                         ({"p": 2}, "probability"), ({"level": 3}, "it takes names, severity and p")):
        with pytest.raises(ConfigError, match=match):
            augment.check([{"name": "Corrupt", **entry}], (64, 64), "classify")


def test_compress_robustness_stage_and_verify_corruptions(tiny_run, tmp_path: Path):
    """The tiny run rerun with `robustness:` in its recipe: only robustness and bundle run; the JSON, the plot and
    report.md's section appear. Then `verify RUN --corruptions` scores the same run from the command line."""
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run["out"], run)
    recipe = tmp_path / "tiny.yaml"
    cmd = tiny_run["cmd"]
    recipe.write_text(Path(cmd[cmd.index("--recipe") + 1]).read_text()
                      + "robustness: {corruptions: [gaussian_noise], severities: [1, 5], samples: 12}\n")
    res = subprocess.run([*cmd[:cmd.index("--recipe") + 1], str(recipe), "--out", str(run)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in ("teacher", "distill", "export", "quantize", "verify", "bench"):
        assert f"{stage}: reused" in res.stderr, res.stderr[-3000:]
    rep = json.loads((run / "robustness.json").read_text())
    assert rep["samples"] == 12 and rep["corruptions"] == ["gaussian_noise"] and rep["severities"] == [1, 5]
    keys = [m["model"] for m in rep["models"]]
    assert keys[0].startswith("teacher") and any("int8" in k for k in keys) and any("fp32" in k for k in keys)
    assert (run / "robustness.png").is_file()
    md = (run / "bundle" / "report.md").read_text()
    assert "## Robustness under corrupted inputs" in md and rb.markdown(rep) in md
    cli = _edgekd("verify", str(run), "--corruptions", "--corruption-set", "contrast", "--severities", "2",
                  "--samples", "8", "--models", "teacher,onnx-int8", "--report", str(tmp_path / "v.json"))
    assert cli.returncode == 0, cli.stderr[-3000:]
    out = json.loads((tmp_path / "v.json").read_text())
    assert [m["precision"] for m in out["models"]] == ["fp32", "int8"] and out["corruptions"] == ["contrast"]
    assert rb.markdown(out) in cli.stdout and (run / "robustness.png").is_file()


def _fake_run(image_side: int, student: int, teacher: int):
    """Just what read_preprocess needs of a finished run: the data's sizes and the teacher cards' views."""
    from types import SimpleNamespace

    from edgekd.preprocess import Preprocess

    img = np.zeros((image_side, image_side, 3), np.uint8)
    data = SimpleNamespace(task="classify", preprocess=Preprocess((student, student)),
                           train=SimpleNamespace(image=lambda i: img))
    card = {"view": {"size": [teacher, teacher], "mean": [0.5] * 3, "std": [0.25] * 3}}
    return SimpleNamespace(data=data, results={"teacher": SimpleNamespace(teachers=[card])})


@pytest.mark.parametrize("image_side, student, teacher, want", [
    (32, 64, 32, 32),     # CIFAR: the 64 px student's upsampled view is not where the corruption goes
    (375, 64, 224, 224),  # photos, a 224 px teacher: read (and corrupted) at 224, the student downsized from it
    (375, 224, 224, 224),  # one size: unchanged
])
def test_corruptions_apply_at_the_distill_read_size(image_side, student, teacher, want):
    pre = rb.read_preprocess(_fake_run(image_side, student, teacher))
    assert pre.size == (want, want) and pre.mean == _fake_run(1, student, 1).data.preprocess.mean


def test_a_model_of_another_size_gets_the_corrupted_batch_resized_as_in_training():
    import torch

    from edgekd.distill.teachers import View, to_view

    src, dst = View((32, 32), (0.5,) * 3, (0.25,) * 3), View((64, 64), (0.4,) * 3, (0.2,) * 3)
    got = []

    def model(x):
        got.append(x)
        return np.zeros((len(x), 2), np.float32)

    x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    assert rb._resized(model, src, src) is model  # its own size: fed as is
    rb._resized(model, src, dst)(x)
    assert got[0].shape == (3, 3, 64, 64)
    assert np.allclose(got[0], to_view(torch.from_numpy(x), src, dst).numpy())
