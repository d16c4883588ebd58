#!/usr/bin/env bash
# The full GPU benchmark, for a machine with a GPU after pyalexnet has been built there with CUDA
# (e.g. by scripts/gpu_check.sh). PyTorch with CUDA must be importable for the cuDNN reference
# (without it every reference column reads "-"). Takes a few minutes on an H100 (capped at 8).
# Usage: bash benchmarks/run_gpu.sh OUTDIR [extra `python -m benchmarks` options]
# Writes OUTDIR/{env.txt,bench.log,bench_<gpu>.json,bench_<gpu>.md,bench_<gpu>_step.png}; copy the
# bench_* files into benchmarks/results/ to commit them.
set -uo pipefail
out=${1:?usage: run_gpu.sh OUTDIR [benchmark options]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,persistence_mode --format=csv 2>&1
  python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.is_available())" 2>&1
  python3 -m pyalexnet info 2>&1
} > "$out/env.txt"
cat "$out/env.txt"

if ! python3 -c "import pyalexnet, sys; sys.exit(0 if pyalexnet.cuda_available() else 1)"; then
  echo "the pyalexnet GPU backend is not usable here (see $out/env.txt); build with PYALEXNET_CUDA=ON first" >&2
  exit 1
fi

timeout 480 python3 -m benchmarks --device cuda --out "$out" "$@" 2>&1 | tee "$out/bench.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 124 ] && echo "benchmark stopped after 8 minutes: lower --repeats or use --only" >&2
exit "$status"
