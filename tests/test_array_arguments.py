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


# ----- outputs that share memory with what the call reads or writes ---------------------------------------------

def test_an_output_overlapping_an_input_is_refused_where_the_kernel_would_read_what_it_wrote(rng):
    # Each of these gave wrong values with no error (an in-place LRN was 70 off, the loss of dlogits-in-logits
    # 2.763 for 2.653); ops always makes fresh outputs, so only direct _C calls could reach them.
    x = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="'y' must not share memory with 'x': the call writes 'y' while it reads 'x'"):
        _C.lrn_forward(x, x, 5, 1.0, 0.75, 2.0)
    y = ops.lrn(x, alpha=1.0)
    ws = np.empty(max(_C.lrn_workspace_floats(list(x.shape), 5, False), 1), np.float32)
    with pytest.raises(ValueError, match="'dx' must not share memory with 'dy'"):
        d = y.copy()
        _C.lrn_backward(d, x, y, d, ws, 5, 1.0, 0.75, 2.0)
    dx = np.empty_like(x)
    with pytest.raises(ValueError, match="arguments 'dx' and 'workspace' must not share memory: the call writes both"):
        _C.lrn_backward(y, x, y, dx, dx.reshape(-1), 5, 1.0, 0.75, 2.0)

    logits = rng.standard_normal((4, 10)).astype(np.float32)
    labels = np.array([1, 2, 3, 4], np.int64)
    with pytest.raises(ValueError, match="'dlogits' must not share memory with 'logits'"):
        _C.softmax_cross_entropy(logits, labels, np.empty(4, np.float32), logits, np.empty(3), np.zeros(1, np.uint32))

    flat = np.empty(64, np.float32)
    with pytest.raises(ValueError, match="arguments 'y' and 'mask' must not share memory"):
        _C.dropout_forward(np.ones(16, np.float32), flat[:16], flat.view(np.uint8)[8:24], 1, 0.5)
    pooled = np.empty((2, 6, 2, 2), np.float32)
    with pytest.raises(ValueError, match="arguments 'y' and 'indices' must not share memory"):
        _C.max_pool_forward_with_indices(x, pooled, pooled.view(np.uint8).reshape(-1)[:48].reshape(pooled.shape), 3, 2)
    w = rng.standard_normal((6, 6, 1, 1)).astype(np.float32)
    ws = np.empty(_C.conv2d_workspace_size(list(x.shape), list(w.shape), 1, 0, 1, "forward", False), np.float32)
    with pytest.raises(ValueError, match="'y' must not share memory with 'x'"):
        _C.conv2d_forward(x, w, None, x, ws, 1, 0, 1)


def test_elementwise_kernels_may_write_in_place(rng):
    x = rng.standard_normal((3, 40)).astype(np.float32)
    for run, want in ((lambda a: _C.relu_forward(a, a), ops.relu(x)),
                      (lambda a: _C.softmax_forward(a, a), ops.softmax(x)),
                      (lambda a: _C.dropout_forward(a, a, np.empty(a.shape, np.uint8), 7, 0.5),
                       ops.dropout(x, seed=7)[0])):
        a = x.copy()
        run(a)
        np.testing.assert_array_equal(a, want)
    # but not into a shifted view of their input
    with pytest.raises(ValueError, match="'y' must not share memory with 'x'"):
        _C.relu_forward(x.reshape(-1)[:60], x.reshape(-1)[10:70])


def test_a_cuda_array_interface_with_a_nonsense_typestr_is_named_not_stoll():
    class Fake:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<fX", "data": (256, False), "version": 3}

    with pytest.raises(TypeError, match="'x' must have dtype float32, got <fX"):
        _C.relu_forward(Fake(), np.empty(4, np.float32))


def test_numpy_scalars_are_taken_as_arrays():
    # np.uint8(1) has .dtype and .flags, so it passed the Python checks and the bindings refused it as "not a
    # numpy.ndarray, got uint8"
    assert float(ops.dropout_backward(np.float32(2), np.uint8(1))) == 4.0
    w, v = np.zeros((), np.float32), np.zeros((), np.float32)
    ops.sgd_update(w, np.float32(1), v, lr=0.1, momentum=0.0, weight_decay=0.0)
    assert float(w) == np.float32(-0.1)
    w = np.zeros(4, np.float32)
    ops.sgd_update(w, misaligned(np.ones(4, np.float32)), np.zeros(4, np.float32), lr=0.1, momentum=0.0,
                   weight_decay=0.0)  # dw is converted, misaligned or not
    np.testing.assert_array_equal(w, np.float32(-0.1))


