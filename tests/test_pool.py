"""max_pool and max_pool_backward against plain numpy loops, ties, finite differences, and the GPU; the same
with stored winner indices (max_pool(..., return_indices=True), max_pool_backward(..., indices=...))."""
import numpy as np
import pytest

from pyalexnet import ops

from numerics import numeric_grad


def ref_pool(x, size=3, stride=2):
    N, C, H, W = x.shape
    OH, OW = (H - size) // stride + 1, (W - size) // stride + 1
    y = np.empty((N, C, OH, OW), x.dtype)
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size].max(axis=(2, 3))
    return y


def ref_pool_backward(dy, x, size=3, stride=2):
    """Each window's dy to its first maximal element in row-major order (np.argmax picks the first)."""
    N, C, H, W = x.shape
    dx = np.zeros(x.shape, np.float64)
    for n in range(N):
        for c in range(C):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    win = x[n, c, i * stride:i * stride + size, j * stride:j * stride + size]
                    a, b = np.unravel_index(np.argmax(win), win.shape)
                    dx[n, c, i * stride + a, j * stride + b] += dy[n, c, i, j]
    return dx


GEOMETRIES = [(3, 2, 13), (3, 2, 55), (2, 2, 8), (3, 1, 7), (1, 1, 4), (5, 3, 12), (4, 2, 9), (3, 3, 10)]


@pytest.mark.parametrize("size,stride,H", GEOMETRIES)
def test_max_pool_matches_numpy(rng, size, stride, H):
    x = rng.standard_normal((2, 3, H, H + 1)).astype(np.float32)
    y = ops.max_pool(x, size=size, stride=stride)
    assert y.shape == (2, 3, (H - size) // stride + 1, (H + 1 - size) // stride + 1)
    np.testing.assert_array_equal(y, ref_pool(x, size, stride))


def test_alexnet_sizes():
    for h, out in [(55, 27), (27, 13), (13, 6)]:
        assert ops.max_pool(np.zeros((1, 1, h, h), np.float32)).shape == (1, 1, out, out)


@pytest.mark.parametrize("size,stride,H", GEOMETRIES)
def test_max_pool_backward_matches_numpy(rng, size, stride, H):
    x = rng.standard_normal((2, 3, H, H + 1)).astype(np.float32)
    y = ops.max_pool(x, size=size, stride=stride)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.max_pool_backward(dy, x, y, size=size, stride=stride)
    np.testing.assert_allclose(dx, ref_pool_backward(dy, x, size, stride), rtol=1e-6, atol=1e-6)


# The CPU finds winners in bands of 8192 floats: groups of whole planes when a plane fits (several planes per
# band, the last group shorter), else bands of rows of one plane, else (size rows wider than a band) each
# window's own scan. Shapes (N, C, H, W) that take each path, with windows whose side is a compile-time
# constant there (2 to 5) and one that is not (7).
CPU_BAND_CASES = [((3, 7, 13, 13), 3, 2), ((1, 2, 7, 900), 3, 2), ((1, 2, 100, 101), 3, 2), ((1, 1, 90, 97), 2, 1),
                  ((1, 1, 81, 110), 5, 3), ((1, 2, 60, 150), 7, 2), ((1, 2, 7, 3000), 3, 2), ((1, 1, 5, 5000), 2, 1),
                  ((2, 1, 9, 1300), 7, 3)]


@pytest.mark.parametrize("shape,size,stride", CPU_BAND_CASES)
def test_every_cpu_band_path_with_ties_and_nans(rng, shape, size, stride):
    # Ties (the first maximal element wins) and NaNs (the first NaN wins) on both sides of every band boundary.
    x = np.round(rng.standard_normal(shape), 1).astype(np.float32)
    x.flat[rng.integers(0, x.size, x.size // 100 + 1)] = np.nan
    y = ops.max_pool(x, size=size, stride=stride)
    np.testing.assert_array_equal(y, ref_pool(x, size, stride))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.max_pool_backward(dy, x, y, size=size, stride=stride)
    # np.argmax (the reference's rule) also returns the first NaN of a window.
    np.testing.assert_allclose(dx, ref_pool_backward(dy, x, size, stride), rtol=1e-6, atol=1e-6)
    y2, idx = ops.max_pool(x, size=size, stride=stride, return_indices=True)
    np.testing.assert_array_equal(idx, ref_pool_indices(x, size, stride))
    np.testing.assert_array_equal(bits(y2), bits(y))
    np.testing.assert_array_equal(bits(ops.max_pool_backward(dy, x, indices=idx, size=size, stride=stride)), bits(dx))


def test_max_pool_backward_matches_finite_differences(rng):
    # Distinct values spaced well beyond eps, so no window's max changes under the perturbation.
    x = (rng.permutation(2 * 2 * 7 * 7).reshape(2, 2, 7, 7) * 0.1).astype(np.float64)
    y = ops.max_pool(x)
    dy = rng.standard_normal(y.shape)
    numeric = numeric_grad(lambda v: ref_pool(v), x, dy, eps=1e-3)
    np.testing.assert_allclose(ops.max_pool_backward(dy, x, y), numeric, rtol=1e-4, atol=1e-4)


def test_ties_go_to_the_first_maximal_element_and_overlaps_add():
    x = np.zeros((1, 1, 5, 5), np.float32)  # all equal: every window picks its top-left element
    y = ops.max_pool(x)
    dy = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
    dx = ops.max_pool_backward(dy, x, y)
    expected = np.zeros((5, 5), np.float32)
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], expected)

    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 7.0  # shared by all four windows: they all route to it
    x[0, 0, 1, 1] = 7.0  # an equal value earlier in window (0, 0) only: that window takes it instead
    dx = ops.max_pool_backward(dy, x, ops.max_pool(x))
    assert dx[0, 0, 1, 1] == 1 and dx[0, 0, 2, 2] == 2 + 3 + 4 and dx.sum() == 10


def test_nan_propagates_to_the_output_and_takes_the_gradient():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 2] = np.nan
    x[0, 0, 2, 2] = 5.0
    y = ops.max_pool(x, size=3, stride=1)
    assert np.isnan(y[0, 0, 0, 0])
    dx = ops.max_pool_backward(np.ones_like(y), x, y, size=3, stride=1)
    assert dx[0, 0, 1, 2] == 1 and dx.sum() == 1


