"""Edge cases of the CPU kernels that the per-op tests did not reach, found by mutation testing: each test here
failed against a deliberately wrong kernel that every other test passed. Small shapes, numpy references from the
per-op test modules."""
import numpy as np
import pytest

from pyalexnet import _C, ops

from test_conv import assert_close, assert_passes_match_direct_sums, case_arrays, ref_conv2d, ref_conv2d_backward
from test_lrn import ref_lrn, ref_lrn_backward
from test_pool import ref_pool, ref_pool_backward, ref_pool_indices
from test_softmax import raw_cross_entropy, ref_softmax

# --- convolution (kernels/conv_cpu.cpp) -----------------------------------------------------------------------

# Stride 1 with Q == W ("rows line up": each tap's im2col row is one flat run of the plane) where a tap row sees
# only padding: one input row under a 3x3 "same" filter (tap rows 0 and 2 of the single output row), two rows
# under 5x5 with padding 2. Such a tap has no run at all; taken as the whole row, it read the rows above and
# below the plane. The last case is too wide for the padding masks (3 x 1500 columns), so im2col and col2im
# zero the padding columns themselves.
FLAT_EMPTY_TAP_CASES = [
    (2, 3, 1, 6, 4, 3, 3, 1, 1, 1),
    (1, 2, 2, 5, 3, 5, 5, 1, 2, 1),
    (1, 2, 1, 1500, 3, 3, 3, 1, 1, 1),
]


@pytest.mark.parametrize("case", FLAT_EMPTY_TAP_CASES, ids=lambda c: "x".join(map(str, c)))
def test_conv_taps_whose_rows_lie_wholly_in_the_padding(rng, case):
    assert_passes_match_direct_sums(rng, case)


# Blocks of im2col columns that start and end inside an output row, on the flat path, with filters so wide that
# the padding masks do not fit (S x block columns > 4096 floats): im2col zeroes each block's padding columns
# itself. 17x17: the filter gradient's 256-column blocks, at any thread count; 15x15: the forward's 288-column
# blocks (with two or more threads: one thread convolves the whole batch as one product).
MASKLESS_BLOCK_CASES = [(3, 1, 17, 30, 4, 17, 17, 1, 8, 1), (4, 2, 20, 20, 4, 15, 15, 1, 7, 1)]


@pytest.mark.parametrize("case", MASKLESS_BLOCK_CASES, ids=lambda c: "x".join(map(str, c)))
def test_conv_padding_columns_of_blocks_too_wide_for_the_masks(rng, case):
    x, w, b, hyper = case_arrays(rng, case)
    y = ops.conv2d(x, w, b, **hyper)
    assert_close(y, ref_conv2d(x, w, b, **hyper), w[0].size)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, dw, _ = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    assert_close(dw, ref_conv2d_backward(dy, x, w, **hyper)[1], dy[:, 0].size)


def test_conv_filter_gradient_partial_sum_of_several_whole_images(rng):
    # 9 images of 12x12 maps (too large to share a product) dealt to at most 8 partial sums: the first sums
    # images 0 and 8, and the second image must add to the first, not replace it.
    x, w, _, hyper = case_arrays(rng, (9, 1, 12, 12, 2, 3, 3, 1, 1, 1), bias=False)
    dy = rng.standard_normal((9, 2, 12, 12)).astype(np.float32)
    _, dw, _ = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    assert_close(dw, ref_conv2d_backward(dy, x, w, **hyper)[1], dy[:, 0].size)


def test_conv_last_workspace_chunk_writes_only_its_own_images(rng):
    # With few images (fewer than two per thread, or one thread) the CPU convolves a chunk of images as one product, as many
    # as fit its 16 MiB workspace: 2 of these 300x300 images, so 3 images make a chunk of 2 and one of 1. The
    # last chunk must stop at the batch's end: y and dx are views of buffers with one more image, which must
    # keep its sentinel values.
    N, C, H, W, K = 3, 1, 300, 300, 7
    x, w, b, hyper = case_arrays(rng, (N + 1, C, H, W, K, 3, 3, 1, 1, 1))
    x = x[:N]  # inputs with an image after them too: a chunk run past the batch reads it instead of crashing
    dy = rng.standard_normal((N + 1, K, H, W)).astype(np.float32)[:N]
    sentinel = np.float32(12345.0)
    for name, out_shape, pass_ in (("y", (N + 1, K, H, W), "forward"), ("dx", (N + 1, C, H, W), "backward_data")):
        need = _C.conv2d_workspace_size(x.shape, w.shape, 1, 1, 1, pass_, False)
        ws = np.empty(max(1, need), np.float32)
        buf = np.full(out_shape, sentinel, np.float32)
        if pass_ == "forward":
            _C.conv2d_forward(x, w, b, buf[:N], ws, 1, 1, 1)
            assert_close(buf[:N], ref_conv2d(x, w, b, **hyper), w[0].size)
        else:
            _C.conv2d_backward_data(dy, w, buf[:N], ws, 1, 1, 1)
            assert_close(buf[:N], ref_conv2d_backward(dy, x, w, **hyper)[0], K * 9)
        assert np.all(buf[N] == sentinel), f"{name} written past the batch"


