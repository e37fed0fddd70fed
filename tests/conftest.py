import os
import subprocess
import sys
from pathlib import Path

import pytest

# Loaders run in-process in the test suite (no worker start-up per loader on 2 cores); tests that check workers
# ask for them explicitly (test_distill_engine's per-sample seeding test).
os.environ.setdefault("EDGEKD_NUM_WORKERS", "0")

# tests never ask a model hub: `auto` starts from the local cache or random weights, `imagenet` fails at once.
# Set at import time so CLI subprocesses inherit it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    # built-in data is cached under EDGEKD_CACHE; keep tests out of the user's ~/.cache
    os.environ.setdefault("EDGEKD_CACHE", str(tmp_path_factory.mktemp("edgekd-cache")))


@pytest.fixture
def relaxed_target(tmp_path) -> Path:
    """cpu-x86 with int8 thresholds loose enough for a 1-epoch model whose logits are nearly tied."""
    import yaml

    raw = yaml.safe_load((ROOT / "targets" / "cpu-x86.yaml").read_text())
    raw["name"] = "cpu-x86-test"
    raw["parity"]["int8"] = {"min_top1_agreement": 0.0, "max_metric_drop": 100.0}  # deploy: the default, fastest
    p = tmp_path / "cpu-x86-test.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


TINY = """
teacher_arch: resnet10t
teacher_epochs: 1
epochs: 1
max_train_samples: 128
max_eval_samples: 64
calib_samples: 16
verify_samples: 64
bench_iters: 10
bench_warmup: 2
"""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny `compress` run (first run) and a rerun of it (second), shared by the whole session.

    `make test` runs the suite in several pytest processes (one long process died of a segfault, see Makefile)
    and sets EDGEKD_TEST_TINY_RUN to one folder: the first process builds the run there, later ones reuse it and
    only rerun it (every stage reused, ~20 s). Tests copy the run before they change anything in it."""
    import json

    import yaml

    shared = os.environ.get("EDGEKD_TEST_TINY_RUN")
    tmp = Path(shared) if shared else tmp_path_factory.mktemp("run")
    built = tmp / "built.json"  # the first run's result, written once it succeeded
    out = tmp / "runs" / "tiny"
    cmd = [sys.executable, "-m", "edgekd", "compress", "--target", str(tmp / "t.yaml"), "--recipe",
           str(tmp / "tiny.yaml"), "--out", str(out)]
    if built.is_file():
        first = subprocess.CompletedProcess(cmd, **json.loads(built.read_text()))
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        raw = yaml.safe_load((ROOT / "targets" / "cpu-x86.yaml").read_text())
        raw["parity"]["int8"] = {"min_top1_agreement": 0.0, "max_metric_drop": 100.0}
        # the bundle's contents must not depend on this machine's timings (the tamper matrix lists its files):
        # `deploy: int8` bundles every passing int8 model; tests/test_deploy.py runs `fastest` with set timings
        raw["deploy"] = "int8"
        (tmp / "t.yaml").write_text(yaml.safe_dump(raw))
        (tmp / "tiny.yaml").write_text(TINY)
        first = subprocess.run(cmd, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr[-3000:]
        built.write_text(json.dumps({"returncode": first.returncode, "stdout": first.stdout,
                                     "stderr": first.stderr}))
    second = subprocess.run(cmd, capture_output=True, text=True)
    return {"out": out, "first": first, "second": second, "cmd": cmd}


# `make test-fast` runs `-m "not slow"`: a developer's loop while editing. Slow = marked in the test file, using
# the shared tiny `compress` run, or listed in tests/slow.txt: the node ids that took >= 1 s in a full run on the
# project's 2-core machine (regenerate with `python tests/slow_list.py DURATIONS.txt`, see that file).
SLOW_LIST = Path(__file__).with_name("slow.txt")


def pytest_collection_modifyitems(config, items):
    listed = set(SLOW_LIST.read_text().split()) if SLOW_LIST.is_file() else set()
    for item in items:
        base = item.nodeid.split("[", 1)[0]
        if "tiny_run" in getattr(item, "fixturenames", ()) or item.nodeid in listed or base in listed:
            item.add_marker(pytest.mark.slow)
