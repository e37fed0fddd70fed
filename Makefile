# make demo / make test create .venv themselves and are idempotent (the venv is rebuilt only when
# pyproject.toml changes).
#
# Installing torch: pyproject pins torch==2.14.1 and torchvision==0.29.1 exactly. On the project's machines
# pip's global config points at local wheel indexes holding exactly these builds (~100 s, no download);
# an open range would pull a newer multi-GB CUDA build from PyPI, and the CPU wheel torch==2.13.0 that also
# lies on disk has no torchvision that imports beside it (timm needs torchvision).
# Elsewhere, set TORCH_INDEX to a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu, for CPU builds.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgekd-installed
TORCH_INDEX ?=
PIP_EXTRA := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: setup demo test test-fast lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_EXTRA) -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/edgekd compress --target cpu-x86 --recipe models/shapes10-demo.yaml --out runs/demo

# several pytest processes: a long one died of a segfault (exit 139, heap corruption in pymalloc, no Python
# traceback) at varying points. Reproduced once with three tests in one process: an OpenVINO model compiled
# with 2 threads in-process, then DataLoader workers (forkserver) in-process, then a later test; cause not found.
# The worker test now runs its loaders in a subprocess, and groups of ~100-130 tests keep any other such sequence
# short. The tiny `compress` run the integration tests share is built once, in TEST_TINY_RUN, and reused.
TEST_TINY_RUN := $(CURDIR)/runs/test-tiny-run
PYTEST := EDGEKD_TEST_TINY_RUN=$(TEST_TINY_RUN) $(BIN)/python -m pytest -q
test: setup
	$(BIN)/ruff check edgekd tests benchmarks docs/research
	rm -rf $(TEST_TINY_RUN)
	$(PYTEST) $(filter-out tests/test_bundle_integrity.py,$(wildcard tests/test_[ab]*.py))
	$(PYTEST) tests/test_bundle_integrity.py
	$(PYTEST) tests/test_[c-e]*.py
	$(PYTEST) tests/test_[f-p]*.py
	$(PYTEST) tests/test_[q-z]*.py

# the developer's loop while editing: every test not marked slow (tests/conftest.py: tests/slow.txt and the
# shared tiny run); `make test` stays the full suite CI runs
test-fast: setup
	$(BIN)/ruff check edgekd tests benchmarks docs/research
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: setup
	$(BIN)/ruff check edgekd tests benchmarks docs/research

clean:
	rm -rf $(VENV) runs .pytest_cache
