#!/usr/bin/env bash
# Runs kernels/conv_cuda.cu WITHOUT a GPU: each CUDA block becomes 256 OpenMP threads
# (__syncthreads = omp barrier, __shared__ = static), and the results of the CUDA
# launchers (tiling, FastDiv, slicing, epilogues, bias) are compared with the CPU
# backend on odd shapes. It cannot catch GPU-only faults (alignment, occupancy,
# races finer than a barrier); it does catch index and tiling mistakes.
# Takes about a minute on 2 cores. Usage: tests/conv_cuda_emulation/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python "$here/make_emu.py" "$root/kernels/conv_cuda.cu" "$tmp/conv_emu.cpp"
g++ -std=c++17 -O2 -fopenmp -I"$root/kernels" -I"$here" "$here/compare_with_cpu.cpp" "$tmp/conv_emu.cpp" \
  "$root/kernels/conv_cpu.cpp" "$root/kernels/gemm_cpu.cpp" -o "$tmp/emu"
GOMP_SPINCOUNT=0 "$tmp/emu"