def test_backward_is_deterministic(rng):
    x = np.round(rng.standard_normal((4, 8, 27, 27)), 1).astype(np.float32)  # many ties
    y = ops.max_pool(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    a, b = ops.max_pool_backward(dy, x, y), ops.max_pool_backward(dy, x, y)
    np.testing.assert_array_equal(a, b)


def test_empty_batch():
    x = np.zeros((0, 3, 5, 5), np.float32)
    y = ops.max_pool(x)
    assert y.shape == (0, 3, 2, 2)
    assert ops.max_pool_backward(y, x, y).shape == x.shape


# --- stored winner indices ------------------------------------------------------------------------------------


def ref_pool_indices(x, size=3, stride=2):
    """Each window's winner as dh * size + dw, by plain loops: the first element in row-major order that is
    greater than the best so far, or a NaN when the best is still a number (so the first NaN wins)."""
    N, C, H, W = x.shape
    OH, OW = (H - size) // stride + 1, (W - size) // stride + 1
    idx = np.empty((N, C, OH, OW), np.uint8)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, tap = x[n, c, i * stride, j * stride], 0
                    for dh in range(size):
                        for dw in range(size):
                            v = x[n, c, i * stride + dh, j * stride + dw]
                            if v > best or (np.isnan(v) and not np.isnan(best)):
                                best, tap = v, dh * size + dw
                    idx[n, c, i, j] = tap
    return idx


def ref_pool_backward_from_indices(dy, idx, x_shape, size=3, stride=2):
    """Each window's dy to the input its index names, in float64."""
    dx = np.zeros(x_shape, np.float64)
    N, C, OH, OW = dy.shape
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    dh, dw = divmod(int(idx[n, c, i, j]), size)
                    dx[n, c, i * stride + dh, j * stride + dw] += dy[n, c, i, j]
    return dx


def hard_pool_input(rng, shape):
    """Coarse values (many ties), some NaNs and -infs, and a plane's corner all -inf and another all NaN."""
    x = np.round(rng.standard_normal(shape) * 2) / 2
    x.flat[rng.integers(0, x.size, max(1, x.size // 60))] = np.nan
    x.flat[rng.integers(0, x.size, max(1, x.size // 30))] = -np.inf
    x[0, 0, :4, :4] = -np.inf
    x[-1, -1, -4:, -4:] = np.nan
    return x.astype(np.float32)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


# (size, stride, H, W): size == stride, 1x1, the paper's 3/2, 5/3, non-square, windows as large as one byte allows.
INDEX_GEOMETRIES = [(3, 2, 13, 13), (3, 2, 27, 20), (2, 2, 8, 9), (3, 3, 10, 7), (1, 1, 4, 5), (5, 3, 12, 17),
                    (4, 2, 9, 11), (3, 1, 7, 6), (2, 1, 5, 9), (16, 16, 33, 40), (16, 3, 20, 22), (7, 3, 7, 30)]


@pytest.mark.parametrize("size,stride,H,W", INDEX_GEOMETRIES)
def test_indices_match_numpy_loops_and_y_is_unchanged(rng, size, stride, H, W):
    x = hard_pool_input(rng, (2, 3, H, W))
    y, idx = ops.max_pool(x, size=size, stride=stride, return_indices=True)
    assert idx.dtype == np.uint8 and idx.shape == y.shape
    np.testing.assert_array_equal(idx, ref_pool_indices(x, size, stride))
    np.testing.assert_array_equal(bits(y), bits(ops.max_pool(x, size=size, stride=stride)))
    # The index names the window's maximum (NaN where the window has one).
    OH, OW = y.shape[2:]
    dh, dw = np.divmod(idx.astype(np.int64), size)
    rows = np.arange(OH)[:, None] * stride + dh
    cols = np.arange(OW)[None, :] * stride + dw
    picked = np.take_along_axis(x.reshape(2, 3, -1), (rows * W + cols).reshape(2, 3, -1), axis=2).reshape(y.shape)
    np.testing.assert_array_equal(bits(picked), bits(y))


@pytest.mark.parametrize("size,stride,H,W", INDEX_GEOMETRIES)
def test_backward_from_indices_is_the_recompute_bit_for_bit(rng, size, stride, H, W):
    x = hard_pool_input(rng, (2, 3, H, W))
    y, idx = ops.max_pool(x, size=size, stride=stride, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.max_pool_backward(dy, x, indices=idx, size=size, stride=stride)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    np.testing.assert_array_equal(bits(dx), bits(ops.max_pool_backward(dy, x, y, size=size, stride=stride)))
    np.testing.assert_allclose(dx, ref_pool_backward_from_indices(dy, idx, x.shape, size, stride), rtol=1e-6,
                               atol=1e-6)


def test_backward_from_indices_matches_finite_differences(rng):
    x = (rng.permutation(2 * 2 * 9 * 8).reshape(2, 2, 9, 8) * 0.1).astype(np.float64)  # distinct, well spaced
    _, idx = ops.max_pool(x, return_indices=True)
    dy = rng.standard_normal(idx.shape)
    numeric = numeric_grad(lambda v: ref_pool(v), x, dy, eps=1e-3)
    np.testing.assert_allclose(ops.max_pool_backward(dy, x, indices=idx), numeric, rtol=1e-4, atol=1e-4)


def test_backward_from_indices_reads_only_the_shape_of_x(rng):
    x = hard_pool_input(rng, (2, 3, 11, 11))
    y, idx = ops.max_pool(x, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = ops.max_pool_backward(dy, x, indices=idx)
    # Other values, another float dtype, another memory order: the same dx.
    for other in (np.full(x.shape, np.nan, np.float32), x.astype(np.float64), np.asfortranarray(x)):
        np.testing.assert_array_equal(bits(ops.max_pool_backward(dy, other, indices=idx)), bits(want))


def test_ties_and_nans_with_indices():
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 7.0  # shared by all four windows
    x[0, 0, 1, 1] = 7.0  # an equal value earlier in window (0, 0) only
    y, idx = ops.max_pool(x, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[4, 6], [2, 0]])
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 2], x[0, 0, 2, 0], x[0, 0, 2, 2] = np.nan, np.nan, 5.0  # the first NaN wins over a larger number
    y, idx = ops.max_pool(x, size=3, stride=1, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 5


def test_indices_that_name_no_tap_route_nowhere(rng):
    x = hard_pool_input(rng, (1, 2, 9, 9))
    y, idx = ops.max_pool(x, return_indices=True)
    dy = np.ones(y.shape, np.float32)
    bad = idx.copy()
    bad[0, 0] = 255  # >= size * size: compared, never used as an offset
    bad[0, 1, 0, 0] = 9
    # Said by default (a gradient dropped without a word is a wrong answer)...
    with pytest.raises(ValueError, match=r"'indices' holds winner 255, outside a 3x3 window \(0..8\)"):
        ops.max_pool_backward(dy, x, indices=bad)
    # ...and unchecked (as AlexNet's backward passes its own forward's), the kernel reads no element for them.
    dx = ops.max_pool_backward(dy, x, indices=bad, check_indices=False)
    assert not dx[0, 0].any()
    np.testing.assert_allclose(dx[0, 1], ref_pool_backward_from_indices(dy, idx, x.shape)[0, 1]
                               - (np.arange(81).reshape(9, 9) == idx[0, 1, 0, 0] // 3 * 9 + idx[0, 1, 0, 0] % 3))


def test_non_contiguous_indices_are_accepted(rng):
    x = hard_pool_input(rng, (2, 3, 9, 9))
    y, idx = ops.max_pool(x, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.max_pool_backward(dy, x, indices=np.asfortranarray(idx)),
                                  ops.max_pool_backward(dy, x, indices=idx))


def test_empty_batch_with_indices():
    x = np.zeros((0, 3, 5, 5), np.float32)
    y, idx = ops.max_pool(x, return_indices=True)
    assert y.shape == idx.shape == (0, 3, 2, 2) and idx.dtype == np.uint8
    assert ops.max_pool_backward(y, x, indices=idx).shape == x.shape


def test_indices_need_windows_of_at_most_16():
    x = np.ones((1, 1, 20, 20), np.float32)
    with pytest.raises(ValueError, match="size <= 16.*one byte"):
        ops.max_pool(x, size=17, stride=1, return_indices=True)
    assert ops.max_pool(x, size=17, stride=1).shape == (1, 1, 4, 4)  # the plain forward has no such limit
    from pyalexnet._backend import _C
    with pytest.raises(ValueError, match="size <= 16"):
        _C.max_pool_backward_from_indices(np.ones((1, 1, 4, 4), np.float32), np.zeros((1, 1, 4, 4), np.uint8),
                                          np.empty((1, 1, 20, 20), np.float32), 17, 1)
    with pytest.raises(ValueError, match="size <= 16"):
        _C.max_pool_forward_with_indices(x, np.empty((1, 1, 4, 4), np.float32), np.empty((1, 1, 4, 4), np.uint8),
                                         17, 1)


def test_backward_needs_exactly_one_of_y_and_indices():
    x = np.ones((1, 2, 7, 7), np.float32)
    y, idx = ops.max_pool(x, return_indices=True)
    with pytest.raises(TypeError, match="exactly one of y .* and indices.*both"):
        ops.max_pool_backward(y, x, y, indices=idx)
    with pytest.raises(TypeError, match="exactly one of y .* and indices.*neither"):
        ops.max_pool_backward(y, x)


def test_return_indices_and_check_indices_are_booleans():
    # return_indices="no" (truthy) returned a (y, indices) tuple where y was meant.
    x = np.ones((1, 2, 7, 7), np.float32)
    y, idx = ops.max_pool(x, return_indices=True)
    for bad in ("no", None, 1):
        with pytest.raises(TypeError, match=f"return_indices must be True or False, got {bad!r}"):
            ops.max_pool(x, return_indices=bad)
        with pytest.raises(TypeError, match=f"check_indices must be True or False, got {bad!r}"):
            ops.max_pool_backward(y, x, indices=idx, check_indices=bad)
    assert isinstance(ops.max_pool(x, return_indices=np.bool_(False)), np.ndarray)


def test_bad_indices():
    x = np.ones((1, 2, 7, 7), np.float32)
    y, idx = ops.max_pool(x, return_indices=True)
    with pytest.raises(TypeError, match="'indices' must have dtype uint8"):
        ops.max_pool_backward(y, x, indices=idx.astype(np.int64))
    with pytest.raises(TypeError, match="'indices' must be the uint8 array"):
        ops.max_pool_backward(y, x, indices=[[0]])
    with pytest.raises(ValueError, match=r"'indices' must have shape \(1, 2, 3, 3\)"):
        ops.max_pool_backward(y, x, indices=idx[:, :, :2])
    with pytest.raises(ValueError, match=r"'indices' must have shape \(1, 2, 2, 2\)"):
        ops.max_pool_backward(y[:, :, :2, :2], x, indices=idx, size=4, stride=2)  # from another geometry
    with pytest.raises(ValueError, match=r"'dy' must have shape \(1, 2, 3, 3\)"):
        ops.max_pool_backward(np.ones((1, 2, 3, 4), np.float32), x, indices=idx)
    with pytest.raises(TypeError, match="'x' must be the forward's input"):
        ops.max_pool_backward(y, None, indices=idx)
    with pytest.raises(ValueError, match="4-dimensional"):
        ops.max_pool_backward(y, x[0], indices=idx)
    from pyalexnet._backend import _C
    dx = np.empty(x.shape, np.float32)
    with pytest.raises(TypeError, match="'indices' must have dtype uint8"):
        _C.max_pool_backward_from_indices(y, idx.view(np.int8), dx, 3, 2)
    with pytest.raises(ValueError, match="'indices' must have shape"):
        _C.max_pool_backward_from_indices(y, idx[:, :1], dx, 3, 2)
    with pytest.raises(TypeError, match="'dx' must have dtype float32"):
        _C.max_pool_backward_from_indices(y, idx, dx.astype(np.float64), 3, 2)
    with pytest.raises(ValueError, match="'indices' must have shape"):
        _C.max_pool_forward_with_indices(x, np.empty_like(y), np.empty((1, 2, 3, 4), np.uint8), 3, 2)
    with pytest.raises(TypeError, match="'indices' must have dtype uint8"):
        _C.max_pool_forward_with_indices(x, np.empty_like(y), np.empty(y.shape, np.float32), 3, 2)


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=0), "size must be >= 1"),
    (dict(size=3, stride=0), "stride must be >= 1"),
    (dict(size=2, stride=3), "must be >= stride"),
    (dict(size=6, stride=2), "larger than the input"),
    (dict(size=2**31), r"pooling size must be < 2\^31"),  # was pybind11's error quoting the whole input
    (dict(size=3, stride=-2**63 - 1), "pooling stride must be >= 1"),
])
def test_bad_geometry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.max_pool(np.ones((1, 1, 5, 7), np.float32), **kwargs)


def test_window_larger_than_one_side():
    with pytest.raises(ValueError, match="larger than the input"):
        ops.max_pool(np.ones((1, 1, 9, 2), np.float32))


@pytest.mark.parametrize("shape", [(5, 5), (1, 5, 5), (1, 1, 1, 5, 5)])
def test_pool_needs_4d(shape):
    with pytest.raises(ValueError, match="4-dimensional"):
        ops.max_pool(np.ones(shape, np.float32))


def test_backward_shapes_must_match():
    x = np.ones((1, 2, 7, 7), np.float32)
    y = ops.max_pool(x)
    with pytest.raises(ValueError, match="'dy'"):
        ops.max_pool_backward(np.ones((1, 2, 3, 4), np.float32), x, y)
    with pytest.raises(ValueError, match="'y'"):
        ops.max_pool_backward(y, x, np.ones((1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="'y'"):
        ops.max_pool_backward(y, x, y, size=4, stride=2)  # y from another geometry
    with pytest.raises(TypeError, match="int"):
        ops.max_pool(x, size=3.0)


# --- GPU ---------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 96, 55, 55), (4, 256, 27, 27), (4, 256, 13, 13)])
def test_gpu_pool_matches_cpu_bit_for_bit(cp, rng, shape):
    x = np.round(rng.standard_normal(shape), 1).astype(np.float32)  # ties included
    y = ops.max_pool(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg = ops.max_pool(cp.asarray(x))
    np.testing.assert_array_equal(cp.asnumpy(yg), y)
    dxg = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), yg)
    np.testing.assert_array_equal(cp.asnumpy(dxg), ops.max_pool_backward(dy, x, y))
    dxg2 = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), yg)
    np.testing.assert_array_equal(cp.asnumpy(dxg2), cp.asnumpy(dxg))  # run to run


@pytest.mark.gpu
@pytest.mark.parametrize("size,stride,H", GEOMETRIES)
def test_gpu_pool_geometries(cp, rng, size, stride, H):
    x = rng.standard_normal((2, 3, H, H + 1)).astype(np.float32)
    y = ops.max_pool(x, size=size, stride=stride)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg = ops.max_pool(cp.asarray(x), size=size, stride=stride)
    np.testing.assert_array_equal(cp.asnumpy(yg), y)
    dxg = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), yg, size=size, stride=stride)
    np.testing.assert_array_equal(cp.asnumpy(dxg), ops.max_pool_backward(dy, x, y, size=size, stride=stride))


# Shapes that take each of the CUDA kernels' tilings: several small planes per block (with a short last
# group), bands of rows (few planes, large planes, rows below the last window), one-row bands, the
# general kernels for planes too wide for a tile, and windows as tall or as wide as the input.
GPU_TILINGS = [
    ((2, 2053, 5, 5), 3, 2),      # whole planes, 4 per block, 2 in the last block
    ((128, 32, 13, 13), 3, 2),    # pool5's planes, packed
    ((1, 96, 55, 55), 3, 2),      # batch 1: bands for parallelism
    ((1, 2, 230, 231), 3, 2),     # bands: the plane does not fit
    ((1, 1, 302, 200), 4, 3),     # bands, the last input row below every window
    ((2, 1, 40, 1000), 3, 2),     # one-row backward bands, beyond the preferred budget
    ((1, 1, 9, 2500), 3, 2),      # one-row forward bands beyond the preferred budget; the general backward
    ((1, 1, 7, 5000), 3, 2),      # too wide for any band: the general kernels
    ((2, 3, 3, 50), 3, 2),        # H equal to the window
    ((2, 3, 50, 3), 3, 3),        # W equal to the window
    ((1, 1, 64, 64), 1, 1),       # 1x1 windows
    ((3, 4, 37, 29), 5, 2),
]


@pytest.mark.gpu
@pytest.mark.parametrize("shape,size,stride", GPU_TILINGS)
def test_gpu_pool_tilings_match_cpu_bit_for_bit(cp, rng, shape, size, stride):
    x = np.round(rng.standard_normal(shape), 1).astype(np.float32)  # ties included
    x.flat[rng.integers(0, x.size, 5)] = np.nan
    y = ops.max_pool(x, size=size, stride=stride)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg = ops.max_pool(cp.asarray(x), size=size, stride=stride)
    np.testing.assert_array_equal(cp.asnumpy(yg), y)
    dxg = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), yg, size=size, stride=stride)
    np.testing.assert_array_equal(cp.asnumpy(dxg), ops.max_pool_backward(dy, x, y, size=size, stride=stride))


# Shapes for the stored-winner kernels: AlexNet's (small batch), the tilings above, the largest windows.
GPU_INDEX_CASES = [((2, 96, 55, 55), 3, 2), ((2, 256, 27, 27), 3, 2), ((2, 256, 13, 13), 3, 2)] + GPU_TILINGS + [
    ((2, 3, 40, 37), 16, 16), ((1, 2, 20, 21), 16, 3), ((3, 2, 9, 40), 2, 1)]


@pytest.mark.gpu
@pytest.mark.parametrize("shape,size,stride", GPU_INDEX_CASES)
def test_gpu_indices_match_cpu_bit_for_bit(cp, rng, shape, size, stride):
    x = hard_pool_input(rng, shape)
    y, idx = ops.max_pool(x, size=size, stride=stride, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg, idxg = ops.max_pool(cp.asarray(x), size=size, stride=stride, return_indices=True)
    assert isinstance(idxg, cp.ndarray) and idxg.dtype == cp.uint8
    np.testing.assert_array_equal(cp.asnumpy(idxg), idx)
    np.testing.assert_array_equal(bits(cp.asnumpy(yg)), bits(y))
    np.testing.assert_array_equal(bits(cp.asnumpy(yg)), bits(cp.asnumpy(ops.max_pool(cp.asarray(x), size=size,
                                                                                        stride=stride))))
    dxg = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), indices=idxg, size=size, stride=stride)
    dx = ops.max_pool_backward(dy, x, indices=idx, size=size, stride=stride)
    np.testing.assert_array_equal(bits(cp.asnumpy(dxg)), bits(dx))
    dxg_recompute = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), yg, size=size, stride=stride)
    np.testing.assert_array_equal(bits(cp.asnumpy(dxg_recompute)), bits(dx))


