#!/usr/bin/env bash
# Everything a GPU session needs, in one command that ends within a time budget (a lent machine gives
# 10 minutes a call and charges a start for each): build, the whole test suite, the benchmark, a short
# training run, the data-loading benchmark, then memcheck and racecheck with whatever time is left.
# Usage: bash scripts/gpu_session.sh OUTDIR [SECONDS, default 540]
# OUTDIR receives at most 6 files (the device tool returns 8): summary.txt, logs.tar.gz (every log and result file) and the
# benchmark's bench_<gpu>.{json,md}, _ops.png and _step.png, ready to copy into benchmarks/results/.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUTDIR [SECONDS]}
budget=${2:-540}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
work=$(mktemp -d)
deadline=$((SECONDS + budget))
left() {  # seconds left, at most $1, keeping 15 s to pack the results
  local l=$((deadline - SECONDS - 15))
  [ "$l" -gt "$1" ] && l=$1
  [ "$l" -lt 1 ] && l=1
  echo "$l"
}
summary="$out/summary.txt"
note() { echo "$*" | tee -a "$summary"; }
: > "$summary"

step() {  # step NAME MAX_SECONDS COMMAND...: runs it under timeout, notes how it ended
  local name=$1 max=$2
  shift 2
  local t0=$SECONDS
  timeout "$(left "$max")" "$@" > "$work/$name.out" 2>&1
  local rc=$?
  note "== $name: rc $rc$([ $rc -eq 124 ] && echo ' (stopped at its time limit)') in $((SECONDS - t0)) s"
  tail -12 "$work/$name.out" | cut -c1-300 >> "$summary"
  return $rc
}

step check-build 180 bash scripts/gpu_check.sh "$work/check" build || { note "build failed"; }
if python3 -c "import pyalexnet, sys; sys.exit(0 if pyalexnet.cuda_available() else 1)" 2>/dev/null; then
  step check-tests 150 bash scripts/gpu_check.sh "$work/check" tests
  step bench 150 bash benchmarks/run_gpu.sh "$work/bench" --repeats 20 --step-repeats 5
  step train 90 python3 -m pyalexnet train --device cuda --checkpoint-dir "$work/train"
  step pictures 30 python3 -m pyalexnet eval "$work/train" --device cuda --pictures --quiet
  # Where a small-preset GPU step spends its time in Python (session 4's H100 trained it at only 8-14 ms a
  # step at batch 32, for kernels of microseconds): the top of the profile goes into the summary.
  step profile 60 python3 -m cProfile -o "$work/train_gpu.prof" -m pyalexnet train --device cuda --steps 300 --quiet
  python3 -c "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats('tottime').print_stats(25)" \
    "$work/train_gpu.prof" > "$work/profile_top.txt" 2>&1 && grep -A32 "ncalls" "$work/profile_top.txt" >> "$summary"
  step data 70 python3 -m pyalexnet.data.bench --out "$work/data"
  step memcheck 150 bash scripts/gpu_check.sh "$work/check" memcheck
  step racecheck 400 bash scripts/gpu_check.sh "$work/check" racecheck
else
  note "the CUDA backend is not usable here: see check/env.txt (pyalexnet info) and check/build.log"
fi

rm -f "$work"/train/*.npz
cp "$work"/bench/bench_* "$out"/ 2>/dev/null
tar czf "$out/logs.tar.gz" -C "$work" . && note "packed: logs.tar.gz"
rm -rf "$work"