# --- local response normalisation (kernels/lrn.h's running sums: windows above 7 channels) --------------------


@pytest.mark.parametrize("size", [9, 11])
@pytest.mark.parametrize("C", [1, 3, 5, 6, 7, 13])
def test_lrn_running_sums_at_ordinary_magnitudes(rng, size, C):
    # The other tests of windows above 7 use huge values, where a wrong term of order 1 in the window sum is
    # lost in rounding. Here: windows wider than all the channels (C <= size // 2 + 1, where the first window
    # already holds the last channel) and windows sliding off the last channel.
    params = dict(size=size, alpha=0.05, beta=0.75, k=2.0)
    x = (rng.standard_normal((2, C, 3, 2)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ops.lrn(x, **params)
    np.testing.assert_allclose(y, ref_lrn(x, **params), rtol=2e-6, atol=1e-7)
    ref = ref_lrn_backward(dy, x, **params)
    np.testing.assert_allclose(ops.lrn_backward(dy, x, y, **params), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_lrn_running_sum_after_an_overflowed_square_leaves():
    # 3e19 squared is inf: the running sum is inf while it is in the window and inf - inf = NaN when it leaves;
    # the sum must then be recomputed, or every later channel of the pixel is NaN.
    x = np.ones((1, 16, 1, 2), np.float32)
    x[0, 2, 0, 0] = 3e19
    y = ops.lrn(x, size=9)
    np.testing.assert_allclose(y[:, 7:], ref_lrn(x, size=9)[:, 7:], rtol=1e-6)  # windows without channel 2


def test_lrn_running_sum_of_two_squares_that_overflow_only_together():
    # 1.5e19 squared is 2.25e38 (finite), two of them overflow: the float32 sum is inf while both are in the
    # window (channels 0-6: d = inf, outputs 0) and still inf after channel 2 leaves, though the windows of
    # channels 7-11 then hold one finite square. Kept as inf, their d^-beta is 0 and so is every output;
    # recomputed, the outputs are tiny but not 0.
    x = np.ones((1, 16, 1, 1), np.float32)
    x[0, 2] = x[0, 3] = 1.5e19
    y = ops.lrn(x, size=9)
    ref = ref_lrn(x, size=9)
    assert np.all(ref[0, 7:12] > 0)
    np.testing.assert_allclose(y[0, 7:], ref[0, 7:], rtol=1e-5, atol=0)


def test_lrn_window_of_seven_is_summed_directly(rng):
    # Windows up to 7 channels are summed directly for each channel, as the GPU does; a running sum down the
    # channels drifts by about 1e-5 over 96 channels at these parameters.
    params = dict(size=7, alpha=0.05, beta=1.3, k=0.5)
    x = (rng.standard_normal((1, 192, 2, 2)) * 3).astype(np.float32)
    np.testing.assert_allclose(ops.lrn(x, **params), ref_lrn(x, **params), rtol=2e-6, atol=1e-7)


# --- max pooling (kernels/pool_cpu.cpp) -------------------------------------------------------------------------


def test_pool_bands_as_full_as_the_scratch_allows(rng):
    # Small planes are pooled in groups that fit an 8192-float band: 48 planes of 13x13 (AlexNet's pool5 maps)
    # make 8112 floats. The per-op tests have at most 21 planes, so no band was ever full; one plane more
    # than fits wrote past the scratch arrays.
    x = np.round(rng.standard_normal((4, 100, 13, 13)), 1).astype(np.float32)  # ties
    y, idx = ops.max_pool(x, return_indices=True)
    np.testing.assert_array_equal(y, ref_pool(x))
    np.testing.assert_array_equal(idx, ref_pool_indices(x))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(ops.max_pool_backward(dy, x, y), ref_pool_backward(dy, x), rtol=1e-6, atol=1e-6)



@pytest.mark.parametrize("size,stride,W", [(3, 2, 3001), (3, 3, 3000), (7, 2, 1200)])
def test_pool_rows_too_wide_for_a_band_write_only_their_windows(rng, size, stride, W):
    # Rows so wide that `size` of them overflow a band take each window's own scan, in chunks of windows: the
    # last chunk of the last row must end at the plane's last window. y and the indices are views of buffers
    # one element longer (writing past a fresh array only crashed now and then).
    x = rng.standard_normal((1, 1, size + stride, W)).astype(np.float32)
    OH, OW = 2, (W - size) // stride + 1
    y_buf, idx_buf = np.full(OH * OW + 1, -7, np.float32), np.full(OH * OW + 1, 99, np.uint8)
    y, idx = y_buf[:-1].reshape(1, 1, OH, OW), idx_buf[:-1].reshape(1, 1, OH, OW)
    _C.max_pool_forward_with_indices(x, y, idx, size, stride, 0)
    assert y_buf[-1] == -7 and idx_buf[-1] == 99
    np.testing.assert_array_equal(y, ref_pool(x, size, stride))
    np.testing.assert_array_equal(idx, ref_pool_indices(x, size, stride))
    y_buf[-1] = -7
    _C.max_pool_forward(x, y, size, stride, 0)
    assert y_buf[-1] == -7


# --- softmax cross-entropy (kernels/softmax.h) ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_cross_entropy_label_equal_to_the_class_count_reads_nothing(rng, dtype):
    # The kernel's contract for a label outside [0, K) (ops raises on it afterwards): a NaN row loss, no one-hot
    # term. Label K is the one just past the row: read, it is the next row's first logit, a finite loss.
    x = rng.standard_normal((3, 5)).astype(np.float32)
    labels = np.array([1, 5, 0], dtype)
    row_loss, dx, stats = raw_cross_entropy(x, labels)
    assert np.isnan(row_loss[1]) and np.isnan(stats[0])
    assert np.all(np.isfinite(row_loss[[0, 2]]))
    np.testing.assert_allclose(dx[1], ref_softmax(x)[1] / 3, rtol=1e-6)
    assert tuple(stats[1:]) == (0.0, 5.0)


def test_softmax_rows_whose_logits_are_all_far_below_zero(rng):
    # Every exponent is taken of x - max(row): a row of logits around -1000 has a max of about -1000, and
    # exp(x - 0) would underflow to 0 for all of them (a 0/0 row). The per-op tests' rows all reach above 0.
    x = (rng.standard_normal((3, 6)) - 1000).astype(np.float32)
    labels = np.array([0, 5, 2], np.int64)
    np.testing.assert_allclose(ops.softmax(x), ref_softmax(x), rtol=1e-5, atol=1e-7)
    row_loss, dx, _ = raw_cross_entropy(x, labels)
    assert np.all(np.isfinite(row_loss)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, (ref_softmax(x) - np.eye(6)[labels]) / 3, rtol=1e-5, atol=1e-7)


# --- dropout (kernels/dropout.h) ----------------------------------------------------------------------------------


def test_dropout_gives_exact_zeros_where_dropped_whatever_the_value():
    # A dropped unit is 0 and passes no gradient, an infinite or NaN one too (multiplied by the 0/1 mask
    # instead, inf * 0 is NaN); a kept one is scaled, NaN and inf included.
    x = np.array([np.inf, -np.inf, np.nan, 1.0] * 8, np.float32)
    y, mask = ops.dropout(x, p=0.5, seed=7)
    assert 0 < mask.sum() < mask.size
    dx = ops.dropout_backward(x, mask, p=0.5)
    for out in (y, dx):
        assert np.all(out[mask == 0] == 0) and not np.any(np.signbit(out[mask == 0]))
        np.testing.assert_array_equal(out[mask == 1], x[mask == 1] * np.float32(2))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_dropout_tail_writes_nothing_past_the_last_element(n):
    # One Philox call serves 4 elements; the last call of a tensor whose length is not a multiple of 4 must
    # stop at its end. y and mask are views of longer buffers whose tails keep their sentinels (writing past
    # a fresh array only crashed now and then).
    x = np.arange(1, 9, dtype=np.float32)
    y, mask = np.full(8, -7, np.float32), np.full(8, 9, np.uint8)
    _C.dropout_forward(x[:n], y[:n], mask[:n], 3, 0.5, 0)
    assert np.all(y[n:] == -7) and np.all(mask[n:] == 9)
    y_ref, mask_ref = ops.dropout(x[:n], p=0.5, seed=3)
    np.testing.assert_array_equal(mask[:n], mask_ref)
    np.testing.assert_array_equal(y[:n], y_ref)
