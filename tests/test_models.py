from pathlib import Path

import pytest
import torch

from edgekd.errors import ModelError
from edgekd.models.factory import create_timm, load_checkpoint, load_weights, read_state_dict, save_checkpoint


def test_unknown_timm_model_suggests_names():
    with pytest.raises(ModelError, match="unknown timm model 'mobilevit_xxxs'.*mobilevit_xxs"):
        create_timm("mobilevit_xxxs", 10)


def test_teacher_weights_from_safetensors_and_state_dict(tmp_path: Path):
    from safetensors.torch import save_file

    src = create_timm("resnet10t", 10)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        dst = create_timm("resnet10t", 10)
        assert load_weights(dst, read_state_dict(tmp_path / name), name) is True
        assert torch.equal(dst.state_dict()["conv1.0.weight"], src.state_dict()["conv1.0.weight"])


def test_class_count_mismatch_keeps_backbone_and_resets_head(tmp_path: Path):
    src = create_timm("resnet10t", 1000)
    dst = create_timm("resnet10t", 10)
    assert load_weights(dst, src.state_dict(), "w") is False
    assert torch.equal(dst.state_dict()["conv1.0.weight"], src.state_dict()["conv1.0.weight"])
    assert dst.get_classifier().out_features == 10


def test_wrong_architecture_is_refused():
    with pytest.raises(ModelError, match="right timm name"):
        load_weights(create_timm("resnet10t", 10), create_timm("mobilevit_xxs", 10).state_dict(), "w")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_code_is_refused_not_executed(tmp_path: Path, capsys):
    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="refused to load"):
        read_state_dict(tmp_path / "evil.pth")
    assert "must never run" not in capsys.readouterr().out


def test_checkpoint_round_trip(tmp_path: Path):
    m = create_timm("resnet10t", 3).eval()
    save_checkpoint(m, tmp_path / "s.safetensors", {"arch": "resnet10t", "classes": ["a", "b", "c"]})
    back, card = load_checkpoint(tmp_path / "s.safetensors")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x), back(x)) and card["classes"] == ["a", "b", "c"]


def test_shipped_teacher_loads_and_knows_shapes10():
    """The teacher under models/ is real: it loads from its card and classifies held-out shapes10 images."""
    import numpy as np

    from edgekd.data import load_data
    from edgekd.shipped import shipped_dir
    from edgekd.stages.teacher import SHIPPED_TEACHERS

    models_dir = shipped_dir("models")

    path = models_dir / SHIPPED_TEACHERS[("builtin:shapes10", "mobilevit_s")]
    model, card = load_checkpoint(path)
    assert card["arch"] == "mobilevit_s" and card["test_top1"] > 80
    data = load_data("builtin:shapes10", max_train=10, max_eval=200)
    x = torch.from_numpy(data.preprocess.batch([data.test.image(i) for i in range(len(data.test))]))
    with torch.no_grad():
        acc = float((model(x).argmax(1).numpy() == data.test.labels).mean() * 100)
    assert acc > 75, acc
    assert (models_dir / "shapes10-mobilevit_s.md").is_file()
    assert np.isfinite(acc)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "efficientnet_b0",
                                  "efficientnet_lite0", "mobilenetv3_small_100", "cifar_resnet56"])
def test_supported_students_build_and_run_at_small_inputs(name):
    """Every student the docs name builds for the data's class count and runs at 32 and 64 px inputs."""
    import torch

    from edgekd.models.factory import create_timm

    model = create_timm(name, 7).eval()
    with torch.no_grad():
        for side in (32, 64):
            assert model(torch.zeros(2, 3, side, side)).shape == (2, 7)
