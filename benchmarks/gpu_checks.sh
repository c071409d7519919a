#!/usr/bin/env bash
# GPU checks for a CUDA node, run from the repository root with the project's environment active:
#   bash benchmarks/gpu_checks.sh [RESULTS_DIR]
# 1. tests that need CUDA (AMP training + resume, CUDA sampling/relaxation vs CPU) and the potential
#    and relaxer tests with potentials on the GPU (CRYSTALGEN_POTENTIAL_DEVICE=cuda);
# 2. benchmarks/relax.py on the GPU: batched relaxer vs ASE one-at-a-time, same 64 structures (and,
#    with .venv-torchsim present, TorchSim's relaxer and its tests too);
# 3. benchmarks/sampling.py on the GPU.
# Logs go to RESULTS_DIR (default gpu-results/). Each step runs even when an earlier one failed;
# the exit status is that of the first failure.
set -u -o pipefail
results=${1:-gpu-results}
mkdir -p "$results"
export HF_HUB_OFFLINE=1 MATGL_BACKEND=${MATGL_BACKEND:-PYG} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}  # the environment with torch (e.g. PYTHON=.venv/bin/python)
status=0
step() {  # step NAME COMMAND...: run, tee to RESULTS_DIR/NAME.log, remember the first failure
    local name=$1
    shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$results/$name.log" || { rc=$?; echo "=== $name failed ($rc)"; [ "$status" -ne 0 ] || status=$rc; }
}

step environment "$py" -c "import torch, matgl; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO GPU', '| matgl', matgl.__version__)"
step tests env CRYSTALGEN_POTENTIAL_DEVICE=cuda "$py" -m pytest -q -p no:cacheprovider \
    tests/test_gpu.py tests/test_potentials.py tests/test_relax.py
step relax_benchmark "$py" benchmarks/relax.py --device cuda --threads 1
if [ -x .venv-torchsim/bin/python ]; then  # TorchSim backend next to the others (make install-torchsim)
    step torchsim_tests env CRYSTALGEN_POTENTIAL_DEVICE=cuda .venv-torchsim/bin/python -m pytest -q -p no:cacheprovider \
        -m torchsim tests/test_relax_torchsim.py
    step torchsim_benchmark .venv-torchsim/bin/python benchmarks/relax.py --device cuda --threads 1
fi
step sampling_benchmark "$py" benchmarks/sampling.py --devices cuda --n-conditions 128
exit "$status"
