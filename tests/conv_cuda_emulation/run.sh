#!/usr/bin/env bash
# Runs kernels/conv_cuda.cu WITHOUT a GPU: each CUDA block becomes blockDim OpenMP threads
# (__syncthreads = omp barrier, __shared__ = static), and the results of the CUDA
# launchers (tiling, FastDiv, slicing, epilogues, bias) are compared with the CPU
# backend on odd shapes, outputs and workspace poisoned with NaN. It also checks every
# launch's configuration and stream, runs the blocks with the largest offsets of
# AlexNet's layers at batch 128, and runs under ASan/UBSan (out-of-bounds reads,
# index overflow, misaligned vector accesses). It cannot catch races finer than a
# barrier or register/occupancy limits.
# The kernels use no warp shuffles (this harness has none). Takes several minutes on 2 cores.
# Usage: tests/conv_cuda_emulation/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python "$here/make_emu.py" "$root/kernels/conv_cuda.cu" "$tmp/conv_emu.cpp"
# AddressSanitizer: an out-of-bounds read that a GPU might silently survive aborts here. UBSan: signed
# (32-bit index) overflow and misaligned float4/float2 accesses abort too.
g++ -std=c++17 -O2 -fopenmp -g -DPYA_CONV_EMULATION -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
  -I"$root/kernels" -I"$here" -I"$here/../cuda_emulation_common" "$here/compare_with_cpu.cpp" "$tmp/conv_emu.cpp" \
  "$root/kernels/conv_cpu.cpp" "$root/kernels/gemm_cpu.cpp" -o "$tmp/emu"
GOMP_SPINCOUNT=0 ASAN_OPTIONS=detect_leaks=0 "$tmp/emu"
