"""Segmentation end to end: image/mask folders, U-Net students, dense losses through the trainer, and the whole
pipeline (QAD, verify on masks, bench, bundle, the PNG-writing runner) on cpu-x86 and the FPGA target."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.data import load_data
from edgekd.data.segfolder import seg_size
from edgekd.data.torchdata import TorchImageSet
from edgekd.errors import DataError, ModelError
from edgekd.models.factory import create_timm

from .segdata import make_seg_folder

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "crackforest"


@pytest.fixture(scope="module")
def seg_dir(tmp_path_factory):
    return make_seg_folder(tmp_path_factory.mktemp("seg") / "lines", n=40)


def test_folder_split_binary_masks_and_size(seg_dir):
    d = load_data(str(seg_dir), None, 0.1, 0, task="segment")
    assert (len(d.train), len(d.val), len(d.test)) == (32, 4, 4)
    assert d.classes == ["background", "foreground"] and d.task == "segment"
    assert d.preprocess.size == (64, 96)  # 96x64 images: already multiples of 32
    names = {p.name for s in (d.train, d.val, d.test) for p in s.paths}
    assert len(names) == 40  # disjoint splits covering every pair
    m = d.train.mask(0)
    assert set(np.unique(m)) <= {0, 1} and m.any()  # 0/255 became class indices
    again = load_data(str(seg_dir), None, 0.1, 0, task="segment")
    assert [p.name for p in again.test.paths] == [p.name for p in d.test.paths]  # a fixed split



def test_split_seed_fixes_the_split_across_training_seeds(seg_dir):
    from edgekd.config import make_config
    from edgekd.pipeline import Run
    from edgekd.targets import load_target

    def test_names(**kw):
        cfg = make_config(None, task="segment", data=str(seg_dir), val_fraction=0.1, **kw)
        return [p.name for p in Run(cfg, load_target("cpu-x86"), Path(".")).data.test.paths]

    assert test_names(seed=3, split_seed=0) == test_names(seed=0)  # training seed varies, the split does not
    assert test_names(seed=3) != test_names(seed=0)  # without split_seed the seed draws the split too

def test_index_masks_with_classes_txt(tmp_path):
    root = make_seg_folder(tmp_path / "multi", n=12, binary=False)
    d = load_data(str(root), None, 0.2, 0, task="segment")
    assert d.classes == ["class0", "class1", "class2"]
    (root / "classes.txt").write_text("road\ncrack\npothole\n")
    d = load_data(str(root), None, 0.2, 0, task="segment")
    assert d.classes == ["road", "crack", "pothole"]
    assert set(np.unique(np.concatenate([d.train.mask(i).ravel() for i in range(len(d.train))]))) == {0, 1, 2}


def test_seg_size_keeps_aspect_and_multiples_of_32():
    img = np.zeros((320, 480, 3), np.uint8)
    assert seg_size(img, None) == (320, 480)
    assert seg_size(img, 256) == (160, 256)
    assert seg_size(np.zeros((1000, 700, 3), np.uint8), None) == (512, 352)


def test_joint_augmentation_moves_image_and_mask_together(seg_dir):
    """The mask is drawn where the image is dark: after random flips and crops that must still hold."""
    d = load_data(str(seg_dir), None, 0.1, 0, task="segment")
    ds, plain_ds = TorchImageSet(d.train, d.preprocess, augment=True, seed=3), TorchImageSet(d.train, d.preprocess)

    def fit(x, y):  # share of pixels where "dark" and "mask says line" agree
        return float(((x.mean(0) < -0.5) == (y == 1)).float().mean())

    changed = 0
    for i in range(12):
        x, y, _, _ = ds[i]
        x0, y0, _, _ = plain_ds[i]
        assert y.dtype == torch.int64 and y.shape == x.shape[1:]
        if torch.equal(y, y0):
            continue
        changed += 1
        assert fit(x, y) >= fit(x0, y0) - 0.01  # moved together: as consistent as the original pair
        assert fit(x, y0) < fit(x, y) - 0.01  # the control: the image moved, the old mask no longer fits
    assert changed >= 6  # augmentation did happen


@pytest.mark.parametrize("name", ["unet_plain8", "unet_mobilenetv3_small_100", "unet_efficientnet_b0",
                                  "unet_mobilevit_xxs", "unet_resnet18"])
def test_unet_students_give_dense_logits(name):
    m = create_timm(name, 3).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, 64, 96))
    assert y.shape == (1, 3, 64, 96)
    assert m.get_classifier().out_channels == 3


def test_unknown_encoder_is_one_line():
    with pytest.raises(ModelError, match="unknown segmentation encoder"):
        create_timm("unet_mobilenetv9", 2)


def test_plain_unet_passes_the_fpga_op_check():
    from edgekd.export.preflight import preflight_student
    from edgekd.targets import load_target

    assert preflight_student("unet_plain8", 2, 64, load_target("fpga-zu")) == ["fpga"]
    with pytest.raises(Exception, match="HardSwish|Sigmoid|ReduceMean"):
        preflight_student("unet_mobilenetv3_small_100", 2, 64, load_target("fpga-zu"))


def test_mask_size_mismatch_is_reported(tmp_path):
    root = make_seg_folder(tmp_path / "s", n=4)
    Image.new("L", (10, 10)).save(root / "masks" / "002.png")
    with pytest.raises(DataError, match="002.png is 10x10 but its image 002.jpg is 96x64"):
        load_data(str(root), None, 0.25, 0, task="segment")


def test_stray_value_in_binary_masks_is_refused_unless_classes_txt_says_indices(tmp_path):
    """One pixel of 7 in a 0/255 set used to make it index masks with 8 classes (and 0.00 mIoU)."""
    from edgekd.data.segfolder import load_mask

    root = make_seg_folder(tmp_path / "s", n=8)
    m = np.asarray(Image.open(root / "masks" / "005.png")).copy()
    m[0, 0] = 7
    Image.fromarray(m).save(root / "masks" / "005.png")
    with pytest.raises(DataError, match=r"005.png: mask value 7 in a set of 0/255 binary masks \(7 of 8 masks"):
        load_data(str(root), None, 0.25, 0, task="segment")
    with pytest.raises(DataError, match="005.png: mask value 7 in a set of 0/255"):  # past the scanned masks
        load_mask(root / "masks" / "005.png", binary=True)
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(8)))  # the user says: class indices
    assert len(load_data(str(root), None, 0.25, 0, task="segment").classes) == 8


def test_train_folder_alone_holds_out_its_own_test_split(tmp_path):
    make_seg_folder(tmp_path / "d" / "train", n=20)
    d = load_data(str(tmp_path / "d"), None, 0.1, 0, task="segment")
    splits = [set(s.paths) for s in (d.train, d.val, d.test)]
    assert [len(x) for x in splits] == [16, 2, 2] and len(set.union(*splits)) == 20


def _compress(tmp, data, target, extra=()):
    out = tmp / "runs" / f"seg-{target}"
    recipe = tmp / "seg.yaml"
    recipe.write_text("teacher_arch: unet_plain8\nteacher_epochs: 2\nepochs: 2\ncalib_samples: 16\n"
                      "bench_iters: 10\nbench_warmup: 2\nmax_eval_samples: 8\n")
    cmd = [sys.executable, "-m", "edgekd", "compress", "--task", "segment", "--data", str(data), "--target", target,
           "--recipe", str(recipe), "--out", str(out), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


@pytest.fixture(scope="module")
def cpu_run(seg_dir, tmp_path_factory):
    return _compress(tmp_path_factory.mktemp("cpu"), seg_dir, "cpu-x86",
                     ["--student", "unet_plain8", "--quantize", "qad", "--qad-epochs", "1"])


def test_compress_segment_cpu_end_to_end(cpu_run):
    out, res = cpu_run
    assert "mIoU %" in res.stdout
    ver = json.loads((out / "verify.json").read_text())
    assert ver["metric"] == "miou" and 0 <= ver["student_miou"] <= 100 and "teacher_miou" in ver
    models = {m["model"]: m for m in ver["models"]}
    assert {"onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8"} <= set(models)
    assert all(m["passed"] for m in models.values())
    assert models["onnx-fp32"]["top1_agreement"] == 1.0  # pixel agreement of the masks
    q = json.loads((out / "quantize.json").read_text())
    assert q["method"] == "qad" and q["metric"] == "miou"
    student = json.loads((out / "student" / "student.json").read_text())
    assert {"test_miou", "test_fg_iou", "test_fg_dice", "test_fg_precision", "test_fg_recall"} <= set(student)
    assert [c["class"] for c in student["per_class"]] == ["background", "foreground"]
    assert student["weights"]["head_init"].startswith("class prior (background ")  # random start: prior head
    man = json.loads((out / "bundle" / "manifest.json").read_text())
    assert man["task"] == "segment" and man["output"]["shape"] == [1, 2, 64, 96]
    assert man["masks"]["values"] == "0/255" and "student_fp32_miou" in man["metrics"]


def test_runner_writes_png_masks(cpu_run, seg_dir, tmp_path):
    out, _ = cpu_run
    images = sorted((seg_dir / "images").glob("*.jpg"))[:2]
    Image.open(images[0]).resize((120, 80)).save(tmp_path / "big.jpg")  # another size: mask follows the image
    res = subprocess.run([sys.executable, str(out / "bundle" / "run.pyz"), str(out / "bundle"), *map(str, images),
                          str(tmp_path / "big.jpg"), "--out", str(tmp_path / "masks"), "--json"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert len(lines) == 3
    for ln, size in zip(lines, [(96, 64), (96, 64), (120, 80)], strict=True):
        mask = Image.open(ln["mask"])
        assert mask.size == size and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert abs(sum(ln["fractions"].values()) - 1) < 1e-6


def test_compress_segment_fpga_target_default_student(seg_dir, tmp_path):
    """`compress --task segment --target fpga-zu` as typed: the plain U-Net student, QONNX, an FPGA estimate."""
    out, res = _compress(tmp_path, seg_dir, "fpga-zu")
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["student"] == "unet_plain16"
    bench = json.loads((out / "stages" / "bench.json").read_text())["result"]
    fpga = [b for b in bench if b["model"].endswith("@fpga-zu")]
    assert fpga and fpga[0]["fps"] > 0 and "estimated" in json.dumps(fpga[0])
    man = json.loads((out / "bundle" / "manifest.json").read_text())
    assert man["models"][0]["file"].endswith(".qonnx.onnx")


def test_distill_from_onnx_teacher_with_cwd_and_hints(cpu_run, seg_dir, tmp_path):
    """A segmentation teacher loaded from ONNX (logits: pixel KD + CWD), and a PyTorch one loaded from weights
    with feature hints and CWD on feature maps through the adapters."""
    out, _ = cpu_run
    teacher_onnx = out / "export" / "student-fp32.onnx"  # any dense ONNX model of the right classes
    res = subprocess.run([sys.executable, "-m", "edgekd", "distill", "--data", str(seg_dir), "--task", "segment",
                          "--teacher", f"onnx:{teacher_onnx}", "--student", "unet_plain8", "--epochs", "1",
                          "--max-eval-samples", "8", "--out", str(tmp_path / "d1")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "mIoU" in res.stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""task: segment
teachers: [{{spec: "timm:unet_plain8", weights: "{out / 'teacher' / 'teacher0.safetensors'}"}}]
student: unet_plain8
epochs: 1
max_eval_samples: 8
features: [{{student: net.down.2, teacher: net.down.2}}, {{student: net.dec.1, teacher: net.dec.1}}]
losses:
  - {{name: dice_ce}}
  - {{name: pixel_kd, temperature: 2.0, alpha: 1.0}}
  - {{name: cwd, maps: features, weight: 0.5}}
  - {{name: hint, weight: 0.5}}
""")
    res = subprocess.run([sys.executable, "-m", "edgekd", "distill", "--data", str(seg_dir), "--recipe", str(recipe),
                          "--out", str(tmp_path / "d2")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    card = json.loads((tmp_path / "d2" / "student" / "student.json").read_text())
    parts = card["stages"][0]["history"][0]["parts"]
    assert set(parts) == {"dice_ce", "pixel_kd", "cwd", "hint"} and all(v >= 0 for v in parts.values())


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/crackforest is absent")
def test_crackforest_loads_as_binary_crack_masks():
    d = load_data(str(SHARED), 256, 0.15, 0, task="segment")
    assert (len(d.train), len(d.val), len(d.test)) == (82, 18, 18)
    assert d.preprocess.size == (160, 256)
    frac = np.mean([d.test.mask(i).mean() for i in range(len(d.test))])
    assert 0.005 < frac < 0.05  # crack ~1.6 % of pixels


def test_new_head_starts_at_the_class_prior():
    from edgekd.models.segmentation import create_seg, init_head_prior, pixel_prior

    masks = np.zeros((4, 32, 64), np.uint8)
    masks[:, :, :2] = 1  # 2 of 64 columns: 3.125 % foreground
    masks[0, 0, 0] = 255  # an ignored pixel is not counted
    prior = pixel_prior(masks, 2)
    assert prior[1].item() == pytest.approx(2 / 64, abs=1e-3)
    torch.manual_seed(1)
    net = create_seg("unet_plain8", 2).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        before = net(x).softmax(1).mean((0, 2, 3))
        init_head_prior(net, prior)
        after = net(x).softmax(1).mean((0, 2, 3))
    assert abs(after[1].item() - prior[1].item()) < 0.005  # every pixel starts at the data's shares
    assert abs(before[1].item() - prior[1].item()) > 0.05  # the random head did not
    assert pixel_prior(np.zeros((1, 4, 4), np.uint8), 2)[1].item() > 0  # an absent class keeps a finite log


def test_head_prior_leaves_a_kept_head_and_hashes_only_segmentation(seg_dir):
    from edgekd.config import make_config
    from edgekd.models.segmentation import create_seg, start_at_prior
    from edgekd.stages import STAGE

    data = load_data(str(seg_dir), image_size=96, task="segment", val_fraction=0.2)
    net = create_seg("unet_plain8", 2)
    head = net.get_classifier().bias.clone()
    kept = {"used": "file", "head": "kept"}
    start_at_prior(net, data, kept)
    assert torch.equal(net.get_classifier().bias, head) and "head_init" not in kept
    fresh = {"used": "random"}
    start_at_prior(net, data, fresh)
    assert fresh["head_init"].startswith("class prior (background 9") and not torch.equal(
        net.get_classifier().bias, head)
    seg = make_config(None, task="segment", data=str(seg_dir), student="unet_plain8")
    cls = make_config(None, data="builtin:shapes10")
    for stage in ("teacher", "distill"):
        assert STAGE[stage].options(seg)["seg_head_prior"] is True
        assert "seg_head_prior" not in STAGE[stage].options(cls)  # classification runs keep their hashes
