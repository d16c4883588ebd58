"""relu, relu_backward and sgd_update against plain numpy, on the CPU and (where present) the GPU."""
import re

import numpy as np
import pytest

import pyalexnet
from pyalexnet import _C, ops

from numerics import numeric_grad


def ref_relu(x):
    return np.where(np.isnan(x) | (x > 0), x, 0).astype(x.dtype)  # numpy's maximum(x, 0), but +0 for -0


def ref_sgd(w, dw, v, lr, momentum, weight_decay):
    # Float32 throughout, the same operation order as the paper writes it.
    f = np.float32
    v = f(momentum) * v - f(weight_decay) * f(lr) * w - f(lr) * dw
    return w + v, v


SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (128, 96, 13, 13), (1,), (1000003,)]


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_matches_numpy_exactly(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y = ops.relu(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, ref_relu(x))


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_backward_matches_numpy_exactly(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y = ref_relu(x)
    dy = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(ops.relu_backward(dy, y), np.where(y > 0, dy, 0))


def test_relu_zero_gives_zero_gradient():
    dx = ops.relu_backward(np.ones(3, np.float32), ops.relu(np.array([0.0, -0.0, 1e-30], np.float32)))
    np.testing.assert_array_equal(dx, [0, 0, 1])


SPECIAL = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3.0, -3.0], np.float32)


def test_relu_lets_nan_through():
    # Mapped to 0, a NaN activation (a NaN weight upstream) vanished and training ran on with a finite loss.
    y = ops.relu(SPECIAL)
    np.testing.assert_array_equal(y, np.array([np.nan, np.nan, np.inf, 0, 0, 0, 1e-45, 0, 3, 0], np.float32))
    assert not np.signbit(y[4:6]).any()  # -0 gives +0
    np.testing.assert_array_equal(ops.relu_backward(np.ones_like(SPECIAL), y), [0, 0, 1, 0, 0, 0, 1, 0, 1, 0])


