#!/usr/bin/env bash
# Runs kernels/lrn_cuda.cu, pool_cuda.cu, softmax_cuda.cu, elementwise_cuda.cu, dropout_cuda.cu and augment_cuda.cu
# WITHOUT a GPU: make_emu.py rewrites them so that each CUDA block runs as blockDim OpenMP threads (emu_prelude.h:
# __syncthreads = omp barrier, shared memory per block, warp shuffles through per-warp barriers), and
# compare_with_cpu.cpp compares the CUDA launchers with the CPU backend on odd shapes, outputs and workspaces poisoned
# with NaN. It also checks that every launch goes to the caller's stream and stays within CUDA's limits (grid, block,
# shared memory, __launch_bounds__), at AlexNet's batch-128 shapes too, and runs under ASan/UBSan (out-of-bounds
# reads, global or shared; signed index overflow). It cannot catch races finer than a barrier, nor register or
# occupancy limits, nor the GPU's own float rounding (fused multiply-adds, fast exp/log).
# Takes a minute or two on 2 cores. Usage: tests/layer_cuda_emulation/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for k in lrn pool softmax elementwise dropout augment; do python "$here/make_emu.py" "$root/kernels/${k}_cuda.cu" "$tmp/${k}_emu.cpp"; done
flags=(-std=c++17 -O1 -fopenmp -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
       -Wall -Wextra -Wno-unknown-pragmas -I"$root/kernels" -I"$here" -I"$here/../cuda_emulation_common")
srcs=("$here/compare_with_cpu.cpp" "$tmp/lrn_emu.cpp" "$tmp/pool_emu.cpp" "$tmp/softmax_emu.cpp"
      "$tmp/elementwise_emu.cpp" "$tmp/dropout_emu.cpp" "$tmp/augment_emu.cpp" "$root/kernels/lrn_cpu.cpp"
      "$root/kernels/pool_cpu.cpp" "$root/kernels/softmax_cpu.cpp" "$root/kernels/elementwise_cpu.cpp"
      "$root/kernels/dropout_cpu.cpp" "$root/kernels/augment_cpu.cpp"
      "$root/kernels/gemm_cpu.cpp")  # pool_cpu asks it for cpu_threads_available
# Two compilers at a time (this machine's budget); each object on its own so that a failure names its file.
objs=()
pids=()
for s in "${srcs[@]}"; do
  o="$tmp/$(basename "${s%.*}").o"
  objs+=("$o")
  g++ "${flags[@]}" -c "$s" -o "$o" &
  pids+=($!)
  if (( ${#pids[@]} == 2 )); then wait "${pids[0]}"; wait "${pids[1]}"; pids=(); fi
done
for p in "${pids[@]}"; do wait "$p"; done
g++ "${flags[@]}" "${objs[@]}" -o "$tmp/emu"
GOMP_SPINCOUNT=0 OMP_WAIT_POLICY=passive ASAN_OPTIONS=detect_leaks=0 "$tmp/emu"
