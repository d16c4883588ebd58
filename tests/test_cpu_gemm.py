"""The CPU backend's SGEMM (kernels/gemm_cpu.cpp, under every CPU convolution) against the sums it
promises, bit for bit, for each instruction set's register tile: tests/cpu_gemm/check_sgemm.cpp is
compiled with the kernel for this machine (-march=native, as the build does), for AVX2 and for plain
x86-64 where the CPU runs them, and once under AddressSanitizer (packing reads past an operand abort).
Always at -O3, as the build: GCC forms the fused multiply-adds the bits depend on from -O2 up."""
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _variants():
    yield pytest.param(["-march=native"], id="native")
    yield pytest.param(["-march=native", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
                       id="native-asan")
    if platform.machine() in ("x86_64", "AMD64"):
        flags = _cpu_flags()
        yield pytest.param(["-march=haswell"], id="avx2",
                           marks=pytest.mark.skipif(not {"avx2", "fma"} <= flags, reason="CPU without AVX2/FMA"))
        yield pytest.param(["-march=x86-64"], id="sse2")


@pytest.mark.parametrize("flags", list(_variants()))
def test_sgemm_gives_the_promised_bits_for_every_tile_edge(flags, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    exe = tmp_path / "check_sgemm"
    build = subprocess.run(["g++", "-std=c++17", "-O3", "-fopenmp", *flags, f"-I{ROOT / 'kernels'}",
                            str(ROOT / "tests/cpu_gemm/check_sgemm.cpp"), str(ROOT / "kernels/gemm_cpu.cpp"),
                            "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_WAIT_POLICY": "passive", "ASAN_OPTIONS": "detect_leaks=0"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "ALL OK" in r.stdout
