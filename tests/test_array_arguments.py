"""How arrays reach the kernels: views whose elements are not at a multiple of their size.

The bindings refuse them (a misaligned read is a sticky fault on the GPU, and the CPU's vectorised loops may
assume the alignment); `pyalexnet.ops` copies them, as it copies non-contiguous and float64 inputs.
"""
import numpy as np
import pytest

from pyalexnet import _C, ops


def misaligned(a):
    """A copy of `a` whose data starts one byte past an element boundary (a frombuffer view at offset 1)."""
    a = np.asarray(a)
    buf = bytearray(a.nbytes + 1)
    view = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    view[...] = a
    assert view.flags.c_contiguous and (a.itemsize == 1 or not view.flags.aligned)
    return view


def test_the_bindings_refuse_a_misaligned_array_and_name_it():
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match=r"'logits' is not aligned to its 4-byte elements.*numpy\.array\(x\)"):
        _C.softmax_forward(misaligned(x), np.empty_like(x))
    with pytest.raises(ValueError, match="'probabilities' is not aligned"):
        _C.softmax_forward(x, misaligned(x))
    with pytest.raises(ValueError, match="'dx' is not aligned"):
        _C.relu_backward(x, x, misaligned(x))
    # a one-byte dtype is always aligned
    mask = misaligned(np.ones(16, np.uint8))
    dx = np.empty(16, np.float32)
    _C.dropout_backward(np.ones(16, np.float32), mask, dx, 0.5)
    np.testing.assert_array_equal(dx, 2.0)


def test_in_place_update_of_a_misaligned_array_is_refused_not_copied():
    w = misaligned(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="'w' is not aligned"):
        ops.sgd_update(w, np.ones(4, np.float32), np.zeros(4, np.float32), lr=0.1)
    np.testing.assert_array_equal(w, 1.0)


def test_ops_copy_misaligned_inputs(rng):
    x = rng.standard_normal((2, 6, 7, 7)).astype(np.float32)
    mx = misaligned(x)
    for op in (ops.relu, ops.lrn, ops.max_pool):
        np.testing.assert_array_equal(op(mx), op(x))
    y = ops.lrn(x)
    np.testing.assert_array_equal(ops.lrn_backward(misaligned(y), mx, misaligned(y)), ops.lrn_backward(y, x, y))
    p, i = ops.max_pool(x, return_indices=True)
    np.testing.assert_array_equal(ops.max_pool_backward(misaligned(p), mx, indices=misaligned(i)),
                                  ops.max_pool_backward(p, x, indices=i))
    d, mask = ops.dropout(mx, seed=3)
    np.testing.assert_array_equal(d, ops.dropout(x, seed=3)[0])
    np.testing.assert_array_equal(ops.dropout_backward(misaligned(d), misaligned(mask)), ops.dropout_backward(d, mask))
    w = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(ops.conv2d(mx, misaligned(w), misaligned(np.ones(4, np.float32))),
                                  ops.conv2d(x, w, np.ones(4, np.float32)))
    dy = ops.conv2d(x, w)
    for a, b in zip(ops.conv2d_backward(misaligned(dy), mx, misaligned(w)), ops.conv2d_backward(dy, x, w)):
        np.testing.assert_array_equal(a, b)
    logits = x.reshape(2, -1)
    labels = np.array([3, 5], np.int64)
    np.testing.assert_array_equal(ops.softmax(misaligned(logits)), ops.softmax(logits))
    for a, b in zip(ops.softmax_cross_entropy(misaligned(logits), misaligned(labels)),
                    ops.softmax_cross_entropy(logits, labels)):
        np.testing.assert_array_equal(a, b)
    fw = rng.standard_normal((5, logits.shape[1])).astype(np.float32)
    np.testing.assert_array_equal(ops.linear(misaligned(logits), misaligned(fw)), ops.linear(logits, fw))


@pytest.mark.gpu
def test_gpu_misaligned_view_is_refused_and_the_device_still_works(cp):
    vals = np.linspace(-2, 2, 16).astype(np.float32)
    raw = cp.asarray(np.frombuffer(b"\0" + vals.tobytes(), np.uint8))
    x = cp.ndarray((16,), cp.float32, raw.data + 1)  # one byte past a float
    with pytest.raises(ValueError, match=r"'x' is not aligned to its 4-byte elements.*cupy\.array\(x\)"):
        _C.relu_forward(x, cp.empty(16, cp.float32), cp.cuda.get_current_stream().ptr)
    # ops copies it byte for byte (CuPy's own copy would read the misaligned floats); nothing faulted
    np.testing.assert_array_equal(cp.asnumpy(ops.relu(x)), np.maximum(vals, 0))
    with pytest.raises(ValueError, match="C-contiguous to be copied"):
        ops.relu(x[::2])
    cp.cuda.get_current_stream().synchronize()