def test_relu_backward_matches_finite_differences(rng):
    x = rng.standard_normal((4, 6)).astype(np.float64)
    x[np.abs(x) < 0.05] = 0.5  # keep away from the kink at 0
    dy = rng.standard_normal(x.shape)
    numeric = numeric_grad(ref_relu, x, dy)
    analytic = ops.relu_backward(dy, ops.relu(x))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(5,), (48, 3, 11, 11), (4096, 9216 // 8), (1000003,)])
@pytest.mark.parametrize("hyper", [(0.01, 0.9, 5e-4), (0.1, 0.0, 0.0), (1e-3, 0.99, 1e-2)])
def test_sgd_update_matches_the_paper_rule(rng, shape, hyper):
    lr, m, wd = hyper
    w = rng.standard_normal(shape).astype(np.float32)
    dw = rng.standard_normal(shape).astype(np.float32)
    v = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    w_ref, v_ref = ref_sgd(w.copy(), dw, v.copy(), lr, m, wd)
    assert ops.sgd_update(w, dw, v, lr=lr, momentum=m, weight_decay=wd) is None
    # Equal to float32 rounding (a fused multiply-add may differ by an ulp).
    np.testing.assert_allclose(v, v_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-7)


def test_sgd_defaults_are_the_papers(rng):
    w = np.ones(4, np.float32)
    v = np.zeros(4, np.float32)
    ops.sgd_update(w, np.ones(4, np.float32), v, lr=0.01)
    np.testing.assert_allclose(v, -0.0005 * 0.01 - 0.01, rtol=1e-6)
    ops.sgd_update(w, np.zeros(4, np.float32), v, lr=0.01)
    assert v[0] < 0 and abs(v[0] - 0.9 * (-0.010005) + 0.0005 * 0.01 * w[0]) < 1e-7


def _sgd_lists(rng, sizes, misaligned=()):
    """w, dw, v lists of the given sizes; those listed in `misaligned` are views one float into a buffer
    (not 16-byte aligned: the GPU's scalar path)."""
    out = []
    for kind, scale in (("w", 1.0), ("dw", 1.0), ("v", 0.1)):
        arrays = []
        for i, n in enumerate(sizes):
            a = (scale * rng.standard_normal(n + 1)).astype(np.float32)
            arrays.append(a[1:] if i in misaligned else a[:n].copy())
        out.append(arrays)
    return out


# Around the GPU's per-block chunk (4096) and per-launch tensor count (32), and empty ones; the second case is
# over the CPU's one-thread limit (2^20 elements in all) so its threads split the index space across tensors.
SGD_LIST_CASES = [[5, 0, 1, 4095, 4096, 4097, 3, 10000],
                  [300000, 7, 600001, 250000, 1],
                  [i * 37 % 101 for i in range(70)]]


@pytest.mark.parametrize("sizes", SGD_LIST_CASES, ids=["chunks", "threads", "70-tensors"])
def test_sgd_on_lists_equals_one_call_per_tensor_bit_for_bit(rng, sizes):
    ws, dws, vs = _sgd_lists(rng, sizes, misaligned={1, 3, 5})
    w_one, v_one = [w.copy() for w in ws], [v.copy() for v in vs]
    for w, dw, v in zip(w_one, dws, v_one):
        ops.sgd_update(w, dw, v, lr=0.01, momentum=0.9, weight_decay=5e-4)
    assert ops.sgd_update(ws, tuple(dws), vs, lr=0.01, momentum=0.9, weight_decay=5e-4) is None
    for i in range(len(sizes)):
        np.testing.assert_array_equal(ws[i], w_one[i], err_msg=f"w[{i}]")
        np.testing.assert_array_equal(vs[i], v_one[i], err_msg=f"v[{i}]")


def test_sgd_on_lists_follows_the_paper_rule(rng):
    ws, dws, vs = _sgd_lists(rng, [33, 4, 9])
    refs = [ref_sgd(w.copy(), dw, v.copy(), 0.1, 0.5, 1e-2) for w, dw, v in zip(ws, dws, vs)]
    ops.sgd_update(ws, dws, vs, lr=0.1, momentum=0.5, weight_decay=1e-2)
    for (w_ref, v_ref), w, v in zip(refs, ws, vs):
        np.testing.assert_allclose(v, v_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-7)
    ops.sgd_update([], [], [], lr=0.1)  # nothing to do


def test_sgd_on_lists_refuses_bad_input_before_writing_anything(rng):
    ws, dws, vs = _sgd_lists(rng, [4, 4, 4])
    before = [w.copy() for w in ws] + [v.copy() for v in vs]
    with pytest.raises(ValueError, match="w, dw and v must be as many arrays each, got 3, 2 and 3"):
        ops.sgd_update(ws, dws[:2], vs, lr=0.1)
    with pytest.raises(TypeError, match="w is a list of 3 arrays, so 'dw' must be a list too"):
        ops.sgd_update(ws, dws[0], vs, lr=0.1)
    with pytest.raises(TypeError, match=r"'w\[2\]' is updated in place and must be float32, got float64"):
        ops.sgd_update(ws[:2] + [np.ones(4)], dws, vs, lr=0.1)
    with pytest.raises(ValueError, match=r"'w\[1\]' \(4,\) and 'dw\[1\]' \(5,\) must have the same shape"):
        ops.sgd_update(ws, [dws[0], np.ones(5, np.float32), dws[2]], vs, lr=0.1)
    with pytest.raises(TypeError, match=r"'dw\[2\]' must be a floating-point array"):
        ops.sgd_update(ws, dws[:2] + [np.ones(4, np.int32)], vs, lr=0.1)
    # Across parameters too: a velocity over another parameter's weights, or one parameter listed twice,
    # would read values the same call has already written.
    with pytest.raises(ValueError, match=r"'v\[2\]' must not share memory with 'w\[0\]'"):
        ops.sgd_update(ws, dws, [vs[0], vs[1], ws[0]], lr=0.1)
    with pytest.raises(ValueError, match=r"'w\[2\]' must not share memory with 'w\[0\]'"):
        ops.sgd_update([ws[0], ws[1], ws[0]], dws, vs, lr=0.1)
    with pytest.raises(ValueError, match=r"'dw\[1\]' must not share memory with 'v\[0\]'"):
        ops.sgd_update(ws, [dws[0], vs[0], dws[2]], vs, lr=0.1)
    for a, b in zip(before, ws + vs):
        np.testing.assert_array_equal(a, b)
    # Gradients are only read: one may serve several parameters.
    ops.sgd_update(ws, [dws[0]] * 3, vs, lr=0.1)
    np.testing.assert_allclose(vs[2], ref_sgd(before[2], dws[0], before[5], 0.1, 0.9, 5e-4)[1], rtol=1e-6, atol=1e-7)


# --- bad and unusual input -------------------------------------------------------------------------------


def test_float64_is_converted_not_reinterpreted():
    x = np.array([-1.5, 2.25, 3.0])
    y = ops.relu(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 2.25, 3.0])


