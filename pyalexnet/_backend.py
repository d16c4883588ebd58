"""Where arrays live and where ops run.

numpy arrays run on the CPU backend; CuPy arrays (anything with
``__cuda_array_interface__``) run on the CUDA backend, on CuPy's current stream
of the array's device. This module never imports CuPy unless a GPU array is
seen or GPU facts are asked for, so numpy-only users never pay for it.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import numbers
import os
import sys
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable

# Threads that finish their work sleep at once instead of spinning, in both thread pools a CPU step
# uses: ours (OpenMP) and numpy's BLAS (OpenBLAS, fc6-fc8). Each pool's spinning threads take the cores
# the other wants next. A value you set yourself is kept.
# - libgomp reads OMP_WAIT_POLICY once, when _C first loads it. Measured on 2 cores, a small-preset step:
#   117 ms spinning, 91 ms passive; with two other busy processes, 892 ms against 257.
# - OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when numpy loads it, so only where pyalexnet is imported
#   before numpy (the pyalexnet command always is); its default spins 2^28 cycles (~0.1 s of a core) after
#   every product. Measured on 2 cores (Zen 5), batch 8: paper-network step 284-292 ms spinning, 223-240 ms
#   with 2^4; small preset 21.7-25.3 ms, 16.1 ms; fc6-fc8 themselves unchanged.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402  (after the variable OpenBLAS reads when numpy loads it)


def _openblas_libraries() -> list:
    """The OpenBLAS libraries loaded in this process (numpy's scipy_openblas, or a system one) that
    export what _calm_openblas needs. Linux only (/proc/self/maps); elsewhere an empty list."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return []
    libs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)  # the loaded copy: dlopen of a loaded path returns its handle
            for name in ("openblas_thread_timeout", "openblas_read_env", "blas_thread_shutdown_"):
                getattr(lib, name)
        except (OSError, AttributeError):
            continue
        lib.openblas_thread_timeout.restype = ctypes.c_uint
        libs.append(lib)
    return libs


def _calm_openblas() -> None:
    """Where numpy was imported before pyalexnet (`import numpy as np` first: most scripts), OpenBLAS
    read its environment before the line above set OPENBLAS_THREAD_TIMEOUT, and its threads spin after
    every product. Measured on 2 cores, a small-preset step at batch 32 with numpy imported first:
    81-110 ms as loaded, 49-56 ms after this. OpenBLAS keeps its reading of the environment, so it is
    asked to read it again, and its idle thread pool is stopped: its next product starts a new one,
    which takes the new timeout. Nothing else changes (the thread count is read from the same
    environment). Never fails the import: an OpenBLAS without these functions is left as it is."""
    try:
        wanted = int(os.environ["OPENBLAS_THREAD_TIMEOUT"])
    except (KeyError, ValueError):
        return
    for lib in _openblas_libraries():
        try:
            if lib.openblas_thread_timeout() != wanted:
                lib.openblas_read_env()
                lib.blas_thread_shutdown_()
        except OSError:
            continue


_calm_openblas()

def _import_problem(exc: ImportError) -> str:
    """What to do when _C does not load. Run from a source tree whose pyalexnet/ holds no compiled module
    (Python puts the working directory first on the path, ahead of the installed package), reinstalling
    changes nothing: said apart."""
    here = Path(__file__).resolve().parent
    if not list(here.glob("_C*")) and (here.parent / "setup.py").is_file():
        return (f"pyalexnet's compiled extension (pyalexnet._C) could not be loaded: Python imported the source "
                f"tree's {here}, which holds no compiled module (the working directory comes first on the import "
                "path). Run from another folder, or build it there with `python3 -m pip install -e .`")
    return (f"pyalexnet's compiled extension (pyalexnet._C) could not be loaded: {exc}. Reinstall with `pip install "
            ".` from the source tree (an editable install needs `pip install -e .` again after kernel changes).")


try:
    from . import _C
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(_import_problem(exc)) from exc

__all__ = ["backend_info", "cuda_available", "is_gpu_array", "as_input", "launch", "Launch", "last_block_counter"]


@functools.lru_cache(maxsize=None)
def cupy_module():
    """CuPy, or None when it is not installed or cannot load."""
    try:
        import cupy
    except Exception:  # ImportError, or a CuPy built for another CUDA
        return None
    return cupy