@pytest.mark.gpu
def test_gpu_indices_that_name_no_tap_route_nowhere(cp, rng):
    x = hard_pool_input(rng, (2, 4, 27, 27))
    y, idx = ops.max_pool(x, return_indices=True)
    idx[:, ::2] = 200
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dxg = ops.max_pool_backward(cp.asarray(dy), cp.asarray(x), indices=cp.asarray(idx))
    np.testing.assert_array_equal(bits(cp.asnumpy(dxg)), bits(ops.max_pool_backward(dy, x, indices=idx)))
    assert not cp.asnumpy(dxg)[:, ::2].any()


@pytest.mark.gpu
def test_gpu_indices_bad_input(cp):
    x = np.ones((1, 2, 7, 7), np.float32)
    y, idx = ops.max_pool(x, return_indices=True)
    xg, yg, idxg = cp.asarray(x), cp.asarray(y), cp.asarray(idx)
    with pytest.raises(TypeError, match="'dy' and 'indices'"):
        ops.max_pool_backward(yg, xg, indices=idx)
    with pytest.raises(TypeError, match="'dy' and 'x'"):
        ops.max_pool_backward(yg, x, indices=idxg)
    with pytest.raises(TypeError, match="'indices' must have dtype uint8"):
        ops.max_pool_backward(yg, xg, indices=idxg.astype(cp.int32))
    with pytest.raises(ValueError, match="'indices' must have shape"):
        ops.max_pool_backward(yg, xg, indices=idxg[:, :1])
    from pyalexnet._backend import _C
    with pytest.raises(TypeError):
        _C.max_pool_backward_from_indices(yg, idx, cp.empty(x.shape, cp.float32), 3, 2)  # host indices, GPU dy
    with pytest.raises(ValueError, match="size <= 16"):
        ops.max_pool(cp.ones((1, 1, 20, 20), cp.float32), size=17, stride=1, return_indices=True)
