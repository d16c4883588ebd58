"""pyalexnet._backend's helpers, checked where the ops above them do not reach: the argument validators' boundaries,
the host copies, the memory check, the progress decision and the import-time settings (mutation-testing additions)."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from pyalexnet import _backend as B


class FakeGpuArray:
    """Anything with __cuda_array_interface__ counts as a GPU array."""
    __cuda_array_interface__ = {}


def test_integer_takes_its_whole_range_and_refuses_just_outside():
    assert B.integer(2**31 - 1, "size") == 2**31 - 1  # C's largest int is still an int
    with pytest.raises(ValueError, match=r"size must be < 2\^31, got 2147483648"):
        B.integer(2**31, "size")
    assert B.integer(1, "stride", low=1) == 1
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        B.integer(0, "stride", low=1)
    assert B.integer(2**40, "step", low=0, high=2**63 - 1) == 2**40
    with pytest.raises(ValueError, match="zoom must be <= 5, got 6"):
        B.integer(6, "zoom", high=5)


def test_integer_takes_numpy_integers_and_refuses_bools_floats_and_strings():
    assert B.integer(np.array(2), "stride") == 2 and type(B.integer(np.array(2), "stride")) is int
    assert B.integer(np.uint8(3), "stride") == 3
    for bad in (True, np.bool_(True), 2.0, np.array(2.0), "2", None, np.array([2])):
        with pytest.raises(TypeError, match="stride must be an integer"):
            B.integer(bad, "stride")


def test_real_number_takes_zero_d_arrays_of_either_kind_and_refuses_beyond_float32_either_side():
    assert B.real_number(np.array(3), "alpha") == 3.0 and B.real_number(np.array(0.5), "alpha") == 0.5
    for big in (1e39, -1e39):  # float32 makes both infinite
        with pytest.raises(ValueError, match=r"alpha must be a finite number \(float32 reaches 3.403e\+38\)"):
            B.real_number(big, "alpha")
    assert B.real_number(-1e38, "alpha") == -1e38
    assert B.real_number(float("inf"), "p", finite=False) == float("inf")
    for bad in (True, np.bool_(False), "1", None, np.array([1.0])):
        with pytest.raises(TypeError, match="alpha must be a real number"):
            B.real_number(bad, "alpha")


def test_flag_takes_python_and_numpy_bools_only():
    assert B.flag(np.bool_(True), "need_dx") is True and B.flag(False, "need_dx") is False
    for bad in ("no", 0, 1, None, np.array([True])):
        with pytest.raises(TypeError, match="need_dx must be True or False"):
            B.flag(bad, "need_dx")


def test_as_input_names_none_and_refuses_a_float_where_integers_are_wanted():
    with pytest.raises(TypeError, match="argument 'x' must be an array, got None"):
        B.as_input(None, "x")
    with pytest.raises(TypeError, match="argument 'labels' must be an integer array, got dtype float64"):
        B.as_input(np.array([1.5]), "labels", np.int64)
    labels = B.as_input(np.array([1, 2], np.int32), "labels", np.int64)
    assert labels.dtype == np.int64 and labels.tolist() == [1, 2]


def test_host_copies_of_host_values_are_numpy_arrays_without_a_copy():
    a = np.arange(4, dtype=np.float32)
    assert B.to_host(a) is a and B.start_host_copy(a)() is a
    for f in (B.to_host, lambda v: B.start_host_copy(v)()):
        got = f([1, 2])
        assert isinstance(got, np.ndarray) and got.tolist() == [1, 2]


def test_arrays_of_two_kinds_never_share_memory():
    a = np.zeros(3)
    assert not B.may_share_memory(a, FakeGpuArray()) and not B.may_share_memory(FakeGpuArray(), a)
    assert B.may_share_memory(a, a[1:]) and not B.may_share_memory(a, np.zeros(3))


def test_cuda_versions_read_major_and_minor():
    # CUDA encodes 12.4 as 12040 and 13.0 as 13000
    assert B._version(12040) == "12.4" and B._version(13000) == "13.0" and B._version(11080) == "11.8"
    assert B._version(0) is None and B._version(None) is None


def test_available_memory_is_the_kernels_figure_in_bytes():
    with open("/proc/meminfo") as f:
        kib = next((int(line.split()[1]) for line in f if line.startswith("MemAvailable:")), None)
    if kib is None:
        pytest.skip("no MemAvailable in /proc/meminfo")
    got = B.available_memory()
    assert kib * 1024 / 2 < got < kib * 1024 * 2  # (the figure moves between the two reads, never by a factor 1024)


def test_host_memory_is_checked_from_a_gibibyte_and_names_the_parts(monkeypatch):
    monkeypatch.setattr(B, "available_memory", lambda: 1000)
    B.expect_host_memory({"output": 2**29, "workspace": 2**29 - 1}, "conv2d")  # small: never looked at
    with pytest.raises(MemoryError, match=r"conv2d needs 2.0 GiB of memory \(output 1.0 GiB, workspace 1.0 GiB\); "
                                          r"this machine can give 1.0 KiB"):
        B.expect_host_memory({"output": 2**30, "workspace": 2**30, "indices": 0}, "conv2d")
    monkeypatch.setattr(B, "available_memory", lambda: None)  # not Linux: nothing to check against
    B.expect_host_memory({"output": 2**40}, "conv2d")


def test_progress_is_shown_on_a_terminal(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: True, write=lambda s: None))
    assert B.show_progress(None) and not B.show_progress(False)
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: False))
    assert not B.show_progress(None) and B.show_progress(True)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw: no stderr at all
    assert not B.show_progress(None)


def test_the_last_block_counters_are_kept_to_a_bounded_number():
    B._counters.clear()
    for stream in range(B._MAX_COUNTERS + 10):
        B.last_block_counter(B.Launch(np, stream, -1))
    assert len(B._counters) == B._MAX_COUNTERS
    assert (-1, 0, None) not in B._counters and (-1, B._MAX_COUNTERS + 9, None) in B._counters  # the oldest went
    B._counters.clear()


def test_a_broken_install_is_told_to_reinstall_with_the_loaders_reason():
    # This source tree holds its compiled module, so the message is the reinstall one, quoting the import error.
    said = B._import_problem(ImportError("libcudart.so.13: cannot open shared object file"))
    assert "libcudart.so.13: cannot open shared object file" in said and "Reinstall" in said


def test_importing_sets_passive_waits_and_a_short_blas_timeout_even_after_numpy():
    # numpy imported first (most scripts): OpenBLAS had read its environment already and is asked to read it again.
    code = ("import os, numpy\n"
            "from pyalexnet import _backend as B\n"
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENBLAS_THREAD_TIMEOUT'],\n"
            "      sorted({lib.openblas_thread_timeout() for lib in B._openblas_libraries()}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(B.__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    policy, timeout, lib_timeouts = out.stdout.split(" ", 2)
    assert policy == "passive" and timeout == "4"
    assert lib_timeouts.strip() in ("[]", "[4]"), lib_timeouts  # [] where numpy's BLAS is not OpenBLAS