def test_lists_are_accepted():
    np.testing.assert_array_equal(ops.relu([-1.0, 2.0]), [0, 2])


@pytest.mark.parametrize("bad", [np.array([1, -2]), np.array([True, False]), np.array(["a"]), None])
def test_non_float_input_is_a_type_error(bad):
    with pytest.raises(TypeError, match="'x'"):
        ops.relu(bad)


def test_non_contiguous_input_is_made_contiguous(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)
    np.testing.assert_array_equal(ops.relu(x.T), ref_relu(x.T))
    np.testing.assert_array_equal(ops.relu(x[:, ::2]), ref_relu(x[:, ::2]))


def test_empty_arrays_give_empty_results():
    for shape in [(0,), (0, 3, 5, 5), (2, 0)]:
        x = np.zeros(shape, np.float32)
        assert ops.relu(x).shape == shape
        assert ops.relu_backward(x, x).shape == shape
        w, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        ops.sgd_update(w, x, v, lr=0.1)


def test_mismatched_shapes_are_value_errors(rng):
    with pytest.raises(ValueError, match="'dy'.*'y'.*same shape"):
        ops.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="same shape"):
        ops.sgd_update(np.ones(3, np.float32), np.ones(4, np.float32), np.ones(3, np.float32), lr=0.1)


