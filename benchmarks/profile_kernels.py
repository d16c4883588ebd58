"""Per-kernel GPU times inside chosen benchmark rows: where a row's time goes, kernel by kernel.

The benchmark times a whole op (several launches for a convolution); this splits ours into its kernels
with torch.profiler, whose CUPTI trace records every kernel the process launches, CuPy's and ours
included. Usage on a GPU machine, after building pyalexnet with CUDA:

    python3 -m benchmarks.profile_kernels --only conv1.dgrad,conv4.wgrad [--calls 5] [--batch 128]
"""
from __future__ import annotations

import argparse
import collections


def main(argv=None) -> int:
    from pyalexnet.bench.backends import Ours
    from pyalexnet.bench.rows import Drawer, build_rows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", required=True, help="comma-separated substrings of benchmark row names")
    ap.add_argument("--calls", type=int, default=5, help="profiled calls per row (after one warm-up call)")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args(argv)

    try:
        import cupy as cp
        import torch
    except ImportError as exc:
        raise SystemExit(f"profile_kernels needs CuPy and PyTorch with CUDA on a GPU machine: {exc}") from None
    from torch.profiler import ProfilerActivity, profile

    wanted = [s for s in args.only.split(",") if s]
    rows = [r for r in build_rows(args.batch) if any(w in r.name for w in wanted)]
    if not rows:
        raise SystemExit(f"no benchmark row matches {wanted}")
    ours, drawer = Ours(cp), Drawer(cp)
    torch.cuda.init()
    for row in rows:
        fn = row.build(ours, row.inputs(drawer))
        fn()
        cp.cuda.Device().synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.calls):
                fn()
            cp.cuda.Device().synchronize()
        per_kernel: dict[str, list[float]] = collections.defaultdict(list)
        first_start = last_end = None
        for e in prof.events():
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            per_kernel[e.name].append(e.device_time_total / 1000.0)
            start = e.time_range.start
            end = e.time_range.end
            first_start = start if first_start is None else min(first_start, start)
            last_end = end if last_end is None else max(last_end, end)
        busy = sum(sum(v) for v in per_kernel.values()) / args.calls
        span = (last_end - first_start) / 1000.0 / args.calls if per_kernel else 0.0
        print(f"== {row.name} ({row.shape}): kernels {busy:.3f} ms per call, first start to last end "
              f"{span:.3f} ms per call (gaps = launch overhead)")
        for name, times in sorted(per_kernel.items(), key=lambda kv: -sum(kv[1])):
            print(f"   {sum(times) / args.calls:8.3f} ms  x{len(times) // args.calls:<3d} {name[:150]}")
        del fn
        cp.get_default_memory_pool().free_all_blocks()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
