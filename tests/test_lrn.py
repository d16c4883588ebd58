"""lrn and lrn_backward against the paper's formula written out per element, finite differences, and the GPU."""
import numpy as np
import pytest

import pyalexnet
from pyalexnet import _C, ops

from numerics import numeric_grad


def ref_lrn(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(C-1,i+n/2)} a[j]^2)^beta, literally, in float64."""
    x = np.asarray(x, np.float64)
    C = x.shape[1]
    y = np.empty_like(x)
    for i in range(C):
        lo, hi = max(0, i - size // 2), min(C - 1, i + size // 2)
        d = k + alpha * np.sum(x[:, lo:hi + 1] ** 2, axis=1)
        y[:, i] = x[:, i] / d ** beta
    return y


def ref_lrn_backward(dy, x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """The issue's derivative, term by term, in float64."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    C = x.shape[1]
    d = np.empty_like(x)
    for i in range(C):
        lo, hi = max(0, i - size // 2), min(C - 1, i + size // 2)
        d[:, i] = k + alpha * np.sum(x[:, lo:hi + 1] ** 2, axis=1)
    dx = dy * d ** -beta
    for i in range(C):
        for j in range(C):
            if abs(i - j) <= size // 2:  # i is in window(j)
                dx[:, i] -= 2 * alpha * beta * x[:, i] * dy[:, j] * x[:, j] * d[:, j] ** (-beta - 1)
    return dx


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("C", [1, 2, 4, 9])
def test_lrn_matches_the_literal_formula(rng, size, C):
    x = (rng.standard_normal((2, C, 3, 4)) * 20).astype(np.float32)
    y = ops.lrn(x, size=size)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, ref_lrn(x, size), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("params", [dict(), dict(size=3, alpha=0.01, beta=0.5, k=1.0), dict(size=7, alpha=1e-3, beta=1.3, k=0.5)])
def test_lrn_parameters_are_passed_through(rng, params):
    x = (rng.standard_normal((2, 11, 5, 3)) * 10).astype(np.float32)
    np.testing.assert_allclose(ops.lrn(x, **params), ref_lrn(x, **params), rtol=3e-6, atol=1e-6)


def test_alpha_is_not_divided_by_the_window_size():
    # One map of value 10, window 5: d = 2 + 1e-4 * 100 (not 2 + 1e-4/5 * 100).
    x = np.full((1, 1, 1, 1), 10.0, np.float32)
    np.testing.assert_allclose(ops.lrn(x)[0, 0, 0, 0], 10.0 / (2 + 1e-2) ** 0.75, rtol=1e-6)


@pytest.mark.parametrize("size,C", [(5, 13), (3, 2), (7, 3), (1, 4)])
def test_lrn_backward_matches_the_formula_and_finite_differences(rng, size, C):
    params = dict(size=size, alpha=0.05, beta=0.75, k=2.0)  # a large alpha makes the cross terms matter
    x = rng.standard_normal((2, C, 2, 3))
    dy = rng.standard_normal(x.shape)
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    dx = ops.lrn_backward(dy32, x32, ops.lrn(x32, **params), **params)
    np.testing.assert_allclose(dx, ref_lrn_backward(dy32, x32, **params), rtol=1e-5, atol=1e-5)
    numeric = numeric_grad(lambda v: ref_lrn(v, **params), x32, dy32, eps=1e-4)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_backward_on_larger_planes(rng, beta):
    # The other backward tests use planes of a few pixels: here 37 x 29 (the vectorised loops' bodies and tails).
    params = dict(size=5, alpha=0.01, beta=beta, k=2.0)
    x = (rng.standard_normal((3, 6, 37, 29)) * 5).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.lrn_backward(dy, x, ops.lrn(x, **params), **params)
    np.testing.assert_allclose(dx, ref_lrn_backward(dy, x, **params), rtol=2e-5, atol=2e-5)


def test_lrn_backward_at_the_paper_defaults(rng):
    x = (rng.standard_normal((2, 16, 3, 3)) * 30).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.lrn_backward(dy, x, ops.lrn(x))
    np.testing.assert_allclose(dx, ref_lrn_backward(dy, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [5, 9, 15])  # summed directly; the running sums (windows above 7)
@pytest.mark.parametrize("scale", [1e3, 1e6, 1e12])
def test_large_activations_stay_finite_and_accurate(rng, scale, size):
    x = (np.abs(rng.standard_normal((2, 12, 4, 4))) * scale).astype(np.float32)
    x[:, ::3] *= 1e-3  # big and small neighbours: the running sum must not carry the big values' rounding
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, size=size)
    dx = ops.lrn_backward(dy, x, y, size=size)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(y, ref_lrn(x, size=size), rtol=1e-5)
    ref = ref_lrn_backward(dy, x, size=size)
    np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("size", [3, 5, 7, 9, 11, 15])
@pytest.mark.parametrize("big", [1e6, 1e8, 1e10])
def test_a_huge_map_among_ones_gets_its_own_small_gradient(size, big):
    # The ratios of the ones cancel in the backward's window sum, which the huge a[i] then multiplies: the
    # running sum (windows above 7) left ~1e-7 of them and gave -4.5e-3 at 1e8, where the gradient is -5e-10.
    x = np.ones((1, 16, 1, 1), np.float32)
    x[0, 15] = big
    dy = np.ones_like(x)
    dx = ops.lrn_backward(dy, x, ops.lrn(x, size=size), size=size)
    np.testing.assert_allclose(dx, ref_lrn_backward(dy, x, size=size), rtol=1e-5)


@pytest.mark.parametrize("ratio", [60, 100, 150, 200])
def test_a_large_ratio_leaving_the_backward_window_is_recomputed_after_losing_four_bits(rng, ratio):
    # Windows above 7 run a signed sum of ratios dy[j] b[j] / d[j]. Here channel 0's ratio R leaves the window of
    # channel 5, whose own window sum is about R / ratio (channel 1's): the subtraction loses 6 to 8 bits, and the
    # sum still carries the rounding of adding the small ratios to R (up to 2^-24 R each). lrn.h recomputes the
    # sum once four bits are lost; a threshold of eight bits passed every other test and left channel 5's gradient
    # ~1e-5 off, where the recomputed sum is within float rounding (~3e-7).
    params = dict(size=9, alpha=0.05, beta=0.75, k=2.0)
    x = np.ones((1, 16, 1, 256), np.float32)  # equal denominators: each ratio is proportional to its dy
    dy = rng.uniform(-1, 1, x.shape).astype(np.float32)
    dy[0, 0] = 1e6
    dy[0, 1] = 1e6 / ratio
    dx = ops.lrn_backward(dy, x, ops.lrn(x, **params), **params)
    ref = ref_lrn_backward(dy, x, **params)
    np.testing.assert_allclose(dx[0, 5], ref[0, 5], rtol=2e-6)  # no cancellation in channel 5's exact sum
    np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_a_huge_value_leaving_the_window_does_not_poison_the_rest():
    # 1e4 squared dwarfs the small maps' squares: after it leaves the window,
    # the sum must be the small maps' own, not the big value's rounding error.
    x = np.full((1, 20, 1, 1), 1.0, np.float32)
    x[0, 0] = 1e4
    np.testing.assert_allclose(ops.lrn(x, k=1e-3, alpha=1.0), ref_lrn(x, k=1e-3, alpha=1.0), rtol=1e-5)


def test_overflowing_squares_give_zero_not_nan():
    x = np.zeros((1, 6, 1, 2), np.float32)
    x[0, 2, 0, 0] = 3e19  # its square overflows float32
    x[0, :, 0, 1] = 1.0
    y = ops.lrn(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0, :, 0, 1], ref_lrn(x)[0, :, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(y[0, 5, 0, 0], 0.0)  # out of the big value's window: 0 / 2^0.75


def test_many_channels_at_other_parameters_stay_accurate(rng):
    # A running window sum drifts down the channels (about 1e-5 relative after 96 channels at these
    # parameters); the paper's window sizes are summed directly, so the error stays at float rounding.
    params = dict(size=5, alpha=0.05, beta=1.3, k=0.5)
    x = (rng.standard_normal((2, 192, 3, 3)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, **params)
    np.testing.assert_allclose(y, ref_lrn(x.astype(np.float64), **params), rtol=2e-6, atol=1e-7)
    dx = ops.lrn_backward(dy, x, y, **params)
    ref = ref_lrn_backward(dy.astype(np.float64), x.astype(np.float64), **params)
    np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=2e-6 * np.abs(ref).max())


# The paper's exponent goes through reciprocal square roots: a few ulp at any magnitude. Other exponents go
# through exp2(-beta * log2 d), whose rounding grows with |log2 d| (about 6e-6 relative at d = 1e29).
@pytest.mark.parametrize("beta,rtol", [(0.75, 1e-6), (0.7499999, 1e-5)])
def test_power_is_accurate_over_every_magnitude_of_the_denominator(rng, beta, rtol):
    # One channel, so d = 2 + 1e-4 * x^2 runs from 2 to 1e33 across the pixels (x^2 stays finite).
    x = (10.0 ** rng.uniform(-3, 18.5, size=(1, 1, 50, 40))).astype(np.float32)
    np.testing.assert_allclose(ops.lrn(x, beta=beta), ref_lrn(x, beta=beta), rtol=rtol, atol=0)


def test_empty_input():
    x = np.zeros((0, 4, 3, 3), np.float32)
    assert ops.lrn(x).shape == x.shape
    assert ops.lrn_backward(x, x, x).shape == x.shape


def test_non_contiguous_and_float64_input(rng):
    x = rng.standard_normal((3, 6, 4, 2))
    xt = x.transpose(0, 1, 3, 2)
    np.testing.assert_allclose(ops.lrn(xt), ref_lrn(xt), rtol=2e-6, atol=1e-7)


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, -1, 2, 4])
def test_bad_window_sizes(size):
    with pytest.raises(ValueError, match="odd"):
        ops.lrn(np.ones((1, 3, 2, 2), np.float32), size=size)


