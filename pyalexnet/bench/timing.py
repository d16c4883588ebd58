"""Honest timers: warm-up, many repeats, median (and min/max); on a GPU CUDA events on the
current stream with the L2 cache flushed before every repeat; on a CPU time.perf_counter."""
from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np


def summarize(samples_ms: list[float]) -> dict:
    return {
        "median_ms": statistics.median(samples_ms),
        "min_ms": min(samples_ms),
        "max_ms": max(samples_ms),
        "repeats": len(samples_ms),
    }


class CpuTimer:
    kind = "cpu"

    def __init__(self, *, repeats: int, warmup: int, budget_s: float) -> None:
        self.repeats, self.warmup, self.budget_s = repeats, warmup, budget_s

    def sync(self) -> None:
        pass

    def now(self):
        return time.perf_counter()

    def elapsed_ms(self, a, b) -> float:
        return (b - a) * 1e3

    def flush(self) -> None:
        pass

    def _planned_repeats(self, first_ms: float) -> int:
        # At least 3 samples when repeats allow, else as many as fit in the row's time budget.
        fit = int(self.budget_s * 1e3 / max(first_ms, 1e-3))
        return max(min(self.repeats, 3), min(self.repeats, fit))

    def measure(self, fn: Callable[[], object]) -> dict:
        """Times fn() (its first call already done by the caller, as a check that it runs)."""
        for _ in range(max(0, self.warmup - 1)):
            fn()
        self.sync()
        t0 = self.now()
        fn()
        t1 = self.now()
        self.sync()
        samples = [self.elapsed_ms(t0, t1)]
        for _ in range(self._planned_repeats(samples[0]) - 1):
            self.flush()
            a = self.now()
            fn()
            b = self.now()
            samples.append(self.elapsed_ms(a, b))
        self.sync()
        return summarize(samples)

    def marker(self) -> "Marker":
        return Marker(self)


class GpuTimer(CpuTimer):
    """CUDA events recorded on CuPy's current stream (PyTorch's work is on the same legacy
    default stream, so the events bracket it too)."""
    kind = "cuda"

    def __init__(self, cp, *, repeats: int, warmup: int, budget_s: float, l2_bytes: int) -> None:
        super().__init__(repeats=repeats, warmup=warmup, budget_s=budget_s)
        self.cp = cp
        # Writing a buffer twice the L2's size evicts whatever the previous repeat left there.
        self.flush_bytes = max(2 * int(l2_bytes), 1 << 20)
        self._scratch = cp.empty(self.flush_bytes, dtype=cp.uint8)

    def sync(self) -> None:
        self.cp.cuda.get_current_stream().synchronize()

    def now(self):
        e = self.cp.cuda.Event()
        e.record()
        return e

    def elapsed_ms(self, a, b) -> float:
        b.synchronize()
        return float(self.cp.cuda.get_elapsed_time(a, b))

    def flush(self) -> None:
        self._scratch.fill(1)

    def measure(self, fn: Callable[[], object]) -> dict:
        for _ in range(max(0, self.warmup - 1)):
            fn()
        self.flush()
        a, b = self.now(), None
        fn()
        b = self.now()
        first = self.elapsed_ms(a, b)
        events = []
        for _ in range(self._planned_repeats(first) - 1):
            self.flush()
            a = self.now()
            fn()
            events.append((a, self.now()))
        self.sync()
        return summarize([first] + [self.elapsed_ms(a, b) for a, b in events])


class Marker:
    """Named points within one run of a sequence (e.g. a training step); durations between them.
    On a GPU the points are events, so reading them waits only at the end."""

    def __init__(self, timer: CpuTimer) -> None:
        self.timer = timer
        self.points = [("start", timer.now())]

    def __call__(self, name: str) -> None:
        self.points.append((name, self.timer.now()))

    def durations(self) -> list[tuple[str, float]]:
        self.timer.sync()
        return [(name, self.timer.elapsed_ms(prev, t))
                for (_, prev), (name, t) in zip(self.points, self.points[1:])]


# ---------------------------------------------------------------------------------------------
# Ceilings measured in the same run: a large copy (bandwidth) and a large float32 matrix product.

_POOLS: dict[int, ThreadPoolExecutor] = {}
SMALL_COPY_ELEMENTS = 1 << 20  # float32 elements: kernels/cpu_parallel.h's one-thread bound for ReLU, SGD, dropout


def _copy_pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers)
    return _POOLS[workers]