def test_sgd_refuses_what_it_cannot_update_in_place():
    w64 = np.ones(3)
    with pytest.raises(TypeError, match="'w'.*float32"):
        ops.sgd_update(w64, np.ones(3), np.zeros(3, np.float32), lr=0.1)
    with pytest.raises(TypeError, match="'v'"):
        ops.sgd_update(np.ones(3, np.float32), np.ones(3), [0.0, 0.0, 0.0], lr=0.1)
    w = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="'w'.*C-contiguous"):
        ops.sgd_update(w.T, np.ones((4, 4)), np.zeros((4, 4), np.float32), lr=0.1)
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'w'.*read-only"):
        ops.sgd_update(ro, np.ones(3), np.zeros(3, np.float32), lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite"):
        ops.sgd_update(np.ones(3, np.float32), np.ones(3), np.zeros(3, np.float32), lr=float("nan"))


def test_sgd_hyperparameters_must_be_real_numbers_finite_in_float32():
    w, dw = np.ones((3, 4), np.float32), np.ones((3, 4), np.float32)
    v = np.zeros_like(w)
    for kwargs, exc, match in [(dict(lr=1e300), ValueError, r"lr must be a finite number \(float32"),  # NaN in w
                               (dict(lr=0.1, momentum=1e39), ValueError, "momentum must be a finite number"),
                               (dict(lr=0.1, weight_decay=float("nan")), ValueError, "weight_decay must be a finite"),
                               (dict(lr=None), TypeError, "lr must be a real number, got None"),
                               (dict(lr="0.1"), TypeError, "lr must be a real number, got '0.1'"),
                               (dict(lr=np.array([0.1, 0.2])), TypeError, "lr must be a real number"),
                               (dict(lr=True), TypeError, "lr must be a real number")]:
        with pytest.raises(exc, match=match):
            ops.sgd_update(w, dw, v, **kwargs)
    assert (w == 1).all() and (v == 0).all()
    ops.sgd_update(w, dw, v, lr=np.float32(0.5), momentum=np.array(0.0), weight_decay=0)  # numpy numbers too
    np.testing.assert_array_equal(w, 0.5)


def test_a_zero_dimensional_input_keeps_its_shape():
    y = ops.relu(np.float32(-3))  # came back with shape (1,)
    assert y.shape == () and y == 0
    assert ops.relu_backward(np.float32(2), np.float32(1)).shape == ()


def test_sgd_refuses_arrays_that_share_memory():
    # Element by element in place, an overlap reads what the update has already written: a wrong step, no error.
    buf = np.zeros(8, np.float32)
    w, v, dw = np.ones(8, np.float32), np.zeros(8, np.float32), np.ones(8, np.float32)
    with pytest.raises(ValueError, match="'v' must not share memory with 'w'"):
        ops.sgd_update(w, dw, w, lr=0.1)
    with pytest.raises(ValueError, match="'v' must not share memory with 'w'"):
        ops.sgd_update(buf[:6], dw[:6], buf[2:], lr=0.1)
    with pytest.raises(ValueError, match="'dw' must not share memory with 'w'"):
        ops.sgd_update(w, w, v, lr=0.1)
    with pytest.raises(ValueError, match="'dw' must not share memory with 'v'"):
        ops.sgd_update(w, v, v, lr=0.1)
    np.testing.assert_array_equal(w, 1)  # nothing written
    np.testing.assert_array_equal(v, 0)
    ops.sgd_update(buf[:4], dw[:4], buf[4:], lr=0.1)  # two halves of one buffer do not overlap
    np.testing.assert_allclose(buf, [-0.1] * 4 + [-0.1] * 4)


def test_sgd_refuses_any_overlap_whichever_array_comes_first_in_memory():
    # The sweep over arrays sorted by address must compare a written array with every array before it (a w that
    # begins inside the dw before it was taken) and count an overlap of a single element.
    buf = np.zeros(12, np.float32)
    with pytest.raises(ValueError, match=r"'w\[0\]' must not share memory with 'dw\[0\]'"):
        _C.sgd_update([buf[4:8]], [buf[2:6]], [np.zeros(4, np.float32)], 0.1, 0.9, 0.0)
    with pytest.raises(ValueError, match=r"'v\[0\]' must not share memory with 'dw\[0\]'"):
        _C.sgd_update([np.zeros(4, np.float32)], [buf[:4]], [buf[3:7]], 0.1, 0.9, 0.0)
    with pytest.raises(ValueError, match=r"'v\[0\]' must not share memory with 'w\[0\]'"):
        _C.sgd_update([buf[:4]], [np.zeros(4, np.float32)], [buf[3:7]], 0.1, 0.9, 0.0)  # one element shared
    np.testing.assert_array_equal(buf, 0)  # nothing written
    _C.sgd_update([buf[:4]], [np.ones(4, np.float32)], [buf[4:8]], 0.1, 0.0, 0.0)  # side by side: taken
    np.testing.assert_allclose(buf[:8], -0.1)


def test_bindings_validate_outputs_too():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="'x'.*'y'"):
        _C.relu_forward(x, np.empty((3, 2), np.float32))
    with pytest.raises(TypeError, match="'y' must have dtype float32, got float64"):
        _C.relu_forward(x, np.empty((2, 3)))
    with pytest.raises(TypeError, match="'x' must be a numpy.ndarray or a CUDA array"):
        _C.relu_forward([1.0], np.empty(1, np.float32))


def test_bindings_read_the_dtype_and_byte_order():
    # The bindings spell a numpy dtype from its descriptor (kind, size, byte order): float32 in the machine's
    # order is taken, byte-swapped float32 never reinterpreted, and messages name what came.
    x = np.array([-1.0, 2.0], np.float32)
    swapped = x.astype(x.dtype.newbyteorder())
    with pytest.raises(TypeError, match=re.escape(f"'x' must have dtype float32, got {swapped.dtype.str}")):
        _C.relu_forward(swapped, np.empty(2, np.float32))
    np.testing.assert_array_equal(ops.relu(swapped), [0, 2])  # the Python layer converts it
    for dtype, name in ((np.float16, "<f2"), (np.bool_, "|b1"), (np.uint8, "uint8"), (np.int64, "int64")):
        with pytest.raises(TypeError, match=re.escape(f"'x' must have dtype float32, got {name}")):
            _C.relu_forward(np.zeros(2, dtype), np.empty(2, np.float32))


class FakeGpuArray:
    """Exposes __cuda_array_interface__ for a pointer that is not device memory."""

    def __init__(self, n):
        self._host = np.zeros(n, np.float32)
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": "<f4", "data": (self._host.ctypes.data, False),
                                         "version": 3, "strides": None}


def test_gpu_arrays_without_a_usable_cuda_backend_are_refused_clearly():
    if pyalexnet.cuda_available():
        pytest.skip("a real GPU is present; covered by the GPU tests")
    with pytest.raises((TypeError, ValueError)) as e:
        _C.relu_forward(FakeGpuArray(4), FakeGpuArray(4))
    assert "no CUDA backend" in str(e.value) or "device" in str(e.value)


