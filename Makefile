# The two commands a user needs: `make run` and `make test`. Both create .venv and install on first use.
PYTHON      ?= python3
VENV        ?= .venv
# CPU wheel by default so a fresh machine never pulls a multi-GB CUDA build; clusters override it,
# e.g. `make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" install`.
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export MATGL_BACKEND  := PYG

BIN   := $(VENV)/bin
STAMP := $(VENV)/.crystalgen-installed

.PHONY: install run test test-all benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH_SPEC)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/crystalgen campaign run campaigns/demo.yaml

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: install
	$(BIN)/pytest -m '' $(PYTEST_ARGS)

benchmarks: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
