"""Turns a kernels/*_cuda.cu file into plain C++ that emu_prelude.h runs on the CPU.

Usage: make_emu.py IN.cu OUT.cpp

Rewrites, textually:
  - `kernel<...><<<grid, block, smem, stream>>>(args)` into
    `emu_launch(grid, block, smem, stream, [&] { kernel<...>(args); })`;
    a launch must name its shared memory and stream (the stream check needs it);
  - `extern __shared__ T name[];` into a pointer to the launch's dynamic shared memory;
  - `__shared__ T name[dims];` into a reference to a per-block buffer (fresh and NaN-poisoned
    for every block, its own allocation so ASan sees overruns);
  - `__launch_bounds__(max_threads, ...)` into a check, at the kernel's entry, that the launch
    has at most max_threads threads per block (the GPU refuses such a launch);
  - `#include "cuda_check.h"` into the prelude, `#include <math_constants.h>` away;
  - `grid_for(` into the prelude's `emu_grid_for(` (a cap the checks can lower).
Anything it cannot parse is an error, never a silent skip.
"""
import re
import sys


def matching(src, open_at, open_ch="(", close_ch=")"):
    depth = 0
    for p in range(open_at, len(src)):
        if src[p] == open_ch:
            depth += 1
        elif src[p] == close_ch:
            depth -= 1
            if depth == 0:
                return p
    raise SystemExit(f"make_emu: unbalanced {open_ch} at offset {open_at}")


def rewrite_launches(src):
    out, i = [], 0
    while True:
        j = src.find("<<<", i)
        if j < 0:
            out.append(src[i:])
            return "".join(out)
        k = j
        while k > 0 and src[k - 1].isspace():  # `kernel<T>\n    <<<`
            k -= 1
        end_name = k
        depth = 0
        while k > 0:
            ch = src[k - 1]
            if ch == ">":
                depth += 1
            elif ch == "<":
                depth -= 1
            elif depth == 0 and not (ch.isalnum() or ch in "_:"):
                break
            k -= 1
        name = src[k:end_name]
        if not re.match(r"[A-Za-z_]", name):
            raise SystemExit(f"make_emu: cannot find the kernel name before <<< at offset {j}")
        e = src.find(">>>", j)
        cfg_raw = split_top_raw(src[j + 3:e])
        if len(cfg_raw) != 4:
            raise SystemExit(f"make_emu: launch of {name} must name its shared memory and stream: "
                             "<<<grid, block, smem, stream>>>")
        a0 = e + 3
        while src[a0].isspace():
            a0 += 1
        if src[a0] != "(":
            raise SystemExit(f"make_emu: expected the argument list after the launch of {name}")
        p = matching(src, a0)
        args = src[a0 + 1:p]
        out.append(src[i:k])
        out.append(f"emu_launch({cfg_raw[0]}, {cfg_raw[1]}, {cfg_raw[2]}, {cfg_raw[3]}, "
                   f"[&] {{ {name}({args}); }})")
        i = p + 1


def split_top_raw(s):
    """Splits at commas outside (), [], {} (template arguments in a launch configuration are not expected)."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        if ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def rewrite_shared(src):
    def dynamic(m):
        t, name = m.group(1), m.group(2)
        return f"{t}* {name} = reinterpret_cast<{t}*>(emu_dynamic_smem());"

    src = re.sub(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*)\s+(\w+)\s*\[\s*\]\s*;",
                 dynamic, src)
    counter = iter(range(1, 1 << 30))

    def static(m):
        t, name, dims = m.group(1), m.group(2), m.group(3)
        return (f"{t} (&{name}){dims} = *reinterpret_cast<{t} (*){dims}>"
                f"(emu_static_smem(sizeof({t}{dims}), {next(counter)}));")

    src = re.sub(r"__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*)\s+(\w+)\s*((?:\[[^\]]+\])+)\s*;",
                 static, src)
    left = [src[src.rfind("\n", 0, m.start()) + 1:src.find("\n", m.start())].strip()
            for m in re.finditer(r"__shared__", src)]
    if left:
        raise SystemExit("make_emu: unrecognised __shared__ declaration (one array per declaration): " + "; ".join(left))
    return src


def rewrite_launch_bounds(src):
    out, i = [], 0
    while True:
        m = re.compile(r"__launch_bounds__\s*\(").search(src, i)  # not the word in a comment
        if not m:
            out.append(src[i:])
            return "".join(out)
        j, a0 = m.start(), m.end() - 1
        p = matching(src, a0)
        max_threads = split_top_raw(src[a0 + 1:p])[0]
        body = src.index("{", p)  # the parameter list holds no braces
        out.append(src[i:j])
        out.append(src[p + 1:body + 1])
        out.append(f" emu_check_launch_bounds({max_threads});")
        i = body + 1


def main():
    src = open(sys.argv[1]).read()
    if '#include "cuda_check.h"' not in src:
        raise SystemExit("make_emu: expected #include \"cuda_check.h\" (replaced by the prelude)")
    src = src.replace('#include "cuda_check.h"', '#include "emu_prelude.h"')
    src = src.replace("#include <math_constants.h>", "")
    src = rewrite_launch_bounds(src)
    src = rewrite_shared(src)
    src = rewrite_launches(src)
    # Grids sized with grid_for go through the prelude's emu_grid_for, whose cap a check can lower so that the
    # grid-stride loops (blocks taking several tiles or elements) run here.
    src = re.sub(r"\bgrid_for\(", "emu_grid_for(", src)
    open(sys.argv[2], "w").write(src)


if __name__ == "__main__":
    main()
