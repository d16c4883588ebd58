#!/usr/bin/env bash
# The GPU side of the checks, for a machine with a GPU (the device copy of the repo is all it needs).
# Usage: bash scripts/gpu_check.sh OUTDIR [STEP ...]
# Steps, in the order given (default: all four):
#   build      build in place, offline, with CUDA for this GPU; env.txt records the machine and toolchain
#   tests      the whole test suite (CPU and GPU tests), in parallel when pytest-xdist is there
#   memcheck   compute-sanitizer memcheck over the GPU tests
#   racecheck  compute-sanitizer racecheck over the GPU tests of the kernels that share memory
# Writes OUTDIR/{env.txt,build.log,tests_gpu.log,tests.log,memcheck.log,racecheck.log}; exits non-zero if a step
# failed.
# PYTEST_ARGS (environment) is added to every pytest command, e.g. PYTEST_ARGS="-k conv".
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [build|tests|memcheck|racecheck ...]}
shift
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build tests memcheck racecheck)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
extra=${PYTEST_ARGS:-}
status=0

build() {
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git describe --always --dirty=+modified 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    nvcc --version 2>&1 | tail -1
    python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1
  } > "$out/env.txt"
  echo "== build"
  # The GPU's own architecture only: a third of the default build's compile time.
  local arch
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
  PYALEXNET_CUDA=ON PYALEXNET_CUDA_ARCHS=${PYALEXNET_CUDA_ARCHS:-${arch:+${arch}-real}} \
    python3 -m pip install -v --no-build-isolation --no-deps -e . > "$out/build.log" 2>&1 ||
    { echo "build failed"; tail -30 "$out/build.log"; return 1; }
  python3 -m pyalexnet info | tee -a "$out/env.txt"
  # How the module links its C++ runtime: on the H100 image (2026-11-22) libstdc++ code ended up inside
  # _C and formatting an integer with an ostream there segfaulted. Recorded so the cause can be pinned down.
  {
    echo "== toolchain"; g++ --version | head -1; env | grep -E "^(LDFLAGS|CXXFLAGS|CFLAGS|CC|CXX|CUDAFLAGS)=" || true
    echo "== ldd _C"; ldd pyalexnet/_C*.so
    echo "== libstdc++ symbols defined in _C: $(nm -D -C --defined-only pyalexnet/_C*.so | grep -c 'std::')"
    nm -D -C --defined-only pyalexnet/_C*.so | grep -E "codecvt|basic_ostream" | head -5
  } >> "$out/env.txt" 2>&1
  return 0
}

# The whole suite, not only the GPU tests: the machine's compiler, Python and numpy differ from the
# build machine's (an iostream crash in every error path once showed up only there). The CUDA
# emulation tests are skipped: they need no GPU and CI runs them.
# The GPU tests run first, on their own: they are what only this machine can run, and the suite has grown
# (over 1400 tests in session 26, about 300 of them GPU tests, against 506 when a session last had a GPU), so a
# time limit that cuts the run short now cuts the CPU tests, which CI runs anyway.
tests() {
  echo "== GPU tests, then the others"
  local xdist="" rc=0
  python3 -c "import xdist" 2>/dev/null && xdist="-n 12"
  half() {  # half LOG PYTEST_ARGS...: exit status 5 means PYTEST_ARGS selected none of that half
    local log=$1
    shift
    python3 -m pytest -q -rs $xdist -p no:cacheprovider "$@" $extra tests > "$out/$log" 2>&1 || [ $? -eq 5 ] || rc=1
    grep -E "crashed|FAILED|passed|failed|deselected" "$out/$log" | tail -8
  }
  half tests_gpu.log -m gpu
  half tests.log -m "not gpu" --deselect tests/test_cuda_emulation.py
  return $rc
}

# memcheck over all GPU tests takes about 1.5 minutes on an H100; racecheck is far slower, so it covers
# the kernels whose threads share memory (about 3 minutes).
sanitize() {
  local tool=$1
  shift
  echo "== compute-sanitizer --tool $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 50 \
    python3 -m pytest -m gpu -q -p no:cacheprovider "$@" $extra tests > "$out/$tool.log" 2>&1
  local rc=$?
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$out/$tool.log" | tail -3
  return $rc
}

for step in "${steps[@]}"; do
  case $step in
    build) build || exit 1 ;;
    tests) tests || status=1 ;;
    memcheck) sanitize memcheck || status=1 ;;
    # The kernels that share memory: pooling, softmax, LRN, the conv GEMM on the small odd shapes (the
    # AlexNet-sized conv tests take over 5 minutes under racecheck and run the same GEMM code), and the FFT
    # filter gradient's shapes (not its batch-128 several-chunks test).
    racecheck) sanitize racecheck -k "pool or softmax or lrn or (test_gpu_matches_cpu and not conv1 and not conv2 and not conv3 and not conv4 and not conv5) or (test_gpu_fft_filter_gradient_matches_cpu and not conv2)" || status=1 ;;
    *) echo "unknown step '$step' (build, tests, memcheck, racecheck)" >&2; exit 2 ;;
  esac
done
exit $status
