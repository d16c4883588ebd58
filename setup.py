"""Builds pyalexnet._C with CMake (the pybind11 cmake_example pattern).

Environment variables (see CMakeLists.txt): PYALEXNET_CUDA=AUTO|ON|OFF,
PYALEXNET_CUDA_ARCHS="80-real;90", PYALEXNET_NATIVE=ON|OFF, CMAKE_BUILD_PARALLEL_LEVEL.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
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
        for var in ("PYALEXNET_CUDA", "PYALEXNET_CUDA_ARCHS", "PYALEXNET_NATIVE"):
            if os.environ.get(var):
                args.append(f"-D{var}={os.environ[var]}")
        if shutil.which("ninja") or _has_module("ninja"):
            args.append("-GNinja")
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cmake", str(ROOT), *args], cwd=build_temp, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_temp, check=True)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


setup(ext_modules=[CMakeExtension("pyalexnet._C")], cmdclass={"build_ext": CMakeBuild})
