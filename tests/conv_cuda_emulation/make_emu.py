"""Turns kernels/conv_cuda.cu into plain C++ that runs each CUDA block as blockDim OpenMP threads
(barrier = __syncthreads)."""
import os, re, sys
src = open(sys.argv[1]).read()
src = src.replace('#include "cuda_check.h"', '#include "emu_prelude.h"')
# The Winograd and FFT kernels live in headers that only conv_cuda.cu includes: inline them so their launches are
# rewritten too.
for name in ("conv_winograd_cuda.h", "conv_fft_cuda.h"):
    inc = f'#include "{name}"'
    assert src.count(inc) == 1, f"conv_cuda.cu must include {name} once"
    header = open(os.path.join(os.path.dirname(sys.argv[1]), name)).read()
    src = src.replace(inc, header.replace("#pragma once", "", 1))
# Grid-stride launches go through the prelude's emu_grid_for, which the big-shape checks can cap.
src = re.sub(r"\bgrid_for\(", "emu_grid_for(", src)
out, i = [], 0
while True:
    j = src.find("<<<", i)
    if j < 0:
        out.append(src[i:]); break
    # kernel name: back to start of identifier (allow template args)
    k = j
    depth = 0
    while k > 0:
        ch = src[k - 1]
        if ch == '>': depth += 1
        elif ch == '<': depth -= 1
        elif depth == 0 and not (ch.isalnum() or ch == '_'):
            break
        k -= 1
    name = src[k:j]
    e = src.find(">>>", j)
    cfg = src[j + 3:e]
    parts, d, cur = [], 0, ""
    for ch in cfg:
        if ch in "([": d += 1
        if ch in ")]": d -= 1
        if ch == "," and d == 0: parts.append(cur); cur = ""
        else: cur += ch
    parts.append(cur)
    a0 = e + 3
    assert src[a0] == "("
    d, p = 0, a0
    while True:
        if src[p] == "(": d += 1
        if src[p] == ")":
            d -= 1
            if d == 0: break
        p += 1
    args = src[a0 + 1:p]
    out.append(src[i:k])
    assert len(parts) == 4, f"launch of {name} must name its shared memory and stream: <<<grid, block, smem, stream>>>"
    out.append(f"emu_launch({parts[0]}, {parts[1]}, {parts[2]}, {parts[3]}, [&] {{ {name}({args}); }})")
    i = p + 1
open(sys.argv[2], "w").write("".join(out))