def test_numpy_mixed_with_a_gpu_array_is_a_type_error():
    with pytest.raises(TypeError, match="numpy arrays or both GPU arrays|mix"):
        _C.relu_forward(np.ones(4, np.float32), FakeGpuArray(4))


def test_launch_picks_the_backend_from_the_arrays(tmp_path):
    from pyalexnet import _backend as B

    mm = np.memmap(tmp_path / "a", np.float32, "w+", shape=(4,))  # an ndarray subclass is still numpy
    for arrays in [(np.ones(4, np.float32),), (None, np.ones(2, np.float32)), (mm,), ()]:
        with B.launch(*arrays) as l:
            assert l.xp is np and l.stream == 0 and l.device == -1
    for arrays in [(np.ones(4, np.float32), FakeGpuArray(4)), (FakeGpuArray(4), None, np.ones(4, np.float32))]:
        with pytest.raises(TypeError, match="mix"):
            with B.launch(*arrays):
                pass


# --- GPU: the CUDA backend against the CPU backend ------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES + [(0,)])
def test_gpu_relu_matches_cpu(cp, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = ops.relu(cp.asarray(x))
    assert isinstance(y, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(y), ops.relu(x))
    dx = ops.relu_backward(cp.asarray(dy), y)
    np.testing.assert_array_equal(cp.asnumpy(dx), ops.relu_backward(dy, ops.relu(x)))


@pytest.mark.gpu
def test_gpu_relu_special_values_match_cpu(cp):
    x = np.tile(SPECIAL, 1000)  # the vectorised body and the tail
    y = ops.relu(cp.asarray(x))
    np.testing.assert_array_equal(cp.asnumpy(y), ops.relu(x))  # NaN where NaN
    # Signs of numbers only (-0 gives +0): ptxas makes the select an FMNMX.NAN, whose NaN is the GPU's canonical
    # 0x7fffffff, so -NaN comes back +NaN where the CPU keeps the input's bits.
    number = ~np.isnan(x)
    assert (np.signbit(cp.asnumpy(y)[number]) == np.signbit(ops.relu(x)[number])).all()
    dy = np.ones_like(x)
    np.testing.assert_array_equal(cp.asnumpy(ops.relu_backward(cp.asarray(dy), y)), ops.relu_backward(dy, ops.relu(x)))


@pytest.mark.gpu
def test_gpu_sgd_matches_cpu(cp, rng):
    shape = (4096, 1000)
    w, dw, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    wg, dwg, vg = cp.asarray(w), cp.asarray(dw), cp.asarray(v)
    for _ in range(3):
        ops.sgd_update(w, dw, v, lr=0.01)
        ops.sgd_update(wg, dwg, vg, lr=0.01)
    np.testing.assert_allclose(cp.asnumpy(wg), w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(vg), v, rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
def test_gpu_sgd_refuses_arrays_that_share_memory(cp):
    w, v = cp.ones(8, cp.float32), cp.zeros(8, cp.float32)
    with pytest.raises(ValueError, match="'v' must not share memory with 'w'"):
        ops.sgd_update(w, cp.ones(8, cp.float32), w, lr=0.1)
    with pytest.raises(ValueError, match="'dw' must not share memory with 'v'"):
        ops.sgd_update(w, v, v, lr=0.1)
    buf = cp.zeros(8, cp.float32)
    ops.sgd_update(buf[:4], cp.ones(4, cp.float32), buf[4:], lr=0.1)
    np.testing.assert_allclose(cp.asnumpy(buf), [-0.1] * 8)


@pytest.mark.gpu
@pytest.mark.parametrize("sizes", SGD_LIST_CASES, ids=["chunks", "threads", "70-tensors"])
def test_gpu_sgd_on_lists_matches_cpu(cp, rng, sizes):
    # Odd sizes, empty tensors, misaligned views (the scalar path) and more tensors than one launch takes.
    ws, dws, vs = _sgd_lists(rng, sizes, misaligned={1, 3, 5})
    bufs = {}

    def gpu_copy(a, i):  # a view one float into a device buffer where the host array is one
        if a.base is None:
            return cp.asarray(a)
        buf = cp.asarray(a.base)
        bufs.setdefault(i, []).append(buf)
        return buf[1:]
    wg, dwg, vg = ([gpu_copy(a, i) for i, a in enumerate(lst)] for lst in (ws, dws, vs))
    assert any(int(a.data.ptr) % 16 for a in wg)
    for _ in range(2):
        ops.sgd_update(ws, dws, vs, lr=0.01)
        ops.sgd_update(wg, dwg, vg, lr=0.01)
    for i in range(len(sizes)):
        np.testing.assert_allclose(cp.asnumpy(wg[i]), ws[i], rtol=1e-6, atol=1e-6, err_msg=f"w[{i}]")
        np.testing.assert_allclose(cp.asnumpy(vg[i]), vs[i], rtol=1e-6, atol=1e-6, err_msg=f"v[{i}]")
    for i, (buf_w, _, buf_v) in ((i, b) for i, b in bufs.items() if len(b) == 3):
        assert float(buf_w[0]) == ws[i].base[0] and float(buf_v[0]) == vs[i].base[0]  # the float before: untouched
    with pytest.raises(TypeError, match="numpy arrays, or all CuPy arrays"):
        ops.sgd_update(wg[:1], dws[:1], vg[:1], lr=0.01)
    w = cp.ones(8, cp.float32)
    with pytest.raises(ValueError, match=r"'v\[1\]' must not share memory with 'w\[0\]'"):
        ops.sgd_update([w, cp.ones(8, cp.float32)], [cp.ones(8, cp.float32)] * 2, [cp.zeros(8, cp.float32), w], lr=0.1)
    assert (w == 1).all()


@pytest.mark.gpu
def test_gpu_runs_on_cupys_current_stream(cp, rng):
    x = rng.standard_normal((1 << 20,)).astype(np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        y = ops.relu(cp.asarray(x))
    s.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(y), ref_relu(x))


@pytest.mark.gpu
def test_gpu_mixed_with_numpy_is_a_type_error(cp):
    with pytest.raises(TypeError):
        ops.relu_backward(cp.ones(3, cp.float32), np.ones(3, np.float32))


@pytest.mark.gpu
def test_gpu_arrays_on_two_devices_are_a_value_error(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cp.cuda.Device(0):
        a = cp.ones(3, cp.float32)
    with cp.cuda.Device(1):
        b = cp.ones(3, cp.float32)
    with pytest.raises(ValueError, match="different GPUs"):
        ops.relu_backward(a, b)


@pytest.mark.gpu
def test_gpu_conversions_stay_on_the_arrays_gpu(cp):
    # CuPy makes new arrays on the current device: a float64, strided or int32-labelled input on GPU 1 converted
    # while GPU 0 was current landed on GPU 0 (a "different GPUs" error, or a result on the wrong GPU).
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cp.cuda.Device(1):
        x64 = cp.asarray([[-1.0, 2.0, 3.0], [4.0, -5.0, 6.0]])
        strided = cp.ones((4, 6), cp.float32)[:, ::2]
        logits, labels = x64.astype(cp.float32), cp.asarray([0, 2], cp.int16)
    with cp.cuda.Device(0):
        assert ops.relu(x64).device.id == 1 and ops.relu(strided).device.id == 1
        loss, dlogits = ops.softmax_cross_entropy(logits, labels)
        assert dlogits.device.id == 1 and np.isfinite(loss)
    # The checks that reduce on the host's behalf (pooling winners, uint64 labels) and to_host, too. With peer
    # access a read from GPU 0 gives the same values: this checks results and devices, not the stream ordering.
    with cp.cuda.Device(1):
        maps = cp.asarray(np.random.default_rng(0).standard_normal((1, 2, 7, 7)), cp.float32)
        pooled, winners = ops.max_pool(maps, return_indices=True)
        wide = cp.asarray([0, 2], cp.uint64)
    with cp.cuda.Device(0), cp.cuda.Stream(non_blocking=True):
        assert ops.max_pool_backward(cp.ones_like(pooled), maps, indices=winners).device.id == 1
        assert np.isfinite(ops.softmax_cross_entropy(logits, wide)[0])
        np.testing.assert_array_equal(pyalexnet._backend.to_host(maps), cp.asnumpy(maps))


@pytest.mark.gpu
def test_gpu_float64_is_converted(cp):
    y = ops.relu(cp.asarray([-1.0, 2.0]))
    assert y.dtype == cp.float32
