"""Pretrained starts: where a student's, a teacher's or a U-Net encoder's first weights come from.

A choice is one string (``--student-weights``, ``student_weights:``, ``--teacher-weights``,
``teacher_arch_weights:``):

- ``auto``: timm's pretrained weights of the architecture (its default tag, e.g. ``mobilevit_xxs.cvnets_in1k``,
  ImageNet-1k) when they lie in the local cache (Hugging Face hub cache or torch hub cache) or the hub answers;
  else random weights and one warning line saying so and how to choose. Architectures timm has no weights for
  (``unet_plain*``, edgekd's CIFAR ResNets) silently start random.
- ``imagenet``: the same weights, required: when they cannot be had the run stops with one line.
- ``none``: random weights.
- ``hf-hub:ORG/NAME``: a timm model on the Hugging Face hub (timm's own naming), of the same architecture.
- anything else is a weights file: safetensors, a ``.pth`` / ``.bin`` state_dict (loaded with
  ``weights_only=True``) or a timm ``.npz`` (original JAX weights), loaded through timm's own pretrained
  mechanism (``pretrained_cfg_overlay=dict(file=...)``), so timm's checkpoint filters remap original-repo keys.
  Its sha256 is recorded. (A file literally called ``none`` is ``./none``.)

The head: a file's classifier is kept when its class count is the data's, else re-initialised (timm drops a
classifier whose size differs from ``pretrained_cfg['num_classes']``, so that is set to the file's own head
size). For ``unet_<encoder>`` models the choice applies to the encoder (timm ``features_only``); the decoder and
head start random. A file holding a whole edgekd model (an earlier checkpoint) is loaded as such.

Offline: nothing here waits on the network for long. Cached weights are loaded from the cache file directly
(no hub request at all); otherwise, with ``HF_HUB_OFFLINE=1`` the hub is not asked (also for timm tags that
download from plain URLs, which ``huggingface_hub`` would not stop), and without it the hub is probed once per
process with a short timeout (``EDGEKD_HUB_TIMEOUT`` seconds, default 5) before timm may download. Unprobed,
``timm.create_model(pretrained=True)`` on a machine without hub access took 47 s to fail here (DNS fails at
once, but ``huggingface_hub`` retries each file five times with back-off).
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgekd.errors import ConfigError, ModelError, reason

KEYWORDS = ("auto", "imagenet", "none")
HUB = "hf-hub:"
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm fetches for a hub id, in its order


def kind(choice: str) -> str:
    """``auto`` | ``imagenet`` | ``none`` | ``hub`` | ``file``."""
    if choice in KEYWORDS:
        return choice
    return "hub" if choice.startswith(HUB) else "file"


def backbone(arch: str) -> tuple[str | None, bool]:
    """The timm model whose pretrained weights an edgekd model name starts from, and whether it is a U-Net
    encoder (``features_only``); None for models timm has no weights for."""
    from edgekd.models import cifar_resnet, segmentation

    if arch in cifar_resnet.DEPTHS or segmentation.PLAIN.match(arch):
        return None, False
    if segmentation.is_seg_model(arch):
        return arch[len(segmentation.PREFIX):], True
    return arch, False


@dataclass(frozen=True)
class Found:
    """Where timm's pretrained weights of a model are: a cached ``file``, or the hub (``file`` None)."""

    label: str  # e.g. "timm mobilevit_xxs.cvnets_in1k"
    file: str | None
    custom_load: bool  # original-format file (.npz) read by the model's own loader
    num_classes: int


def offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


@functools.cache
def reachable(url: str) -> bool:
    """Does ``url`` answer with a success (after redirects) within ``EDGEKD_HUB_TIMEOUT`` seconds? The file itself
    is asked for, not the host: an intercepting proxy answers any host with an error page. Run in a thread so
    that a hanging DNS lookup cannot stall the run either."""
    import threading
    import urllib.request

    timeout = float(os.environ.get("EDGEKD_HUB_TIMEOUT", "5"))
    answer: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as res:
                answer.append(res.status < 400)
        except Exception:  # noqa: BLE001 - HTTP errors, DNS, refused, timeout, proxy: not reachable
            answer.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1)
    return bool(answer and answer[0])


