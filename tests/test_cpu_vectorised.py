"""Every loop of the CPU kernels that GCC vectorises for AVX-512 it must also vectorise for AVX2.

The build compiles the CPU kernels with -march=native, so what a user's machine gets depends on its
instruction set, and a loop that is vectorised on the developers' AVX-512 machine can fall back to scalar
code on an AVX2 laptop without any test noticing: the results are the same, only 3-4x slower. That is
how the CPU LRN's d^-3/4 ran scalar on AVX2 until the build gave lrn_cpu.cpp -fno-trapping-math (see
CMakeLists.txt). This compiles each kernels/*_cpu.cpp with the flags CMakeLists.txt gives it, for
x86-64-v4 and x86-64-v3, and compares the lists of vectorised loops GCC reports. Compile-only: the CPU
running the test need not have either instruction set. A last check reads the OpenMP pragmas: a threading
threshold written as a plain `if` also turned off `simd` below it."""
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_SOURCES = sorted(p.name for p in (ROOT / "kernels").glob("*_cpu.cpp"))

# Loops that may stay scalar on AVX2, by the text of the loop's line and the next one, with why.
AVX512_ONLY = {
    # pack_a's transposed copy of MR rows: MR is 8 with AVX-512 (8 floats, one ymm) but 6 with AVX2's 6x16
    # tile, which fills no vector.
    "for (int64_t k = 0; k < kc; ++k) for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i * rs + k];",
}

pytestmark = [
    pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 instruction sets"),
]


def _cmake_flags(source):
    """The C++ flags CMakeLists.txt compiles kernels/<source> with (less -march and warnings)."""
    text = (ROOT / "CMakeLists.txt").read_text()
    base = re.search(r"target_compile_options\(_C PRIVATE \$<\$<COMPILE_LANGUAGE:CXX>:([^>]*)>\)", text)
    assert base, "CMakeLists.txt no longer sets the CXX flags the way this test reads them"
    flags = [f for f in base.group(1).split() if not f.startswith("-W")]
    for files, options in re.findall(r"set_source_files_properties\(([^)]*?)PROPERTIES\s+COMPILE_OPTIONS\s+([^)]*)\)",
                                     text):
        if f"kernels/{source}" in files:
            flags += options.split()
    return flags


def _vectorised_loops(source, march, tmp_path):
    cmd = ["g++", "-std=c++17", *_cmake_flags(source), f"-march={march}", "-fopenmp", f"-I{ROOT / 'kernels'}",
           "-c", str(ROOT / "kernels" / source), "-o", str(tmp_path / f"{march}.o"), "-fopt-info-vec-optimized"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    loops = set()
    for path, line in re.findall(r"^(\S+?):(\d+):\d+: optimized: loop vectorized", r.stderr, re.M):
        loops.add((Path(path).name, int(line)))
    return loops


def _source_lines(name, line, count=1):
    return " ".join(t.strip() for t in (ROOT / "kernels" / name).read_text().splitlines()[line - 1:line - 1 + count])


def test_cmake_flags_are_read():
    assert "-O3" in _cmake_flags("lrn_cpu.cpp")
    assert "-fno-trapping-math" in _cmake_flags("lrn_cpu.cpp")
    assert "-fno-trapping-math" not in _cmake_flags("pool_cpu.cpp")


@pytest.mark.parametrize("source", CPU_SOURCES)
def test_avx2_vectorises_what_avx512_does(source, tmp_path):
    avx512 = _vectorised_loops(source, "x86-64-v4", tmp_path)
    avx2 = _vectorised_loops(source, "x86-64-v3", tmp_path)
    assert avx512, f"GCC reported no vectorised loop in {source}: the test no longer reads its report"
    scalar = sorted(f"{name}:{line}: {_source_lines(name, line)}" for name, line in avx512 - avx2
                    if _source_lines(name, line, 2) not in AVX512_ONLY)
    assert not scalar, "vectorised for AVX-512 but scalar on AVX2:\n" + "\n".join(scalar)


def test_simd_loops_stay_vectorised_below_the_threading_threshold():
    """`omp parallel for simd if (cond)` applies the if to the simd construct too: below the threshold the
    loop ran as scalar code, and ReLU's select became a branch that random signs mispredict (65536 floats:
    288 us instead of 8 us). The threshold must name the construct it is for: `if (parallel : cond)`."""
    unmodified = []
    for path in sorted((ROOT / "kernels").glob("*.cpp")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*#pragma omp\b.*\bsimd\b", line):
                for clause in re.findall(r"\bif\s*\(([^)]*)", line):
                    if not re.match(r"\s*parallel\s*:", clause):
                        unmodified.append(f"{path.name}:{i}: {line.strip()}")
    assert not unmodified, "\n".join(unmodified)