def test_bad_parameters():
    x = np.ones((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="k must be > 0"):
        ops.lrn(x, k=0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        ops.lrn(x, alpha=-1.0)
    with pytest.raises(ValueError, match="beta must be a finite"):
        ops.lrn(x, beta=float("inf"))
    with pytest.raises(TypeError, match="size must be an int"):
        ops.lrn(x, size=5.0)
    # Values float32 or int32 cannot hold: named, not passed on as 0, inf or a pybind11 error quoting x.
    with pytest.raises(ValueError, match=r"k must be > 0, .*float32\), got 1e-50"):
        ops.lrn(x, k=1e-50)
    # subnormal: where alpha*sum is 0 the GPU's fast division by k overflows, and 0 * inf is NaN
    with pytest.raises(ValueError, match=r"at least float32's smallest normal number .* got 1e-39"):
        ops.lrn(x, k=1e-39)
    with pytest.raises(ValueError, match=r"at least float32's smallest normal number .* got 1e-39"):
        _C.lrn_forward(x, np.empty_like(x), 5, 1e-4, 0.75, 1e-39)
    ops.lrn(x, k=float(np.finfo(np.float32).tiny))  # the smallest normal one is taken
    with pytest.raises(ValueError, match=r"alpha must be a finite number \(float32 reaches .*\), got 1e\+300"):
        ops.lrn(x, alpha=1e300)
    with pytest.raises(ValueError, match=r"LRN size must be < 2\^31, got 2147483649"):
        ops.lrn(x, size=2**31 + 1)
    with pytest.raises(TypeError, match="alpha must be a real number, got None"):
        ops.lrn_backward(x, x, x, alpha=None)


@pytest.mark.parametrize("shape", [(3, 2, 2), (1, 3, 2, 2, 1), (5,)])
def test_lrn_needs_4d(shape):
    with pytest.raises(ValueError, match="'x' must be 4-dimensional"):
        ops.lrn(np.ones(shape, np.float32))
    a = np.ones(shape, np.float32)
    with pytest.raises(ValueError, match="argument 'x' must be 4-dimensional"):  # named 'x_shape', internal
        ops.lrn_backward(a, a, a)


def test_backward_shapes_must_match():
    x = np.ones((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="'dy'"):
        ops.lrn_backward(np.ones((1, 3, 2, 3), np.float32), x, x)
    with pytest.raises(ValueError, match="'y'"):
        ops.lrn_backward(x, x, np.ones((1, 4, 2, 2), np.float32))
    with pytest.raises(TypeError, match="'dy'"):
        ops.lrn_backward(np.ones((1, 3, 2, 2), np.int32), x, x)


def test_workspace_sizes_come_from_the_backend():
    from pyalexnet._backend import _C

    # The CPU keeps the denominators; the CUDA backend needs them only on its per-pixel path (windows above 7).
    assert _C.lrn_workspace_floats([2, 96, 5, 7], 5, False) == 2 * 96 * 35
    if pyalexnet.backend_info()["built_with_cuda"]:
        assert _C.lrn_workspace_floats([128, 96, 55, 55], 5, True) == 0
        assert _C.lrn_workspace_floats([128, 256, 27, 27], 7, True) == 0
        assert _C.lrn_workspace_floats([2, 40, 9, 9], 9, True) == 2 * 40 * 81
    with pytest.raises(ValueError, match="odd"):
        _C.lrn_workspace_floats([1, 3, 2, 2], 4, False)
    x = np.ones((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="workspace' must hold 12 floats"):
        _C.lrn_backward(x, x, x, np.empty_like(x), None, 5, 1e-4, 0.75, 2.0)
    with pytest.raises(ValueError, match="workspace' must hold 12 floats"):
        _C.lrn_backward(x, x, x, np.empty_like(x), np.empty(11, np.float32), 5, 1e-4, 0.75, 2.0)


# --- GPU ---------------------------------------------------------------------------------------------------------


# The GPU's d^-3/4 composes two rsqrtf (2 ulp each; lrn.h): up to ~10 ulp from exact, the CPU's ~4 ulp, so the two
# may differ by ~14 ulp = 1.7e-6 relative; 2e-6 (the CPU's bound against float64) left no room. Not yet run on a GPU.
GPU_Y_RTOL = 4e-6


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 96, 55, 55), (4, 256, 27, 27), (3, 3, 5, 7)])
def test_gpu_lrn_matches_cpu_at_alexnet_shapes(cp, rng, shape):
    x = np.maximum(rng.standard_normal(shape) * 5, 0).astype(np.float32)  # post-ReLU, as in the network
    dy = rng.standard_normal(shape).astype(np.float32)
    y = ops.lrn(x)
    dx = ops.lrn_backward(dy, x, y)
    yg = ops.lrn(cp.asarray(x))
    dxg = ops.lrn_backward(cp.asarray(dy), cp.asarray(x), yg)
    assert isinstance(yg, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=GPU_Y_RTOL, atol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_lrn_large_activations(cp, rng):
    x = (np.abs(rng.standard_normal((2, 12, 4, 4))) * 1e6).astype(np.float32)
    yg = ops.lrn(cp.asarray(x))
    np.testing.assert_allclose(cp.asnumpy(yg), ref_lrn(x), rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("beta", [0.75, 1.3])  # the two ways the kernels take a power
def test_gpu_lrn_overflowing_squares_match_cpu(cp, rng, beta):
    # Squares that overflow (d = inf) in the first, a middle and the last channel of a chunk, next to ordinary
    # values: both backends give the same finite outputs and gradients (y = 0 where d is inf).
    x = np.abs(rng.standard_normal((2, 40, 3, 5))).astype(np.float32)
    x[0, [0, 16, 17, 31, 32, 39], 1, 2] = 3e19
    x[1, :, 0, 0] = 1e19 * np.arange(1, 41, dtype=np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, beta=beta)
    dx = ops.lrn_backward(dy, x, y, beta=beta)
    yg = ops.lrn(cp.asarray(x), beta=beta)
    dxg = ops.lrn_backward(cp.asarray(dy), cp.asarray(x), yg, beta=beta)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=GPU_Y_RTOL, atol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("size", [1, 3, 5, 7, 9])
def test_gpu_lrn_matches_cpu_at_other_parameters(cp, rng, size):
    # Every compiled window size (1-7) and the per-pixel fallback (9), away from the paper's constants.
    params = dict(size=size, alpha=0.05, beta=1.3, k=0.5)
    x = (rng.standard_normal((2, 100, 7, 5)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, **params)
    dx = ops.lrn_backward(dy, x, y, **params)
    yg = ops.lrn(cp.asarray(x), **params)
    dxg = ops.lrn_backward(cp.asarray(dy), cp.asarray(x), yg, **params)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=GPU_Y_RTOL, atol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-5, atol=2e-6 * np.abs(dx).max())


# k ** -beta = 10 ** 37.2, just under the largest factor taken (1e38): a window of zeros has d = k.
NEAR_LARGEST_FACTOR = dict(size=3, alpha=1e-4, beta=2.0, k=10 ** -18.6)


def _zero_edged(rng, shape=(2, 8, 3, 2)):
    """Channels 0-1 and 6-7 zero (windows of zeros at both ends), the middle ones not."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[:, :2] = 0
    x[:, -2:] = 0
    return x


def test_lrn_refuses_a_largest_factor_beyond_float32_and_is_exact_below_it(rng):
    # k=1e-20, beta=2: d^-beta = 1e40 = inf in float32 at a window of zeros, so y = 0 * inf = NaN there (and in
    # every dx of the pixel) on both backends, where the formula gives 0. Refused; just below, exact.
    x = _zero_edged(rng)
    with pytest.raises(ValueError, match=r"k \*\* -beta must be at most 1e38 .* got k=1e-20, beta=2 "):
        ops.lrn(x, size=3, beta=2.0, k=1e-20)
    with pytest.raises(ValueError, match=r"k \*\* -beta must be at most 1e38"):
        _C.lrn_backward(x, x, x, np.empty_like(x), np.empty(1 << 12, np.float32), 3, 1e-4, 2.0, 1e-20)
    ops.lrn(x, size=3, beta=-2.0, k=1e-20)  # beta < 0: d^-beta grows with d, the factor at k is small
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, **NEAR_LARGEST_FACTOR)
    dx = ops.lrn_backward(dy, x, y, **NEAR_LARGEST_FACTOR)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)) and np.all(y[:, :2] == 0)
    np.testing.assert_allclose(y, ref_lrn(x, **NEAR_LARGEST_FACTOR), rtol=1e-5, atol=0)
    np.testing.assert_allclose(dx, ref_lrn_backward(dy, x, **NEAR_LARGEST_FACTOR), rtol=1e-4, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("size", [3, 9])
def test_gpu_lrn_windows_of_zeros_near_the_largest_factor_match_cpu(cp, rng, size):
    # The chunked backward takes the ratio of a channel outside [0, C) as 0 * (0 * p) / d with no test: p must be
    # finite there (k ** -beta <= 1e38), or the edge's NaN entered every sum of the pixel. 9: the per-pixel kernels.
    params = dict(NEAR_LARGEST_FACTOR, size=size)
    x = _zero_edged(rng, (2, 20, 5, 3))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, **params)
    dx = ops.lrn_backward(dy, x, y, **params)
    yg = ops.lrn(cp.asarray(x), **params)
    dxg = ops.lrn_backward(cp.asarray(dy), cp.asarray(x), yg, **params)
    assert bool(cp.all(cp.isfinite(yg))) and bool(cp.all(cp.isfinite(dxg)))
    # beta = 2: exp2f(-2 log2f(d)) with |2 log2 d| up to ~37, so log2f's 1 ulp is ~2e-6 of y; CUDA's bounds give up to
    # 3e-6 from the CPU (0.74 of GPU_Y_RTOL). A wrong window still moves y by O(1): d is nearly all alpha * sum.
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=1e-5, atol=0)
    # dx near the windows of zeros is ~1e37 and elsewhere ~1e9: an atol from the whole array's largest left every
    # other channel unchecked (a dx 1% off in channel 10 passed at size 3), so each channel is judged by its own.
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-5, atol=1e-5 * np.abs(dx).max(axis=(0, 2, 3), keepdims=True))


def test_no_channels_returns_at_once_for_any_window():
    # Windows above 7 walk pixel by pixel: with no channels that was N*H*W empty steps, years for
    # (1, 0, 2^30, 2^30), in C with the GIL released (Ctrl-C could not stop it). A subprocess, so a regression
    # is a failed test, not a hung run.
    import subprocess
    import sys

    code = ("import numpy as np; from pyalexnet import ops; x = np.empty((1, 0, 2**30, 2**30), np.float32); "
            "assert ops.lrn(x, size=9).shape == x.shape; assert ops.lrn_backward(x, x, x, size=9).shape == x.shape")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_channels_plus_half_window_beyond_int32_are_refused():
    # The kernels index a pixel's channels with int up to c + size // 2: C = 2^30 + 2 with size 2^31 - 1 wrapped
    # that negative and the CPU read 8 GB before x (a segfault). np.zeros maps its gigabytes lazily, and ops
    # refuses the shape before allocating an output. In a subprocess, so a regression is a failed test, not a
    # crashed run; skipped where the address space cannot map the inputs (exit 77).
    import subprocess
    import sys

    code = ("import numpy as np, pytest; from pyalexnet import _C, ops; C = 2**30 + 2\n"
            "try:\n    x, wide = np.zeros((1, C, 1, 1), np.float32), np.zeros((1, 2**31 - 1, 1, 1), np.float32)\n"
            "except MemoryError:\n    raise SystemExit(77)\n"
            "for call in (lambda: ops.lrn(x, size=2**31 - 1), lambda: ops.lrn_backward(x, x, x, size=2**31 - 1),\n"
            "             lambda: _C.lrn_workspace_floats([1, C, 1, 1], 2**31 - 1, False),\n"
            "             lambda: _C.lrn_forward(wide, x, 5, 1e-4, 0.75, 2.0)):\n"
            "    with pytest.raises(ValueError, match='channels \\\\+ size // 2 must be < 2\\\\^31'):\n        call()\n")
    run = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True, text=True)
    if run.returncode == 77:
        pytest.skip("this machine's address space cannot map the 12 GB of zeros the shapes need")
    assert run.returncode == 0, run.stderr
