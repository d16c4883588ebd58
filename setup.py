"""Builds pyalexnet._C with CMake (the pybind11 cmake_example pattern).

Environment variables (see CMakeLists.txt): PYALEXNET_CUDA=AUTO|ON|OFF,
PYALEXNET_CUDA_ARCHS="80-real;90", PYALEXNET_NATIVE=ON|OFF, CMAKE_BUILD_PARALLEL_LEVEL.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import ExecError, SetupError

# Build options CMakeLists.txt reads (README, "Build options"). One the environment leaves unset is removed from
# the CMake cache (-U), so it takes its default: a cache keeps values from an earlier build, and a
# `PYALEXNET_NATIVE=OFF pip install --no-build-isolation .` made every later build of that folder portable too.
OPTIONS = ("PYALEXNET_CUDA", "PYALEXNET_CUDA_ARCHS", "PYALEXNET_NATIVE")
COMPILERS = ("c++", "g++", "clang++", "icpx", "icx", "icpc", "CC")  # the names CMake looks for

ROOT = Path(__file__).parent.resolve()


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def run(self) -> None:
        super().run()
        if not self.inplace and (ROOT / "pyalexnet" / "__init__.py").exists():
            # `python3 -m pyalexnet` puts the working directory first on sys.path, so run from the clone it
            # imports the clone's pyalexnet/, not the installed one: without the module there, the README's
            # `python3 -m pip install . && python3 -m pyalexnet train` failed in a fresh clone ("cannot import
            # name '_C'"). A copy next to the sources, as an editable install has, makes both work.
            try:
                self.copy_extensions_to_source()
            except Exception as exc:  # a read-only tree: the installed package still works elsewhere
                print(f"pyalexnet: could not copy the built module into {ROOT / 'pyalexnet'} ({exc}); "
                      "run `python3 -m pyalexnet` from another directory", file=sys.stderr)

    def build_extension(self, ext: CMakeExtension) -> None:
        extdir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_type = os.environ.get("PYALEXNET_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={build_type}",
        ]
        try:
            import pybind11

            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        for var in OPTIONS:
            args.append(f"-D{var}={os.environ[var]}" if os.environ.get(var) else f"-U{var}")
        cmake = shutil.which("cmake")
        if cmake is None:
            raise SetupError("pyalexnet needs CMake >= 3.18 to build: pip install cmake (pip's isolated build "
                             "installs it for you; with --no-build-isolation it must be on PATH)")
        ninja = _ninja()
        if ninja:
            args += ["-GNinja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        _drop_stale_cache(build_temp, {"CMAKE_COMMAND": cmake, "CMAKE_MAKE_PROGRAM": ninja})
        # Failures end in one `error:` line (setuptools' errors print without a traceback) under CMake's own message.
        if subprocess.run([cmake, str(ROOT), *args], cwd=build_temp).returncode != 0:
            if not os.environ.get("CXX") and not any(shutil.which(c) for c in COMPILERS):
                raise ExecError("pyalexnet needs a C++17 compiler and none was found on PATH: install one "
                                "(Debian/Ubuntu: apt install g++; Fedora: dnf install gcc-c++), or set "
                                "CXX=/path/to/compiler, then run pip install again")
            raise ExecError("CMake could not configure pyalexnet: its message is above")
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        if subprocess.run([cmake, "--build", ".", "--parallel", jobs], cwd=build_temp).returncode != 0:
            raise ExecError("compiling pyalexnet's kernels failed: the compiler's error is above")


def _ninja() -> str | None:
    found = shutil.which("ninja")
    if found:
        return found
    try:  # the ninja wheel, when its script directory is not on PATH
        import ninja

        return str(Path(ninja.BIN_DIR) / "ninja")
    except ImportError:
        return None


def _drop_stale_cache(build_temp: Path, tools: dict) -> None:
    """Forgets a CMake cache made by other tools than this build's.

    pip builds in a throw-away environment, so a second `pip install .` finds a
    cache pointing at a cmake and ninja that no longer exist (or differ): start
    that configuration afresh instead of failing.
    """
    cache = build_temp / "CMakeCache.txt"
    if not cache.exists():
        return
    recorded = {}
    for line in cache.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        recorded[key.split(":")[0]] = value
    for key, current in tools.items():
        old = recorded.get(key)
        if old and (not Path(old).exists() or (current and Path(old).resolve() != Path(current).resolve())):
            cache.unlink()
            shutil.rmtree(build_temp / "CMakeFiles", ignore_errors=True)
            return


# license= here, not in pyproject.toml: its TOML-table form warns from setuptools 77 on and is to stop building
# after 2027-02-18, and the SPDX string that replaces it fails before 77 (the GPU machines build with
# --no-build-isolation against whatever setuptools they have). This form gives "License: MIT" on both.
setup(ext_modules=[CMakeExtension("pyalexnet._C")], cmdclass={"build_ext": CMakeBuild}, license="MIT")
