#!/usr/bin/env bash
# The GPU side of the checks, for a machine with a GPU (the device copy of the repo is all it needs):
# builds in place offline, runs the GPU tests, then runs them again under compute-sanitizer's memcheck
# and racecheck. Usage: bash scripts/gpu_check.sh OUTDIR [extra pytest args]
# Writes OUTDIR/{env.txt,build.log,gpu_tests.log,memcheck.log,racecheck.log}; exits non-zero if any step failed.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [pytest args]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
status=0

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -1
  python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1
} > "$out/env.txt"

echo "== build"
PYALEXNET_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -e . > "$out/build.log" 2>&1 || { echo "build failed"; tail -30 "$out/build.log"; exit 1; }
python3 -m pyalexnet info | tee -a "$out/env.txt"

echo "== GPU tests"
python3 -m pytest -m gpu -v -rs "$@" tests > "$out/gpu_tests.log" 2>&1 || status=1
tail -3 "$out/gpu_tests.log"

# Sanitizers: CuPy's memory pool hides nothing from memcheck (it checks kernel accesses against
# allocations), and the GPU tests are small enough to run whole under each tool.
for tool in memcheck racecheck; do
  echo "== compute-sanitizer --tool $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 50 \
    python3 -m pytest -m gpu -q -x -p no:cacheprovider "$@" tests > "$out/$tool.log" 2>&1 || status=1
  grep -E "ERROR SUMMARY|passed|failed" "$out/$tool.log" | tail -3
done
exit $status
