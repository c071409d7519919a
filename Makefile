# The two commands a user needs: `make run` and `make test`. Both create .venv and install on first use.
PYTHON      ?= python3
VENV        ?= .venv
# CPU wheel by default so a fresh machine never pulls a multi-GB CUDA build; clusters override it,
# e.g. `make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" install`.
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export MATGL_BACKEND  := PYG
# numpy/scipy work on 3x3 cell matrices in the relaxers: threaded BLAS only adds synchronisation
# (20 ms per 3x3 solve on a busy 2-core machine instead of microseconds)
export OPENBLAS_NUM_THREADS ?= 1

BIN   := $(VENV)/bin
STAMP := $(VENV)/.crystalgen-installed

.PHONY: install run test test-all benchmarks install-dgl test-dgl install-torchsim test-torchsim clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH_SPEC)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test,sevenn]'
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

# TorchSim (torch-sim-atomistic >= 0.4) needs Python >= 3.12, the main environment is built with the
# machine's python3 (3.11 here), and PyPI has no CPU torch wheel for 3.12 (its torch 2.13.0 is the CUDA
# build, ~6 GB with NVIDIA libraries). So the TorchSim relaxer backend runs from a second environment,
# like M3GNet: the whole project plus torch-sim-atomistic and SevenNet. The first Python >= 3.12 found
# among TORCHSIM_PYTHON (if given), python3.12, python3.13 and pyenv's versions builds it.
TORCHSIM_VENV  ?= .venv-torchsim
TORCHSIM_STACK ?= torch==2.13.0 torch-sim-atomistic==0.6.2
TORCHSIM_STAMP := $(TORCHSIM_VENV)/.crystalgen-installed
TORCHSIM_FIND  := for py in $(TORCHSIM_PYTHON) python3.12 python3.13 $(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3); do \
	$$py -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$py; break; }; done

$(TORCHSIM_STAMP): pyproject.toml
	@py=$$($(TORCHSIM_FIND)); test -n "$$py" || { echo "make install-torchsim: TorchSim needs Python >= 3.12 and none was found \
	(tried $(TORCHSIM_PYTHON) python3.12 python3.13 ~/.pyenv/versions/3.12*); install one or pass TORCHSIM_PYTHON=/path/to/python3.12" >&2; exit 1; }; \
	test -x $(TORCHSIM_VENV)/bin/python || { echo "creating $(TORCHSIM_VENV) with $$py"; $$py -m venv $(TORCHSIM_VENV); }
	$(TORCHSIM_VENV)/bin/pip install --disable-pip-version-check -q $(TORCHSIM_STACK) -e '.[test,sevenn]'
	touch $(TORCHSIM_STAMP)

install-torchsim: $(TORCHSIM_STAMP)

test-torchsim: install-torchsim
	$(TORCHSIM_VENV)/bin/pytest -m torchsim tests/test_relax_torchsim.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DGL_VENV) $(TORCHSIM_VENV) *.egg-info .pytest_cache
