from pathlib import Path

import pytest

from edgekd.config import make_config
from edgekd.errors import ConfigError
from edgekd.targets import list_targets, load_target


def test_cpu_x86_target_loads_with_thresholds():
    t = load_target("cpu-x86")
    assert t.threads >= 1 and "openvino" in t.runtimes and t.parity["int8"].max_metric_drop > 0
    assert "cpu-x86" in list_targets()


def test_unknown_target_names_the_known_ones():
    with pytest.raises(ConfigError, match="known targets: .*cpu-x86"):
        load_target("jetson-nope")


def test_target_extra_key_rejected(tmp_path: Path):
    import yaml

    raw = yaml.safe_load(Path(load_target.__code__.co_filename).parent.parent.joinpath("targets/cpu-x86.yaml")
                         .read_text())
    raw["turbo"] = True
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="turbo"):
        load_target(str(p))


def test_malformed_target_yaml(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_target(str(p))


def test_recipe_overrides_and_validation(tmp_path: Path):
    r = tmp_path / "r.yaml"
    r.write_text("epochs: 3\nstudent: efficientnet_b0\n")
    cfg = make_config(r, epochs=5, student=None)
    assert cfg.epochs == 5 and cfg.student == "efficientnet_b0"


@pytest.mark.parametrize("text,match", [
    ("epochs: 0\n", "epochs"),
    ("batch_size: -2\n", "batch_size"),
    ("lerning_rate: 0.1\n", "lerning_rate"),
    ("- a\n- b\n", "mapping"),
    ("alpha: 1.5\n", "alpha"),
])
def test_bad_recipes_give_one_clear_error(tmp_path: Path, text: str, match: str):
    r = tmp_path / "r.yaml"
    r.write_text(text)
    with pytest.raises(ConfigError, match=match):
        make_config(r)


def test_yaml_is_never_executed(tmp_path: Path):
    r = tmp_path / "r.yaml"
    r.write_text("epochs: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        make_config(r)


def test_demo_recipe_is_the_built_in_default():
    from edgekd.config import RunConfig, resolve

    from .conftest import ROOT

    # unset options take the task's defaults when a run starts (resolve); the demo only pins the student's random
    # start, which `auto` also means on the built-in data (make demo never asks a model hub)
    demo = resolve(make_config(ROOT / "models" / "shapes10-demo.yaml"))
    assert demo.student_weights == "none"
    assert resolve(demo.model_copy(update={"student_weights": "auto"})) == resolve(RunConfig())


def test_task_defaults_resolve_per_task_and_target():
    from edgekd.config import RunConfig, resolve

    seg = resolve(RunConfig(task="segment"))
    assert (seg.student, seg.teacher_arch, seg.loss, seg.select_metric) == (
        "unet_mobilenetv3_large_100", "unet_plain32", "pixel_kd", "miou")
    assert resolve(RunConfig(task="segment"), "fpga").student == "unet_plain16"  # plain ops for dataflow FPGAs
    assert resolve(RunConfig(task="segment", student="unet_plain8"), "fpga").student == "unet_plain8"
    cls = resolve(RunConfig())
    assert (cls.student, cls.loss, cls.temperature, cls.batch_size) == ("mobilevit_xxs", "kd", 4.0, 64)
    with pytest.raises(ConfigError, match="classification metric"):
        resolve(RunConfig(task="segment", select_metric="top1"))


def test_every_power_number_is_cited_or_marked_an_assumption():
    """Issue 18: each power-model figure says where it comes from; the estimate's method carries both bases."""
    import yaml
    from pydantic import ValidationError

    from edgekd.bench.energy import EstimateMeter
    from edgekd.targets import PowerModel, list_targets, load_target, targets_dir

    for name in list_targets():
        p = load_target(name).power
        assert p is not None, name
        for basis in (p.idle_basis, p.active_basis):
            assert basis.startswith(("cited: ", "assumption: ")), (name, basis)
        method = EstimateMeter(load_target(name)).method
        assert p.idle_basis in method and p.active_basis in method
    raw = yaml.safe_load((targets_dir() / "cpu-x86.yaml").read_text())["power"]
    with pytest.raises(ValidationError):
        PowerModel.model_validate({**raw, "active_basis": "datasheet says so"})  # neither cited: nor assumption:
    with pytest.raises(ValidationError):
        PowerModel.model_validate({k: v for k, v in raw.items() if k != "idle_basis"})
