"""RunConfig: every option of a pipeline run, validated (extra keys rejected). Recipes are YAML of it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError

from edgekd.errors import ConfigError


class TeacherSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str = Field(description="timm:NAME")
    weights: Path | None = Field(default=None, description="safetensors or state_dict checkpoint")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    task: Literal["classify", "segment"] = "classify"
    data: str = "builtin:shapes10"
    teachers: list[TeacherSpec] = Field(default_factory=list)
    teacher_arch: str = Field(default="mobilevit_s", description="timm name trained when no teacher is given")
    teacher_epochs: PositiveInt = 60
    student: str = "mobilevit_xxs"
    image_size: PositiveInt | None = None
    epochs: PositiveInt = 8
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-3
    weight_decay: float = Field(default=0.05, ge=0)
    loss: Literal["kd", "ce"] = "kd"
    temperature: PositiveFloat = 4.0
    alpha: float = Field(default=0.9, ge=0, le=1)
    augment: bool = False
    seed: int = 0
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None
    calib_samples: PositiveInt = 300
    quant_preset: Literal["performance", "mixed"] = "mixed"
    verify_samples: PositiveInt = 1000
    bench_iters: PositiveInt = 200
    bench_warmup: NonNegativeInt = 20


def load_recipe(path: Path) -> dict:
    """Read a recipe YAML (safe_load: never runs code) as a dict of RunConfig fields."""
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of options")
    return raw


def make_config(recipe: Path | None = None, **overrides) -> RunConfig:
    """Recipe values, then explicit CLI values (those not None) on top; validated as one RunConfig."""
    values = load_recipe(recipe) if recipe else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        src = f"{recipe}: " if recipe else ""
        raise ConfigError(f"{src}{loc}: {err['msg']}") from exc