def is_gpu_array(x: Any) -> bool:
    return hasattr(x, "__cuda_array_interface__")


def may_share_memory(a: Any, b: Any) -> bool:
    """Whether two numpy arrays, or two CuPy arrays, might overlap. False for arrays of two kinds (the launch
    refuses those) and for GPU arrays that are not CuPy's."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):  # subclasses too: a memmap view of an ndarray
        return bool(np.may_share_memory(a, b))
    if is_gpu_array(a) != is_gpu_array(b) or not is_gpu_array(a):
        return False
    cp = cupy_module()
    return cp is not None and isinstance(a, cp.ndarray) and isinstance(b, cp.ndarray) and bool(cp.may_share_memory(a, b))


def to_host(a: Any) -> np.ndarray:
    """`a` as a numpy array: copied from the GPU (synchronising) for CuPy, else as it is. The copy is queued on
    the current stream of `a`'s own GPU (under another GPU's, it was not ordered after `a`'s writes there)."""
    if not is_gpu_array(a):
        return np.asarray(a)
    with own_device(a):
        return cupy_module().asnumpy(a)


def start_host_copy(a: Any) -> Callable[[], np.ndarray]:
    """Starts copying `a` to the host and returns a function that gives the numpy array once the copy is done.

    For CuPy the copy is queued on the current stream, into page-locked memory, with an event after it: what
    is queued after this call (a backward pass, on this stream or on streams that wait for it) need not finish
    before the host has the copy, whereas to_host waits for everything the stream has been told to wait for.
    numpy arrays are given back as they are."""
    if not is_gpu_array(a):
        host = np.asarray(a)
        return lambda: host
    cp = cupy_module()
    import cupyx

    with cp.cuda.Device(a.device.id):
        a = cp.ascontiguousarray(a)
        out = cupyx.empty_pinned(a.shape, a.dtype)
        stream = cp.cuda.get_current_stream()
        try:
            cp.asnumpy(a, stream=stream, out=out, blocking=False)
        except TypeError:  # CuPy before 13 has no `blocking`: a copy given a stream is asynchronous there
            a.get(stream=stream, out=out)
        done = stream.record()

    def wait() -> np.ndarray:
        done.synchronize()
        return out
    # Dropped unread (an exception between the start and the read), `out` would go back to CuPy's pinned pool
    # while the copy may still be queued, and a later upload staged through the same block would be overwritten
    # by it: the copy is waited for first (a weakref callback runs before the closure lets go of `out` and `a`).
    weakref.finalize(wait, done.synchronize).atexit = False
    return wait


def _version(v: int | None) -> str | None:
    return None if not v else f"{v // 1000}.{(v % 1000) // 10}"


def _driver_library_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _info() -> dict:
    from . import __version__

    build = _C.build_info()
    info: dict[str, Any] = {
        "version": __version__,
        "built_with_cuda": build["built_with_cuda"],
        "cuda_build_version": _version(build["cuda_build_version"]),
        "cuda_architectures": build["cuda_architectures"],
        "cuda_runtime_version": None,
        "cuda_driver_version": None,
        "openmp": build["openmp"],
        "cpu_simd": build["cpu_simd"],
        "cpu_threads": build["cpu_threads"],
        "cupy": None,
        "gpus": [],
        "reason": None,
    }
    if not build["built_with_cuda"]:
        info["reason"] = ("built without CUDA (nvcc was not found when pyalexnet was built, or PYALEXNET_CUDA=OFF); "
                          "reinstall with nvcc on PATH to get the GPU backend")
        return info
    query = _C.cuda_query()
    info["cuda_runtime_version"] = _version(query["runtime_version"])
    info["cuda_driver_version"] = _version(query["driver_version"])
    for g in query["devices"]:
        info["gpus"].append({
            "index": g["index"],
            "name": g["name"],
            "compute_capability": f"{g['compute_capability'][0]}.{g['compute_capability'][1]}",
            "memory_gib": round(g["total_memory_bytes"] / 2**30, 2),
            "multiprocessors": g["multiprocessors"],
        })
    if not _driver_library_present():
        info["reason"] = "no NVIDIA driver (libcuda.so.1 not found)"
    elif query["error"] is not None:
        info["reason"] = f"the CUDA runtime found no usable GPU ({query['error']})"
    elif not info["gpus"]:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        info["reason"] = "no CUDA GPU found" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
    cp = cupy_module()
    if cp is not None:
        info["cupy"] = cp.__version__
    elif info["reason"] is None:
        info["reason"] = "CuPy is not installed (pip install 'pyalexnet[gpu]' or cupy-cuda13x); GPU arrays need it"
    return info