def _hf_url(repo: str, filename: str = "config.json") -> str:
    """The hub URL of a file of ``repo`` (``ORG/NAME[@revision]``); every timm hub model has a config.json."""
    from huggingface_hub import constants

    repo_id, _, revision = repo.partition("@")
    return f"{constants.ENDPOINT}/{repo_id}/resolve/{revision or 'main'}/{filename}"


def _hf_cached(repo: str, names: tuple[str, ...]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    for name in names:
        hit = try_to_load_from_cache(repo_id, name, revision=revision or None)
        if isinstance(hit, str):
            return hit
    return None


@functools.cache
def find_imagenet(name: str) -> Found | str:
    """timm's default pretrained weights of ``name``: where they are, or a short reason why they cannot be had."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return f"timm has no pretrained weights for {name}"
    label = f"timm {cfg.architecture}.{cfg.tag}" if cfg.tag else f"timm {cfg.architecture}"
    hit = _hf_cached(cfg.hf_hub_id, (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILES) \
        if cfg.hf_hub_id else None
    custom = False
    if hit is None and cfg.url:
        from timm.models._hub import get_cache_dir

        cached = Path(get_cache_dir()) / Path(cfg.url.split("?")[0]).name  # torch hub cache, as timm downloads
        hit, custom = (str(cached), bool(cfg.custom_load)) if cached.is_file() else (None, False)
    if hit is None and cfg.file and Path(cfg.file).is_file():
        hit, custom = cfg.file, bool(cfg.custom_load)
    n = cfg.num_classes or 0
    if hit is not None:
        return Found(label, hit, custom, n)
    if offline():
        return "offline: HF_HUB_OFFLINE=1 and not in the local cache"
    url = _hf_url(cfg.hf_hub_id) if cfg.hf_hub_id else cfg.url
    if not reachable(url):
        return f"offline: {_host(url)} does not answer and they are not in the local cache"
    return Found(label, None, False, n)


def scratch_teacher(teacher_arch: str, student: str, student_weights: str) -> str | None:
    """Why the default teacher gives way to the student's own architecture, or None when it stays.

    The default teacher (``mobilevit_s``) is worth its cost when it starts from ImageNet weights. Without them it
    trains from random weights, and on a few hundred to a few thousand photos a from-scratch model 5x the
    student's size is no better than the student's own architecture trained the same epochs (README, "edgekd
    against the plain fine-tuning script"): the student's architecture is then the teacher (born-again
    distillation, Furlanello et al. 2018), trained first at a fifth of the cost. Only for ``auto`` starts: a
    teacher whose weights the user chose is never replaced. When the student's own weights are reachable the
    teacher of its architecture starts from them too."""
    name, _ = backbone(teacher_arch)
    if teacher_arch == student or name is None:
        return None
    found = find_imagenet(name)
    if not isinstance(found, str):
        return None
    sname, _ = backbone(student)
    start = "its ImageNet weights" if sname and kind(student_weights) in ("auto", "imagenet") and \
        not isinstance(find_imagenet(sname), str) else "random weights"
    return (f"teacher: no ImageNet weights for the default {teacher_arch} ({found}); a larger teacher from random "
            f"weights is no better than the student here, so the teacher is the student's own architecture, "
            f"{student}, trained first from {start} (born-again distillation). Set teacher_arch in a recipe, or "
            f"--teacher, to choose")


def check(arch: str, choice: str, who: str, option: str, required: bool = False) -> None:
    """Pre-flight: fail now (one line) when an explicit choice cannot be honoured, before anything trains.
    ``required``: ``auto`` may not fall back to random weights (a named teacher)."""
    k = kind(choice)
    name, _ = backbone(arch)
    if k == "file":
        if not Path(choice).is_file():
            raise ConfigError(f"{who}: weights file {choice} does not exist ({option} takes auto, imagenet, none, "
                              f"hf-hub:ORG/NAME or a file)")
    elif k == "hub":
        if name is None:
            raise ModelError(f"{who}: {arch} has no timm backbone to load {choice} into")
        repo = _hub_repo(choice, name, who)
        if _hub_cached(choice) is None:
            why = _hub_offline_reason(repo)
            if why:
                raise ModelError(f"{who}: cannot fetch {choice} ({why}); pass {option} FILE with local weights")
    elif k == "imagenet" or (k == "auto" and required):
        if name is None:
            if k == "imagenet":
                raise ModelError(f"{who}: {arch} has no ImageNet weights (no timm model holds them); pass {option} "
                                 f"none or a weights file")
            return
        found = find_imagenet(name)
        if isinstance(found, str):
            raise ModelError(_unavailable(who, option, found, k))


def _unavailable(who: str, option: str, why: str, k: str) -> str:
    if k == "imagenet":
        return f"{who}: {option} imagenet, but no ImageNet weights are reachable ({why}); pass {option} FILE " \
               f"with local weights, or none"
    return f"{who}: no ImageNet weights reachable ({why}) and a named teacher never silently starts random; " \
           f"pass {option} FILE with local weights, or {option} none to train it from random weights"


def _hub_repo(choice: str, name: str, who: str) -> str:
    """The hub repo of ``hf-hub:ORG/NAME``; refused when it visibly holds another architecture (its cached
    config.json, else a timm-style ``arch.tag`` repo name)."""
    import json

    from timm.models import split_model_name_tag

    repo = choice[len(HUB):]
    if "/" not in repo:
        raise ConfigError(f"{who}: {choice}: expected hf-hub:ORG/NAME (e.g. hf-hub:timm/mobilevit_xxs.cvnets_in1k)")
    want = split_model_name_tag(name)[0]
    cfg = _hf_cached(repo, ("config.json",))
    arch = json.loads(Path(cfg).read_text()).get("architecture") if cfg else None
    if arch is None and repo.split("/")[0] == "timm":
        arch = split_model_name_tag(repo.split("/")[1].split("@")[0])[0]
    if arch is not None and arch != want:
        raise ConfigError(f"{who}: {choice} holds {arch} weights, not {want}; choose a hub model of the same "
                          f"architecture")
    return repo


def _hub_cached(choice: str) -> str | None:
    repo = choice[len(HUB):]
    return _hf_cached(repo, HF_FILES) if _hf_cached(repo, ("config.json",)) else None


def _hub_offline_reason(repo: str) -> str | None:
    if offline():
        return "offline: HF_HUB_OFFLINE=1 and not in the local cache"
    if not reachable(_hf_url(repo)):
        return f"offline: {_host(_hf_url(repo))} does not answer and it is not in the local cache"
    return None


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


@contextmanager
def _cache_only():
    """huggingface_hub answers from its cache without asking the hub (a cached hub model on an unreachable hub
    would otherwise retry each request with back-off)."""
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def build(arch: str, num_classes: int, choice: str, who: str, option: str, required: bool = False,
          synthetic: bool = False) -> tuple[nn.Module, dict]:
    """The model ``arch`` with ``num_classes`` outputs, started as ``choice`` says, and the record of what was
    used (for model cards and the bundle manifest).

    Args:
        arch: an edgekd model name (timm classifier, ``unet_<encoder>``, ``unet_plain<W>``, CIFAR ResNet).
        num_classes: the data's class count.
        choice: ``auto`` | ``imagenet`` | ``none`` | ``hf-hub:ORG/NAME`` | a weights file (see the module doc).
        who: how messages name the model, e.g. ``"student mobilevit_xxs"``.
        option: the option that sets the choice, named in messages (``--student-weights``...).
        required: ``auto`` may not fall back to random weights (a named teacher): unavailable is an error.
        synthetic: the data is edgekd's built-in synthetic set: ``auto`` means ``none`` there (ImageNet
            features do not help 64 px drawn shapes, and the demo and tests must not wait on a hub).

    Raises:
        ModelError: unavailable weights that were required, or weights that do not fit the architecture.
    """
    from edgekd.models.factory import create_timm

    k = kind(choice)
    rec: dict = {"requested": choice}
    name, features = backbone(arch)
    if k == "none" or (k == "auto" and synthetic):
        why = "built-in synthetic data (auto means none there)" if k == "auto" else None
        return create_timm(arch, num_classes), {**rec, "used": "random", **({"reason": why} if why else {})}
    if k == "file":
        return _from_file(arch, num_classes, Path(choice), name, features, who, rec)
    if name is None:
        if k == "imagenet" or k == "hub":
            check(arch, choice, who, option)  # raises
        return create_timm(arch, num_classes), {**rec, "used": "random", "reason": f"{arch} has no pretrained "
                                                "weights"}
    if k == "hub":
        check(arch, choice, who, option)
        return _from_hub(arch, num_classes, choice, name, features, who, rec)
    found = find_imagenet(name)
    if isinstance(found, str):
        if k == "imagenet" or required:
            raise ModelError(_unavailable(who, option, found, k))
        from edgekd.progress import console

        hint = f"Pass {option} FILE, or none to silence this" if option.startswith("--") else \
            f"Set {option}: FILE in the recipe, or none to silence this"
        console.print(f"[yellow]{who}: no ImageNet weights reachable ({found}); starting from random weights. "
                      f"{hint}[/]", highlight=False, soft_wrap=True)
        return create_timm(arch, num_classes), {**rec, "used": "random", "reason": found}
    overlay = {"file": found.file, "custom_load": found.custom_load} if found.file else None
    model, head = _timm(arch, num_classes, name, features, who, found.label, overlay=overlay,
                        file_classes=found.num_classes)
    used = f"imagenet ({found.label}{' encoder' if features else ''})"
    return model, {**rec, "used": used, "source": found.file or "downloaded by timm", "head": head}


def _from_hub(arch: str, n: int, choice: str, name: str, features: bool, who: str, rec: dict):
    from timm.models import split_model_name_tag

    cached = _hub_cached(choice) is not None
    with _cache_only() if cached else nullcontext():
        model, head = _timm(arch, n, choice, features, who, choice)
    got = (model.encoder if features else model).pretrained_cfg.get("architecture")
    want = split_model_name_tag(name)[0]
    if got and got != want:
        raise ModelError(f"{who}: {choice} holds {got} weights, not {want}")
    return model, {**rec, "used": f"{choice}{' (encoder)' if features else ''}", "head": head}


def _from_file(arch: str, n: int, path: Path, name: str | None, features: bool, who: str, rec: dict):
    """A weights file: whole edgekd models through load_weights, timm models through timm's pretrained loader."""
    from edgekd.bundle import sha256
    from edgekd.models.factory import create_timm, load_weights, read_state_dict

    if not path.is_file():
        raise ConfigError(f"{who}: weights file {path} does not exist")
    rec = {**rec, "used": "file", "file": str(path.resolve()), "sha256": sha256(path)}
    if path.suffix == ".npz":
        if name is None:
            raise ModelError(f"{who}: {path} is a JAX .npz; {arch} loads safetensors or a state_dict")
        head_n = _npz_head(path)
        model, head = _timm(arch, n, name, features, who, str(path), overlay={"file": str(path),
                            "custom_load": True}, file_classes=head_n)
        return model, {**rec, "head": head}
    state = read_state_dict(path)  # safetensors or weights_only torch.load: the file is safe before timm reads it
    # a whole U-Net written by edgekd (encoder.*, blocks.*, head.*), not an encoder's own weights
    whole = name is None or (features and any(k.startswith("encoder.") for k in state)
                             and all(k.startswith(("encoder.", "blocks.", "head.")) for k in state))
    if whole:  # edgekd's own models, or a whole U-Net checkpoint written by edgekd
        model = create_timm(arch, n)
        fits = load_weights(model, state, str(path))
        return model, {**rec, "head": "kept" if fits else "re-initialised"}
    heads = _classifiers(name)
    head_n = next((state[f"{c}.weight"].shape[0] for c in heads if f"{c}.weight" in state), 0)
    del state
    model, head = _timm(arch, n, name, features, who, str(path), overlay={"file": str(path)}, file_classes=head_n)
    return model, {**rec, "head": head}