def make_copy(timer, xp, nbytes: int):
    """(copy, how): a call that copies nbytes between two fresh buffers on the timer's device (a
    device-to-device cudaMemcpyAsync on a GPU; numpy.copyto in one slice per core on a CPU)."""
    src = xp.ones(max(nbytes // 4, 1), dtype=xp.float32)
    dst = xp.empty_like(src)
    nbytes = src.nbytes
    if timer.kind == "cuda":
        cp = xp
        kind = cp.cuda.runtime.memcpyDeviceToDevice

        def copy():
            cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes, kind, cp.cuda.get_current_stream().ptr)
        return copy, f"cudaMemcpyAsync device-to-device of {nbytes / 2**20:.0f} MiB"
    if src.size < SMALL_COPY_ELEMENTS:
        # Our memory-bound CPU kernels run on one thread below 1M elements (waking a sleeping pool costs more
        # than it saves there: kernels/cpu_parallel.h), and so does the copy they are compared with: on a pool
        # of threads a small copy was all wake-up, and dropout's backward read 2395% of it.
        def copy_one_thread():
            np.copyto(dst, src)
        return copy_one_thread, f"numpy.copyto of {nbytes / 2**20:.2f} MiB on one thread"
    # numpy copies on one thread; the kernels use every core, so copy in one slice per core.
    workers = os.cpu_count() or 1
    pool = _copy_pool(workers)
    cuts = np.linspace(0, src.size, workers + 1).astype(int)

    def copy():
        list(pool.map(lambda i: np.copyto(dst[cuts[i]:cuts[i + 1]], src[cuts[i]:cuts[i + 1]]), range(workers)))
    return copy, f"numpy.copyto of {nbytes / 2**20:.0f} MiB on {workers} threads"


def measure_ceilings(timer: CpuTimer, xp, *, quick: bool, free_bytes: int | None = None) -> dict:
    if timer.kind == "cuda":
        copy_bytes = 1 << (26 if quick else 30)
        if free_bytes:
            copy_bytes = min(copy_bytes, free_bytes // 4)
        n = 1024 if quick else 8192
    else:
        copy_bytes = 1 << (23 if quick else 28)
        n = 256 if quick else 2048
    copy, how = make_copy(timer, xp, copy_bytes)
    copy()
    t_copy = timer.measure(copy)
    del copy
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    c = xp.empty((n, n), dtype=xp.float32)

    def mm():
        xp.matmul(a, b, out=c)
    mm()
    t_mm = timer.measure(mm)
    del c
    fp32 = {"fp32_flops_per_s": 2 * n ** 3 / (t_mm["median_ms"] * 1e-3),
            "fp32_how": f"{'cupy (cuBLAS SGEMM)' if timer.kind == 'cuda' else 'numpy (BLAS)'} matmul "
                        f"{n}x{n}x{n} float32",
            "fp32_timing": t_mm}
    if timer.kind != "cuda":
        # On a CPU numpy's BLAS is not always the fastest GEMM here (an OpenBLAS held to older kernels, say):
        # pyalexnet's own SGEMM, as a 1x1 convolution of the same size, counts too, and the faster one is the
        # ceiling, so no row reads above 100% of it for want of a better reference.
        from .. import ops

        x, w = a.reshape(1, n, n // 32, 32), b.reshape(n, n, 1, 1)

        def own():
            ops.conv2d(x, w)
        own()
        t_own = timer.measure(own)
        own_rate = 2 * n ** 3 / (t_own["median_ms"] * 1e-3)
        fp32["fp32_candidates"] = {"numpy": fp32["fp32_flops_per_s"], "pyalexnet": own_rate}
        if own_rate > fp32["fp32_flops_per_s"]:
            fp32.update(fp32_flops_per_s=own_rate, fp32_timing=t_own,
                        fp32_how=f"pyalexnet's SGEMM (a 1x1 conv2d, {n}x{n}x{n}), faster than numpy's "
                                 f"{fp32['fp32_flops_per_s'] / 1e12:.2f} TFLOP/s matmul")
    del a, b
    return {
        "bandwidth_bytes_per_s": 2 * copy_bytes / (t_copy["median_ms"] * 1e-3),
        "bandwidth_how": how + " (read + write counted)",
        "bandwidth_timing": t_copy,
        **fp32,
    }


# H100/H200 nominal FP32 (non-tensor-core) peaks from NVIDIA's datasheets, in FLOP/s.
def nominal_fp32_peak(device_name: str) -> float | None:
    name = device_name.upper()
    if "H100" in name or "H200" in name:
        if "PCIE" in name:
            return 51.2e12
        if "NVL" in name:
            return 60.0e12
        return 66.9e12
    return None
