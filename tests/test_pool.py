"""max_pool and max_pool_backward against plain numpy loops, ties, finite differences, and the GPU."""
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


@pytest.mark.parametrize("size,stride", [(3, 2), (2, 1), (5, 3)])
def test_rows_wider_than_the_cpu_scan_chunk_with_ties_and_nans(rng, size, stride):
    # The CPU scans up to 256 windows of a row together: outputs on both sides of that boundary, ties
    # (first maximal wins) and NaNs (the first NaN wins) must give the reference's winners.
    x = np.round(rng.standard_normal((1, 2, 7, 900)), 1).astype(np.float32)
    x.flat[rng.integers(0, x.size, 40)] = np.nan
    y = ops.max_pool(x, size=size, stride=stride)
    assert y.shape[3] > 256
    np.testing.assert_array_equal(y, ref_pool(x, size, stride))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.max_pool_backward(dy, x, y, size=size, stride=stride)
    # np.argmax (the reference's rule) also returns the first NaN of a window.
    np.testing.assert_allclose(dx, ref_pool_backward(dy, x, size, stride), rtol=1e-6, atol=1e-6)


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


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=0), "size must be >= 1"),
    (dict(size=3, stride=0), "stride must be >= 1"),
    (dict(size=2, stride=3), "must be >= stride"),
    (dict(size=6, stride=2), "larger than the input"),
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