def _npz_head(path: Path) -> int:
    """The class count of a JAX .npz's head (0: none), read without pickle."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["head/bias"].shape[-1]) if "head/bias" in z.files else 0
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: not a readable .npz archive ({reason(exc)})") from exc


def _timm(arch: str, n: int, name: str, features: bool, who: str, source: str, overlay: dict | None = None,
          file_classes: int | None = None) -> tuple[nn.Module, str]:
    """``timm.create_model(name, pretrained=True, ...)`` (a U-Net encoder with ``features_only``), checking
    that every backbone tensor was loaded; returns the model and what became of the head."""
    import timm

    kwargs: dict = {"pretrained": True}
    if overlay is not None:
        # timm keeps a file's classifier only when pretrained_cfg num_classes equals the model's: give it the
        # file's own head size, so a head that already fits the data is kept and any other is re-initialised
        kwargs["pretrained_cfg_overlay"] = {**overlay, "num_classes": file_classes or 0}
    if features:
        kwargs["features_only"] = True
    else:
        kwargs["num_classes"] = n
    loaded: list = []
    try:
        with _record_loads(loaded):
            net = timm.create_model(name, **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - timm / hub / torch errors become one line
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
        if lines[0].startswith("Error(s) in loading state_dict") and len(lines) > 1:  # torch: say which tensors
            raise ModelError(f"{who}: {source} does not match {name} ({lines[1][:200]}); is it the right "
                             f"architecture?") from exc
        into = "" if source == name else f" into {name}"
        raise ModelError(f"{who}: cannot load {source}{into}: {lines[0][:300]}") from exc
    cfg = net.pretrained_cfg
    heads = _classifiers(cfg.get("architecture") or name)
    for res in loaded:
        missing = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")
                   and not any(k.startswith(h + ".") for h in heads)]
        if missing or res.unexpected_keys:
            raise ModelError(f"{who}: {source} does not match {name} ({len(missing)} missing, "
                             f"{len(res.unexpected_keys)} unexpected keys, e.g. "
                             f"{(missing + list(res.unexpected_keys))[:2]}); is it the right architecture?")
    if features:
        from edgekd.models.segmentation import EncoderUNet

        return EncoderUNet(name, n, module=net), "decoder and head random"
    src = (cfg.get("num_classes") or 0) if overlay is None else (file_classes or 0)
    return net, "kept" if src == n else f"re-initialised ({src} -> {n} classes)" if src else "re-initialised"


def _classifiers(arch: str) -> tuple[str, ...]:
    """Module names of timm's classifier for ``arch`` (the keys timm drops when the class count differs)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    c = cfg.classifier if cfg is not None else None
    return (c,) if isinstance(c, str) else tuple(c or ())


@contextmanager
def _record_loads(out: list):
    """Collect the result (missing / unexpected keys) of every ``load_state_dict`` timm makes: timm loads
    non-strictly whenever it drops a classifier and then only logs what did not match."""
    orig = nn.Module.load_state_dict

    def spy(self, *args, **kwargs):
        res = orig(self, *args, **kwargs)
        out.append(res)
        return res

    nn.Module.load_state_dict = spy
    try:
        yield
    finally:
        nn.Module.load_state_dict = orig