def backend_info() -> dict:
    """What this install can run on, and why no GPU is used when none is.

    Keys: version, built_with_cuda, cuda_build_version, cuda_architectures,
    cuda_runtime_version, cuda_driver_version, openmp, cpu_simd (the vector instructions the CPU
    convolutions' GEMM was compiled for: avx512, avx2, neon, sse2 or scalar), cpu_threads, cupy, gpus
    (index, name, compute_capability, memory_gib, multiprocessors) and reason
    (None when the GPU backend is usable).
    """
    info = dict(_info())
    info["gpus"] = [dict(g) for g in info["gpus"]]
    return info


def cuda_available() -> bool:
    """True when the CUDA backend is built, a GPU and its driver are present, and CuPy imports."""
    return _info()["reason"] is None


_FLOAT_KINDS = "f"


FLOAT32_MAX = float(np.finfo(np.float32).max)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category=RuntimeWarning) -> None:
    """warnings.warn, attributed to the first caller outside pyalexnet: a warning from deep in the data code
    named the library's own line (pyalexnet/data/_datasets.py:212), not the user's call."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def show_progress(progress: bool | None) -> bool:
    """Whether to draw progress bars: `progress` when given, else when someone watches stderr: a terminal, or a
    Jupyter kernel (its stderr is no terminal, and a notebook's train() showed nothing for an epoch's hours)."""
    if progress is not None:
        return bool(progress)
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False
    return _in_jupyter_kernel()


def message_stream():
    """Where a long run says what it is doing (its epochs, a resume, a stop): stderr, which leaves stdout to results
    and pipes; stdout in a Jupyter kernel, whose notebooks show stderr tinted as errors."""
    return sys.stdout if _in_jupyter_kernel() else sys.stderr


def progress_bar_class(show: bool):
    """The tqdm class for bars that are drawn (`show`, from show_progress) or not: tqdm.auto's where they are drawn
    (Jupyter's own bar in a notebook that has ipywidgets), else plain tqdm. tqdm.auto, imported in a Jupyter kernel
    without ipywidgets, warned "IProgress not found" at tqdm's own line (tqdm/auto.py:21), with progress=False
    too, where no bar is drawn. There the bars are plain text, said once, at the caller's line; nothing is caught
    or filtered (the warnings machinery is process-wide, and the decoding threads warn meanwhile)."""
    global _said_text_bars
    from tqdm.std import tqdm as text_bar

    if not show:
        return text_bar
    if "tqdm.auto" not in sys.modules and _in_jupyter_kernel() and not _have_module("ipywidgets"):
        if not _said_text_bars:
            _said_text_bars = True
            warn_user("ipywidgets is not installed: the progress bars are drawn as text (pip install ipywidgets "
                      "for Jupyter's own)")
        return text_bar
    from tqdm.auto import tqdm

    return tqdm


_said_text_bars = False


def progress_bar(show: bool, **kwargs):
    """A tqdm bar (progress_bar_class's), drawn where `show` (from show_progress), as wide as the terminal, on stderr
    unless file= says otherwise: every bar of the package's, so none passes `show` twice."""
    kwargs.setdefault("file", sys.stderr)
    return progress_bar_class(show)(disable=not show, dynamic_ncols=True, **kwargs)


def _have_module(name: str) -> bool:
    """Whether `name` can be imported, without importing it (None in sys.modules: blocked)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _in_jupyter_kernel() -> bool:
    """An IPython shell run by a Jupyter kernel (notebooks, JupyterLab, VS Code, Colab), not terminal IPython: the
    kernel's shell is ipykernel's ZMQInteractiveShell (Colab's subclasses it), or, however it was launched, has
    IPKernelApp in its configuration."""
    ipython = sys.modules.get("IPython")
    if ipython is None:  # never imported: not in IPython (importing it here would cost ~0.3 s)
        return False
    try:
        shell = ipython.get_ipython()
        if shell is None:
            return False
        zmqshell = sys.modules.get("ipykernel.zmqshell")
        kernel_shell = getattr(zmqshell, "ZMQInteractiveShell", None)
        if isinstance(kernel_shell, type) and isinstance(shell, kernel_shell):
            return True
        return "IPKernelApp" in shell.config
    except Exception:  # an IPython too old or too new for this look: no bars, as before
        return False


def output_folder_problem(folder, name: str, *, create: bool = False, files=()) -> str | None:
    """Why `folder` (given as `name`: "--out", "checkpoint_dir (--checkpoint-dir)") cannot take a command's
    output, as a message that names it, or None when it can. Checked before the long work (a benchmark, a
    training run, an evaluation): found only when the results were written, it cost them. create=True makes the
    folder now; otherwise its nearest existing ancestor must be writable, to make it later. `files`: the names to be
    written into it, none of which may be a folder. Writable: os.access says so and a file can be made (and is
    removed) there, since as root os.access says yes wherever the file system is not read-only."""
    import pathlib

    folder = pathlib.Path(folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        return f"{name} {folder} is a file, not a folder"
    existing = next((p for p in [folder, *folder.parents] if os.path.exists(p)), None)
    if existing is not None and not os.path.isdir(existing):  # "Not a directory" when it is made
        return f"{name} {folder}: cannot make that folder ({existing} is a file, not a folder)"
    for f in files:
        if os.path.isdir(folder / f):
            return f"{name} {folder}: {folder / f} is a folder, so the results cannot be written there"
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only parent, /proc
            return f"{name} {folder}: cannot make that folder ({exc.strerror or exc})"
        existing = folder
    where = "the folder" if existing == folder else f"its parent folder {existing}"
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"{name} {folder}: {where} cannot be written"
    if existing is not None:  # os.access can say yes where a write fails (root on an NFS share that squashes it)
        import tempfile

        try:
            fd, probe = tempfile.mkstemp(prefix=".pyalexnet-probe.", dir=existing)
            try:
                os.write(fd, b"pyalexnet")  # a full disk or a used-up quota still lets an empty file be made
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            return f"{name} {folder}: {where} cannot be written ({exc.strerror or exc})"
    return None


def byte_size(b: float) -> str:
    """A size for people: GiB from 1 GiB, MiB from 1 MiB, else KiB (a small store's "0.0 GiB" said nothing)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if round(b / scale, 1) >= 1:  # just under a GiB is "1.0 GiB", not "1024.0 MiB"
            return f"{b / scale:.1f} {unit}"
    return f"{b / 2**10:.1f} KiB"


def available_memory() -> int | None:
    """Bytes of memory the kernel says can be had without swapping (Linux's MemAvailable), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# Below this, an allocation is not worth the look at /proc/meminfo (an AlexNet batch-128 layer is ~150 MB).
_HOST_MEMORY_CHECK_BYTES = 1 << 30


def expect_host_memory(parts: dict, what: str) -> None:
    """MemoryError naming `what` and its parts ({name: bytes}) when together they exceed the memory the OS can
    give without swapping: numpy's lazily backed np.empty succeeds for each part and the OOM killer ends the
    process as the kernel writes them (conv2d with padding=23000 on a 1x1 image: 8.5 GB output, 17 GB
    workspace, killed)."""
    total = sum(parts.values())
    if total < _HOST_MEMORY_CHECK_BYTES:
        return
    available = available_memory()
    if available is None or total <= available:
        return
    listed = ", ".join(f"{name} {byte_size(n)}" for name, n in parts.items() if n)
    raise MemoryError(f"{what} needs {byte_size(total)} of memory ({listed}); this machine can give "
                      f"{byte_size(available)}. "
                      "They grow with the batch and the padded image size.")


def real_number(value: Any, name: str, *, finite: bool = True) -> float:
    """A hyper-parameter the kernels take as float32, as a Python float: a real number (a 0-d numeric array
    too; not a bool, a string or several values) whose float32 value is finite (finite=False: the caller
    checks a range that excludes NaN and inf itself). TypeError / ValueError naming it otherwise: lr=1e300
    passed a float64 finiteness check and put NaN into every weight."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if finite and (not math.isfinite(v) or abs(v) > FLOAT32_MAX):
        raise ValueError(f"{name} must be a finite number" + ("" if not math.isfinite(v) else
                         f" (float32 reaches {FLOAT32_MAX:.4g})") + f", got {value!r}")
    return v


def integer(value: Any, name: str, *, low: int | None = None, high: int = 2**31 - 1) -> int:
    """An integer hyper-parameter (a bool, a float or a string refused with TypeError, numpy integers
    accepted) in [low, high], else ValueError naming it: a size of 2**31 reached pybind11 as an
    'incompatible function arguments' error quoting the whole input array. A 0-d integer array is taken, as
    real_number takes a 0-d numeric one (stride=np.array(2) was refused while alpha=np.array(1e-4) was not)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if v > high:
        raise ValueError(f"{name} must be " + ("< 2^31" if high == 2**31 - 1 else f"<= {high}") + f", got {v}")
    return v


def flag(value: Any, name: str) -> bool:
    """A yes/no option (True or False, numpy's bools too) as a bool, else TypeError naming it: a string is truthy,
    so need_dx="no" computed dx and return_indices="no" returned a tuple."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_input(x: Any, name: str, dtype=np.float32):
    """`x` as a C-contiguous array of `dtype` on its own device.

    Other floating dtypes are converted (a copy, never a reinterpretation);
    integers, booleans and other dtypes are refused with TypeError, since a
    silent cast from them hides bugs. Lists and scalars become numpy arrays.
    """
    if is_gpu_array(x):
        cp = cupy_module()
        if cp is None or not isinstance(x, cp.ndarray):
            raise TypeError(f"argument '{name}': GPU arrays must be cupy.ndarray (got {type(x).__name__})")
        xp = cp
    else:
        if not isinstance(x, np.ndarray):
            if x is None:
                raise TypeError(f"argument '{name}' must be an array, got None")
            x = np.asarray(x)
        elif type(x) is not np.ndarray and isinstance(x, np.ma.MaskedArray):
            # Refused as the bindings refuse it: the buffer holds the masked elements too (linear's product, numpy's,
            # said "operands could not be broadcast" and gave a masked dw).
            raise ValueError(f"argument '{name}' is a numpy masked array; the kernels would compute on its masked "
                             "elements too. Pass x.filled(value) or numpy.asarray(x) for what you mean")
        elif type(x) is not np.ndarray:
            # Other subclasses (np.matrix, np.memmap) as plain arrays, a view without a copy: outputs made with
            # empty_like and numpy's products kept the subclass, and np.matrix's sum(axis=0) gave linear_backward
            # a db of shape (1, out) instead of (out,).
            x = x.view(np.ndarray)
        xp = np
    want = np.dtype(dtype)
    if x.dtype != want:
        if want.kind == "f" and x.dtype.kind != "f":
            raise TypeError(f"argument '{name}' must be a floating-point array ({want.name}), got dtype {x.dtype}")
        if want.kind in "iu" and x.dtype.kind not in "iu":
            raise TypeError(f"argument '{name}' must be an integer array, got dtype {x.dtype}")
        with own_device(x):  # CuPy converts on the current GPU, which need not be x's
            x = x.astype(want)
    return contiguous(x, xp)


def own_device(x):
    """A context on `x`'s GPU for a CuPy array (CuPy makes new arrays on the current device: a converted copy of
    an array on GPU 1 made while GPU 0 was current ran, and came back, on GPU 0), else one that does nothing."""
    cp = cupy_module() if is_gpu_array(x) else None
    return x.device if cp is not None and isinstance(x, cp.ndarray) else contextlib.nullcontext()


def contiguous(x, xp):
    """`x` itself when the kernels can read it as it is (C-contiguous, each element at a multiple of its size),
    else a C-contiguous copy: a view at an odd byte offset (numpy.frombuffer with an offset) is refused by the
    bindings, since a misaligned read faults on the GPU."""
    if xp is np:
        if not isinstance(x, np.ndarray):  # a numpy scalar (np.uint8(1)) has flags too, but is no buffer to pass
            return np.array(x)
        if x.flags.c_contiguous and x.flags.aligned:
            return x
        # (ascontiguousarray would make a 0-d array 1-d: relu of a scalar came back with shape (1,))
        return np.array(x, order="C", copy=True)
    if x.data.ptr % x.dtype.itemsize == 0 and x.flags.c_contiguous:
        return x
    with x.device:  # the copy on x's own GPU (see own_device)
        if x.data.ptr % x.dtype.itemsize == 0:
            return xp.ascontiguousarray(x)
        # CuPy's own copy would read the misaligned elements (the fault); a byte copy does not.
        if not x.flags.c_contiguous:
            raise ValueError(f"a GPU array whose elements are not aligned to their {x.dtype.itemsize} bytes must at "
                             "least be C-contiguous to be copied")
        out = xp.empty(x.shape, x.dtype)
        if x.nbytes:
            out.data.copy_from_device_async(x.data, x.nbytes)
        return out


class Launch:
    """Where one op call runs: `xp` allocates outputs, `stream` goes to _C. A CPU Launch is its own
    context manager (nothing to enter); a GPU one enters its device."""

    __slots__ = ("xp", "stream", "device", "_device_context")

    def __init__(self, xp, stream: int | None, device: int, device_context=None) -> None:
        self.xp = xp
        self.stream = stream
        self.device = device
        self._device_context = device_context

    def __enter__(self) -> "Launch":
        if self._device_context is not None:
            self._device_context.__enter__()
            self.stream = self.xp.cuda.get_current_stream().ptr  # the device's current stream, read inside it
        return self

    def __exit__(self, *exc) -> None:
        if self._device_context is not None:
            self._device_context.__exit__(*exc)


# Every CPU op shares this one: nothing in it changes. A plain object instead of a generator context manager
# keeps the per-op cost in Python small (measured: `with launch(x, y)` of two numpy arrays 4.1 -> 0.9 us;
# ops.relu of 10 elements 9.5-11 -> 5.5-8 us on a loaded host).
_CPU_LAUNCH = Launch(np, 0, -1)


def launch(*arrays) -> Launch:
    """Chooses the backend from the arrays; `with launch(...) as l:` enters the GPU arrays' device.

    Mixing numpy and GPU arrays is a TypeError and arrays on two GPUs a
    ValueError (the bindings check again before launching).
    """
    for a in arrays:
        if a is not None and type(a) is not np.ndarray:
            break
    else:
        return _CPU_LAUNCH  # the common case, checked first and cheaply: numpy arrays only
    gpu = [is_gpu_array(a) for a in arrays if a is not None]
    if not any(gpu):
        return _CPU_LAUNCH
    if not all(gpu):
        raise TypeError("all array arguments must be numpy arrays, or all CuPy arrays on one GPU; got a mix")
    cp = cupy_module()
    devices = {a.device.id for a in arrays if a is not None}
    if len(devices) > 1:
        raise ValueError(f"array arguments are on different GPUs {sorted(devices)}; copy them to one device")
    (dev,) = devices
    return Launch(cp, None, dev, cp.cuda.Device(dev))


# softmax_cross_entropy's CUDA kernel counts its finished blocks on one uint32 in device memory: the block that
# finishes last sums the batch, and its atomicInc wraps the count back to 0. A kernel that completes thus always
# leaves its counter at 0, so zeroing it once, when it is made, is enough (no memset per call). Kernels on one
# stream run one after another and can share a counter; kernels on two streams may overlap, and sharing one
# would let a block of one call take another call's ticket: one counter per (device, stream). The per-thread
# default stream (handle 2, cudaStreamPerThread) is another stream in every thread, so it is keyed by thread too.
# The newest _MAX_COUNTERS are kept: a dropped counter goes back to CuPy's pool, which reuses memory in the order
# of its stream only, so a kernel still using it is never overtaken.
_PER_THREAD_STREAM = 2
_MAX_COUNTERS = 64
_counters: dict = {}
_counters_lock = threading.Lock()


def last_block_counter(l: Launch):
    """The zeroed uint32 counter, shape (1,), of `l`'s device and stream (inside `launch`: a new one is zeroed on
    that stream). The CPU backend takes one too, and ignores it."""
    key = (l.device, l.stream, threading.get_ident() if l.stream == _PER_THREAD_STREAM else None)
    counter = _counters.get(key)
    if counter is None:
        with _counters_lock:
            counter = _counters.get(key)
            if counter is None:
                counter = l.xp.zeros(1, dtype=l.xp.uint32)
                if len(_counters) >= _MAX_COUNTERS:
                    _counters.pop(next(iter(_counters)))
                _counters[key] = counter
    return counter