def test_sgd_update_names_a_list_of_numbers_as_what_it_is():
    with pytest.raises(TypeError, match="'w' is updated in place, so it must be a float32 array or a list of them; "
                                        "its list holds a float"):
        ops.sgd_update([1.0] * 6, np.ones(6), np.ones(6), lr=0.1)


def test_hyper_parameters_out_of_range_are_named_not_incompatible_function_arguments():
    # pybind11 refused an int beyond C's int (or a negative seed) with "incompatible function arguments" and
    # the repr of every argument, x's values included; a real beyond float32 became inf (lr=1e39: NaN weights).
    x = np.zeros((1, 3, 8, 8), np.float32)
    y = np.zeros((1, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"pooling stride must be < 2\^31, got 1099511627776"):
        _C.max_pool_forward(x, y, 3, 2**40)
    with pytest.raises(ValueError, match=r"LRN size must be < 2\^31"):
        _C.lrn_forward(x, np.empty_like(x), 2**33 + 1, 1e-4, 0.75, 2.0)
    with pytest.raises(ValueError, match=r"alpha=1e\+39 is beyond float32's range"):
        _C.lrn_forward(x, np.empty_like(x), 5, 1e39, 0.75, 2.0)
    mask = np.empty(x.shape, np.uint8)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\^64\), got -1"):
        _C.dropout_forward(x, np.empty_like(x), mask, -1, 0.5)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\^64\), got 18446744073709551616"):
        _C.dropout_forward(x, np.empty_like(x), mask, 2**64, 0.5)
    with pytest.raises(TypeError, match="seed must be an integer, got float"):
        _C.dropout_forward(x, np.empty_like(x), mask, 1.5, 0.5)
    _C.dropout_forward(x, np.empty_like(x), mask, np.uint64(2**64 - 1), 0.5)  # the whole range, numpy ints too
    w, dw, v = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    for lr, message in ((1e39, r"lr=1e\+39 is beyond float32's range"), (float("nan"), "lr must be a finite number")):
        with pytest.raises(ValueError, match=message):
            _C.sgd_update([w], [dw], [v], lr, 0.9, 0.0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number, got inf"):
        _C.sgd_update([w], [dw], [v], 0.1, 0.9, float("inf"))
    np.testing.assert_array_equal(w, 1.0)  # refused before anything was written


def test_shape_helpers_refuse_negative_dimensions_and_sizes_that_wrap():
    with pytest.raises(ValueError, match=r"argument 'x' has a negative dimension: \(-5, -2, 8, 8\)"):
        _C.max_pool_output_shape([-5, -2, 8, 8], 3, 2)
    # 2^80 elements: the workspace size wrapped int64 to 0
    with pytest.raises(ValueError, match=r"more than 2\^56 elements"):
        _C.lrn_workspace_floats([1, 2, 2**40, 2**40], 5, False)
    assert _C.lrn_workspace_floats([2, 8, 4, 4], 5, False) >= 0
    # (2^62 + 1) * 4 wraps to 4: w's channel count was taken as x's 4 with groups=4
    with pytest.raises(ValueError, match="channel mismatch"):
        _C.conv2d_shape([1, 4, 8, 8], [4, 2**62 + 1, 3, 3], 1, 0, 4)


def test_arrays_side_by_side_in_one_buffer_do_not_share_memory(rng):
    # Ranges are half-open: an output that ends exactly where an input (or another output) begins shares no
    # byte with it and is taken (a check counting the shared boundary as an overlap refused valid calls).
    x = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    n = x.size
    buf = np.empty(2 * n, np.float32)
    buf[n:] = x.reshape(-1)
    _C.relu_forward(buf[n:], buf[:n])  # y right before x
    np.testing.assert_array_equal(buf[:n], ops.relu(x).reshape(-1))
    buf[:n] = x.reshape(-1)
    _C.lrn_forward(buf[:n].reshape(x.shape), buf[n:].reshape(x.shape), 5, 1e-4, 0.75, 2.0)  # y right after x
    np.testing.assert_array_equal(buf[n:].reshape(x.shape), ops.lrn(x))
    flat = np.empty(n + n // 4, np.float32)  # dropout's y, then its uint8 mask in the bytes that follow
    y, mask = flat[:n], flat[n:].view(np.uint8)
    _C.dropout_forward(x.reshape(-1), y, mask, 7, 0.5)
    want_y, want_mask = ops.dropout(x.reshape(-1), seed=7)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(mask, want_mask)


def test_in_place_means_the_same_bytes_not_the_same_start(rng):
    # dropout may write y over x, and dx over dy, exactly; a uint8 mask (or a float32 dx over the mask) that merely
    # starts where the other array starts covers a quarter (or four times) its bytes: a kernel writing one
    # element clobbers elements it has yet to read.
    x = rng.standard_normal(16).astype(np.float32)
    with pytest.raises(ValueError, match="argument 'mask' must not share memory with 'x'"):
        _C.dropout_forward(x, np.empty_like(x), x.view(np.uint8)[:16], 7, 0.5)
    buf = np.zeros(16, np.float32)
    mask = buf.view(np.uint8)[:16]
    mask[::2] = 1
    with pytest.raises(ValueError, match="argument 'dx' must not share memory with 'mask'"):
        _C.dropout_backward(x, mask, buf, 0.5)


class FakeCudaArray:
    """A hand-written __cuda_array_interface__ (no device memory behind it: only its validation is reached)."""

    def __init__(self, **entries):
        self.__cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (256, False), "version": 3,
                                         **entries}


def test_a_cuda_array_with_gaps_between_rows_or_elements_is_refused_as_not_contiguous():
    for shape, strides in (((2, 3), (16, 4)), ((3,), (8,)), ((2, 3), (12, 8))):  # rows apart, elements apart
        with pytest.raises(ValueError, match="argument 'x' must be C-contiguous"):
            _C.relu_forward(FakeCudaArray(shape=shape, strides=strides), np.empty(shape, np.float32))
    # a dimension of size 1 may have any stride (numpy and CuPy give such views): not a contiguity refusal
    with pytest.raises((TypeError, ValueError)) as e:
        _C.relu_forward(FakeCudaArray(shape=(1, 3), strides=(999, 4)), np.empty((1, 3), np.float32))
    assert "C-contiguous" not in str(e.value)


def test_a_cuda_array_with_a_null_pointer_and_one_element_is_refused():
    with pytest.raises(ValueError, match="null data pointer but 1 elements"):
        _C.relu_forward(FakeCudaArray(shape=(1,), data=(0, False)), np.empty(1, np.float32))


def test_integer_hyper_parameters_from_2_31_are_refused_not_wrapped_negative():
    # 2^31 is the first value a C int cannot hold (as int it is -2^31): refused at the boundary, not from 2^32.
    with pytest.raises(ValueError, match=r"pooling stride must be < 2\^31, got 2147483648"):
        _C.max_pool_output_shape([1, 1, 9, 9], 3, 2**31)
    with pytest.raises(ValueError, match=r"pooling size must be < 2\^31, got 2147483648"):
        _C.max_pool_output_shape([1, 1, 9, 9], 2**31, 1)
    x = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"LRN size must be < 2\^31, got 2147483649"):
        _C.lrn_forward(x, np.empty_like(x), 2**31 + 1, 1e-4, 0.75, 2.0)


def test_eight_byte_elements_four_bytes_off_are_refused():
    # Alignment is to the element's own size: an int64 or float64 view 4 bytes past a boundary is aligned for a
    # float32, but not for its elements.
    def four_off(a):
        raw = np.zeros(a.nbytes + 8, np.uint8)
        start = (-raw.ctypes.data) % 8 + 4  # a multiple of 4 bytes, never of 8
        view = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view

    logits = np.zeros((4, 5), np.float32)
    out = np.empty(4, np.float32), np.empty_like(logits)
    with pytest.raises(ValueError, match="'labels' is not aligned to its 8-byte elements"):
        _C.softmax_cross_entropy(logits, four_off(np.zeros(4, np.int64)), *out, np.zeros(3), np.zeros(1, np.uint32))
    with pytest.raises(ValueError, match="'stats' is not aligned to its 8-byte elements"):
        _C.softmax_cross_entropy(logits, np.zeros(4, np.int64), *out, four_off(np.zeros(3)), np.zeros(1, np.uint32))
