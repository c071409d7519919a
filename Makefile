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

.PHONY: install run test test-all benchmarks install-dgl test-dgl clean

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

# The classic M3GNet weights give correct energies only on matgl's DGL backend, and dgl 2.1.0 exists
# for torch <= 2.2.1 only (PyPI's 2.2.1 is the CUDA build, ~2.7 GB). So M3GNet runs from a second
# environment (e.g. the one a cluster's prerelax workers use): every dependency of the project except
# chgnet, which needs torch >= 2.4 (so CHGNet potentials are not available there).
DGL_VENV  ?= .venv-dgl
DGL_STACK ?= torch==2.2.1 dgl==2.1.0 torchdata==0.7.1 numpy==1.26.4 matgl==2.1.2
DGL_STAMP := $(DGL_VENV)/.crystalgen-installed

$(DGL_STAMP): pyproject.toml
	test -x $(DGL_VENV)/bin/python || $(PYTHON) -m venv $(DGL_VENV)
	$(DGL_VENV)/bin/python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
		print(*[d for d in deps['dependencies'] + deps['optional-dependencies']['test'] \
		if not d.startswith(('torch', 'matgl', 'chgnet'))], sep='\n')" > $(DGL_VENV)/requirements.txt
	$(DGL_VENV)/bin/pip install --disable-pip-version-check -q $(DGL_STACK) -r $(DGL_VENV)/requirements.txt
	$(DGL_VENV)/bin/pip install --disable-pip-version-check -q --no-deps -e .
	touch $(DGL_STAMP)

install-dgl: $(DGL_STAMP)

test-dgl: install-dgl
	MATGL_BACKEND=DGL DGLBACKEND=pytorch $(DGL_VENV)/bin/pytest -m dgl tests/test_potentials_dgl.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DGL_VENV) *.egg-info .pytest_cache
