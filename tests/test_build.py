"""The extension imports anywhere and says which backends it has and why no GPU is used."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import pyalexnet
from pyalexnet import _C

ROOT = Path(__file__).resolve().parents[1]


def test_backend_info_keys_and_types():
    info = pyalexnet.backend_info()
    for key in ("version", "built_with_cuda", "cuda_build_version", "cuda_runtime_version", "cuda_driver_version",
                "cuda_architectures", "openmp", "cpu_simd", "cpu_threads", "cupy", "gpus", "reason"):
        assert key in info, key
    assert info["version"] == pyalexnet.__version__
    assert isinstance(info["built_with_cuda"], bool)
    assert isinstance(info["gpus"], list)
    if info["built_with_cuda"]:
        assert info["cuda_build_version"] and info["cuda_architectures"]
    for g in info["gpus"]:
        assert {"index", "name", "compute_capability", "memory_gib"} <= set(g)


def test_cpu_simd_names_the_gemm_tile_this_build_has():
    simd = pyalexnet.backend_info()["cpu_simd"]
    assert simd in ("avx512", "avx2", "neon", "sse2", "scalar")
    # A -march=native build (PYALEXNET_NATIVE, the default) on a CPU with AVX-512 or AVX2 has that tile.
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if _C.build_info()["march_native"]:
        if " avx512f" in flags:
            assert simd == "avx512"
        elif " avx2" in flags:
            assert simd == "avx2"
    from pyalexnet.commands.info import format_info
    assert f"{simd.upper()} GEMM" in format_info(pyalexnet.backend_info())


def test_cpu_threads_are_the_threads_the_kernels_use():
    # It was os.cpu_count(): `OMP_NUM_THREADS=1 pyalexnet info` still said 2 threads.
    r = subprocess.run([sys.executable, "-m", "pyalexnet", "info"], env=dict(os.environ, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and ("1 thread (OMP_NUM_THREADS)" in r.stdout or "OpenMP off" in r.stdout), r.stdout
    # Unset, or a value OpenMP does not take, the count is not said to come from it.
    from pyalexnet.commands.info import format_info

    info = dict(pyalexnet.backend_info(), cpu_threads=2)
    for value, said in [(None, "2 threads (every core; OMP_NUM_THREADS sets it)"), ("4", "2 threads (OMP_NUM_THREADS)"),
                        ("abc", "2 threads (OMP_NUM_THREADS='abc' not used)"), ("0", "OMP_NUM_THREADS='0' not used")]:
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        if value is not None:
            env["OMP_NUM_THREADS"] = value
        with mock.patch.dict(os.environ, env, clear=True):
            assert said in format_info(info), value


def test_info_reads_omp_num_threads_as_libgomp_does():
    # `OMP_NUM_THREADS=1,4 pyalexnet info` (a list: the first entry is the outermost level) or "+1" said
    # "1 thread (OMP_NUM_THREADS='1,4' not used)" although libgomp had used it.
    from pyalexnet.commands.info import format_info, omp_num_threads

    for value, n in [("1,4", 1), ("+1", 1), (" 3 ", 3), ("2 , 8", 2), ("1,+2", 1), ("\t1\n", 1), ("007", 7),
                     ("abc", None), ("0", None), ("-1", None), ("+", None), ("+ 1", None), ("", None), ("3,", None),
                     ("1,0", None), ("0,2", None), ("1,,2", None), ("1x", None), ("3 x", None), ("1 2", None),
                     ("1.5", None), ("9223372036854775808", None), ("99999999999999999999", None)]:
        assert omp_num_threads(value) == n, value
    info = dict(pyalexnet.backend_info(), cpu_threads=1)
    for value, said in [("1,4", "1 thread (OMP_NUM_THREADS='1,4': its first entry, the outermost level)"),
                        ("+1", "1 thread (OMP_NUM_THREADS)")]:
        with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": value}):
            assert said in format_info(info), value
    if not pyalexnet.backend_info()["openmp"]:
        return
    # What the kernels' libgomp made of them: the first entry where it takes the value, else every core.
    code = "import pyalexnet; print(pyalexnet.backend_info()['cpu_threads'])"
    for value in ("1,4", "+1", "1,0"):
        r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS=value),
                           capture_output=True, text=True, timeout=120)
        every = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert int(r.stdout.split()[-1]) == (omp_num_threads(value) or every), (value, r.stdout)


def test_a_reader_that_goes_away_stops_a_command_quietly():
    # `pyalexnet predict ... --json | head -1` said "error: [Errno 32] Broken pipe" and exited 2.
    p = subprocess.Popen([sys.executable, "-m", "pyalexnet", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before the command has written anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


def test_cuda_available_agrees_with_reason():
    info = pyalexnet.backend_info()
    assert pyalexnet.cuda_available() == (info["reason"] is None)
    if not info["built_with_cuda"]:
        assert "built without CUDA" in info["reason"]
    elif not info["gpus"]:
        assert info["reason"]


def test_backend_info_is_a_copy():
    pyalexnet.backend_info()["gpus"].append("x")
    assert "x" not in pyalexnet.backend_info()["gpus"]


def test_module_has_the_elementwise_kernels():
    for name in ("relu_forward", "relu_backward", "sgd_update", "build_info", "cuda_query"):
        assert hasattr(_C, name)


def _configure(tmp_path, env_overrides, path_without_nvcc=True, source=ROOT):
    """Runs CMake's configure step only (no compile) of `source` and returns the completed process."""
    pytest.importorskip("pybind11")
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not on PATH (pip install cmake)")
    import pybind11

    env = dict(os.environ)
    env.pop("CUDACXX", None)
    if path_without_nvcc:
        keep = [p for p in env.get("PATH", "").split(os.pathsep) if not (Path(p) / "nvcc").exists()]
        keep.append(str(Path(cmake).parent))
        env["PATH"] = os.pathsep.join(keep)
    args = [cmake, str(source), f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"]
    args += [f"-D{k}={v}" for k, v in env_overrides.items()]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_cmake_configures_cpu_only_without_nvcc(tmp_path):
    r = _configure(tmp_path, {})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nvcc not found: building the CPU backend only" in r.stdout + r.stderr


@pytest.mark.slow
def test_cpu_only_build_compiles_and_reports_itself(tmp_path):
    # The CI build has nvcc, so code only a build without CUDA compiles (bindings behind #ifdef
    # PYA_WITH_CUDA) is built here: once broken by an include placed inside that #ifdef.
    r = _configure(tmp_path, {"PYALEXNET_CUDA": "OFF"})
    assert r.returncode == 0, r.stdout + r.stderr
    built = subprocess.run([shutil.which("cmake"), "--build", ".", "--parallel"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    (module,) = tmp_path.glob("_C*.so")
    probe = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('_C', sys.argv[1]); "
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); i = m.build_info(); "
             "print(i['built_with_cuda'], i['cpu_simd'])")
    r = subprocess.run([sys.executable, "-c", probe, str(module)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "False" and r.stdout.split()[1] in ("avx512", "avx2", "neon", "sse2", "scalar")


def test_the_source_distribution_holds_what_the_build_needs(tmp_path):
    # pip builds the extension from the sdist (what a package index serves where no wheel fits), so every
    # file CMake compiles must be in it. Without MANIFEST.in it held the Python files alone and
    # `pip install pyalexnet-0.1.0.tar.gz` failed: "does not appear to contain CMakeLists.txt".
    import tarfile

    # From a copy without this checkout's build products: setuptools also packs whatever an old
    # pyalexnet.egg-info/SOURCES.txt lists, which would hide a missing MANIFEST.in line.
    junk = shutil.ignore_patterns(".git", "*.egg-info", "build", "__pycache__", "*.so", ".pytest_cache", "wt")
    shutil.copytree(ROOT, tmp_path / "checkout", ignore=junk)
    r = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                        "build_meta.build_sdist(sys.argv[1])", str(tmp_path / "dist")],
                       cwd=tmp_path / "checkout", capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (sdist,) = (tmp_path / "dist").glob("pyalexnet-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "unpacked", **kwargs)
    wanted = {"CMakeLists.txt", "setup.py", "pyproject.toml", "README.md"}
    for folder in ("kernels", "bindings", "tests", "pyalexnet"):
        wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".so")}
    wanted.add("LICENSE")
    assert sorted(wanted - names) == []
    # The licence, without setuptools' warning that `project.license` as a table stops building in 2027.
    (info,) = (tmp_path / "unpacked").glob("*/PKG-INFO")
    assert "License: MIT" in info.read_text().splitlines() and "project.license" not in r.stderr
    assert not [n for n in names if n.endswith(".so") or "__pycache__" in n]  # no build of this machine's
    # CMake finds every source it lists in the unpacked sdist (a missing one fails the configure step).
    (tmp_path / "build").mkdir()
    (source,) = (tmp_path / "unpacked").iterdir()
    r = _configure(tmp_path / "build", {"PYALEXNET_CUDA": "OFF"}, source=source)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_cmake_cuda_switched_off(tmp_path):
    r = _configure(tmp_path, {"PYALEXNET_CUDA": "OFF"}, path_without_nvcc=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CUDA switched off" in r.stdout


def test_cmake_cuda_forced_on_without_nvcc_fails_clearly(tmp_path):
    r = _configure(tmp_path, {"PYALEXNET_CUDA": "ON"})
    assert r.returncode != 0
    assert "PYALEXNET_CUDA=ON but no CUDA compiler was found" in r.stdout + r.stderr


@pytest.mark.parametrize("option, value, said", [
    ("PYALEXNET_CUDA", "maybe", "PYALEXNET_CUDA='maybe' is not one of AUTO, ON or OFF"),
    ("PYALEXNET_NATIVE", "of", "PYALEXNET_NATIVE='of' is not ON or OFF"),
])
def test_cmake_refuses_an_option_value_it_does_not_know(tmp_path, option, value, said):
    # Any PYALEXNET_CUDA but OFF meant AUTO (=no and =0 built the CUDA backend where nvcc was found), and any
    # PYALEXNET_NATIVE word but CMake's false ones meant ON.
    r = _configure(tmp_path, {"PYALEXNET_CUDA": "OFF", option: value})
    assert r.returncode != 0
    assert said in r.stdout + r.stderr


def test_cmake_takes_cmake_spellings_of_off_for_cuda(tmp_path):
    r = _configure(tmp_path, {"PYALEXNET_CUDA": "no"}, path_without_nvcc=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CUDA switched off" in r.stdout


@pytest.mark.parametrize("user_value, expected", [(None, "PASSIVE"), ("active", "ACTIVE")])
def test_openmp_threads_sleep_between_regions_unless_the_user_says_otherwise(user_value, expected):
    # libgomp prints the wait policy it took (at _C's load) with OMP_DISPLAY_ENV.
    if not pyalexnet.backend_info()["openmp"]:
        pytest.skip("built without OpenMP")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_DISPLAY_ENV"] = "true"
    if user_value:
        env["OMP_WAIT_POLICY"] = user_value
    r = subprocess.run([sys.executable, "-c", "import pyalexnet"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"OMP_WAIT_POLICY = '{expected}'" in r.stdout + r.stderr


# A product on numpy's BLAS, then the CPU time the process burns while its main thread sleeps: the BLAS
# threads' spinning, which takes the cores the next convolution wants.
_BLAS_SPIN_PROBE = """
import time
{first}
import numpy as np
a = np.ones((1024, 1024), np.float32)
for _ in range(3):
    a @ a
c0 = time.process_time()
time.sleep(0.3)
print("spin_ms", (time.process_time() - c0) * 1e3)
"""


def _blas_spin_ms(first_import, env):
    r = subprocess.run([sys.executable, "-c", _BLAS_SPIN_PROBE.format(first=first_import)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.split("spin_ms")[1])


def test_numpy_blas_threads_sleep_after_a_product_whichever_is_imported_first():
    # OpenBLAS's threads spin ~0.1 s of a core each after every product unless OPENBLAS_THREAD_TIMEOUT,
    # read when numpy loads it, says otherwise; pyalexnet sets it (a user's own value is kept), and where
    # numpy came first (most scripts), has OpenBLAS read it again and restart its threads.
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except TypeError:  # numpy < 1.25 has no mode=: its build info names the libraries ("openblas64_")
        info = getattr(np.__config__, "blas_ilp64_opt_info", None) or getattr(np.__config__, "blas_opt_info", {})
        blas = " ".join(info.get("libraries", [])) or "unknown"
    if "openblas" not in blas.lower():
        pytest.skip(f"numpy's BLAS is {blas}, not OpenBLAS")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: OpenBLAS runs no extra threads")
    if _blas_spin_ms("", env) < 30:
        pytest.skip("this OpenBLAS does not spin after a product even with numpy alone")
    assert _blas_spin_ms("import pyalexnet", env) < 15
    assert _blas_spin_ms("import numpy, pyalexnet", env) < 15
    # The products still run on every thread OpenBLAS had, and still give the right answer.
    check = subprocess.run([sys.executable, "-c", "import numpy as np, pyalexnet; a = np.arange(1 << 20, dtype=np.float64)"
                            ".reshape(1024, 1024) % 7; print(int((a @ a.T).trace()))"],
                           env=env, capture_output=True, text=True, timeout=120)
    a = np.arange(1 << 20, dtype=np.float64).reshape(1024, 1024) % 7
    assert check.stdout.strip() == str(int((a @ a.T).trace())), check.stderr
    kept = subprocess.run([sys.executable, "-c", "import os, pyalexnet; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"],
                          env={**env, "OPENBLAS_THREAD_TIMEOUT": "20"}, capture_output=True, text=True, timeout=120)
    assert kept.stdout.strip() == "20", kept.stderr


def test_the_module_formats_its_messages_without_iostreams():
    # Built by the H100 image's own GCC, _C carried libstdc++ locale code of its own and an ostringstream there
    # segfaulted (bindings/array.cpp, shape_str): an error message became a crash. A later formatter of numbers
    # used one again; std::to_string and snprintf only.
    sources = sorted((ROOT / "bindings").glob("*.[ch]*")) + sorted((ROOT / "kernels").glob("*.[ch]*"))
    assert len(sources) > 10
    code = {p.name: re.sub(r"//[^\n]*", "", p.read_text()) for p in sources}  # comments may name them
    offenders = [name for name, text in code.items() if re.search(r"<(sstream|iostream|ostream)>|stringstream", text)]
    assert offenders == []


def test_a_source_tree_without_the_compiled_module_is_named_as_such(tmp_path):
    # `python3 -m pyalexnet` from a clone imports the clone's pyalexnet/ (the working directory comes first): after
    # a plain `pip install .` that folder held no _C, and the error said to reinstall, which changed nothing.
    tree = tmp_path / "clone"
    shutil.copytree(Path(pyalexnet.__file__).parent, tree / "pyalexnet", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    (tree / "setup.py").write_text("# the source tree's\n")
    # As after a plain install: an editable install's finder would fetch _C from the checkout it points at.
    code = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; import pyalexnet"
    run = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode != 0
    assert "source tree" in run.stderr and "holds no compiled module" in run.stderr and "another folder" in run.stderr
