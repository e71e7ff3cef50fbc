# usjepa developer commands. CONFIG and ARGS pass through to the CLI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?=
ARGS ?=

.PHONY: install test lint docs pretrain pretrain-teacher pretrain-student probe data bench bench-check bench-peers clean

# A re-run is quick: the stamp is newer than pyproject.toml, so nothing is reinstalled.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned to the releases the build machines serve locally
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q --nbmake tests notebooks

# the documentation site in site/: guides, generated results pages, the notebooks executed
# with their figures, the API reference; strict: a broken link, a missing reference or a
# failing notebook fails the build
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: install
	$(VENV)/bin/ruff check usjepa tests benchmarks
	$(VENV)/bin/mypy usjepa tests/methods/typed_extension.py

data: install
	$(PY) -m usjepa data synth $(ARGS)

# With no CONFIG: the demo, stage 1 (MAE teacher) then stage 2 (SALT student).
pretrain: install
ifeq ($(CONFIG),)
	$(PY) -m usjepa pretrain --config experiments/demo/teacher_mae.yaml $(ARGS)
	$(PY) -m usjepa pretrain --config experiments/demo/salt.yaml $(ARGS)
else
	$(PY) -m usjepa pretrain --config $(CONFIG) $(ARGS)
endif

# MODELS: comma-separated config names, exports (*.safetensors) or zoo entries
# (usf_mae:/path/to/ckpt); TASKS: comma-separated task folders. Both optional.
MODELS ?=
TASKS ?=
probe: install
	$(PY) -m usjepa probe --config $(or $(CONFIG),experiments/probe/demo.yaml) \
	  $(if $(MODELS),--models "[$(MODELS)]") $(if $(TASKS),--task_roots "[$(TASKS)]") $(ARGS)

# BENCH picks a script as <question>/<name> (benchmarks/README.md lists them); the default,
# tools/suite, is the quick set (loading, probe timings, step suite at ViT-Ti and S; under
# 10 minutes on 2 cores), plus the GPU step when CUDA is present.
BENCH ?= tools/suite
bench: install
	$(PY) -m benchmarks.$(subst /,.,$(BENCH)) $(ARGS)

# The benchmark scripts' own tests (they import the scripts, so they live in benchmarks/)
bench-check: install
	$(PY) -m pytest benchmarks/tests -q -p no:cacheprovider

# Side by side with stable-pretraining (SALT) and lightly (I-JEPA), from their own venv
BENCH_VENV ?= .venv-bench
bench-peers: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks.perf.peer_step $(ARGS)
$(BENCH_VENV)/.installed: pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[bench]"
	touch $@

clean:
	rm -rf runs .cache .pytest_cache .ruff_cache .mypy_cache lightning_logs
	find . -name __pycache__ -prune -exec rm -rf {} +
