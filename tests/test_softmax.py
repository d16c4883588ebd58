"""softmax and softmax_cross_entropy against float64 numpy, finite differences, bad labels, and the GPU."""
import numpy as np
import pytest

from pyalexnet import _backend as B
from pyalexnet import ops
from pyalexnet._backend import _C

from numerics import numeric_grad


def ref_softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_loss(x, labels):
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - x[np.arange(len(labels)), labels]))


def fixed_order_sum(row_loss):
    """The row losses' sum in softmax.h's fixed order, in float64 (Python floats): 256 lanes, lane l adding rows
    l, l + 256, ... in turn, then a pairwise tree over the lanes. Both backends must give exactly this."""
    lanes = 256
    part = [0.0] * lanes
    for lane in range(lanes):
        for v in np.asarray(row_loss, np.float32)[lane::lanes].tolist():
            part[lane] += v
    half = lanes // 2
    while half >= 1:
        for i in range(half):
            part[i] += part[i + half]
        half //= 2
    return part[0]


def raw_cross_entropy(x, labels, counter=None):
    """_C.softmax_cross_entropy into new buffers, on x's backend (the current stream on a GPU)."""
    with B.launch(x, labels) as l:
        row_loss, dx = l.xp.empty(x.shape[0], dtype=l.xp.float32), l.xp.empty_like(x)
        stats = l.xp.full(3, np.nan, dtype=l.xp.float64)
        if counter is None:
            counter = B.last_block_counter(l)
        _C.softmax_cross_entropy(x, labels, row_loss, dx, stats, counter, l.stream)
    return row_loss, dx, stats


def stream_counter(x):
    """The cached counter of x's device and the current stream, read back (it must be 0 between calls)."""
    with B.launch(x) as l:
        return int(B.to_host(B.last_block_counter(l))[0])


# Widths on both sides of the CUDA kernel's steps (float4 register rows up to 128, 256, 512, 1024 classes, float
# ones up to 32, 64, ..., 1024, wider rows in three passes), K % 4 == 0 and not, AlexNet's 1000.
WIDTHS = [1, 3, 4, 31, 32, 33, 64, 65, 127, 128, 129, 132, 256, 257, 260, 512, 516, 1000, 1023, 1024, 1025, 1028, 2048]


@pytest.mark.parametrize("shape", [(1, 1), (4, 10), (128, 1000), (3, 33)])
def test_softmax_matches_numpy(rng, shape):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    p = ops.softmax(x)
    assert p.dtype == np.float32 and p.shape == shape
    np.testing.assert_allclose(p, ref_softmax(x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1, 1), (4, 10), (128, 1000), (5, 33)])
def test_cross_entropy_matches_numpy(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0]).astype(dtype)
    loss, dx = ops.softmax_cross_entropy(x, labels)
    assert isinstance(loss, float)
    assert abs(loss - ref_loss(x, labels)) <= 1e-5 * max(1.0, abs(loss))
    onehot = np.eye(shape[1])[labels]
    np.testing.assert_allclose(dx, (ref_softmax(x) - onehot) / shape[0], rtol=1e-5, atol=1e-8)


def test_cross_entropy_gradient_matches_finite_differences(rng):
    x = rng.standard_normal((3, 5))
    labels = np.array([4, 0, 2])
    numeric = numeric_grad(lambda v: np.array(ref_loss(v, labels)), x, 1.0, eps=1e-4)
    _, dx = ops.softmax_cross_entropy(x, labels)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_huge_logits_stay_finite_and_exact(rng, scale):
    x = (rng.standard_normal((4, 6)) * scale).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    p = ops.softmax(x)
    loss, dx = ops.softmax_cross_entropy(x, labels)
    assert np.all(np.isfinite(p)) and np.isfinite(loss) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(p, ref_softmax(x), atol=1e-7)
    assert abs(loss - ref_loss(x, labels)) <= 1e-6 * abs(ref_loss(x, labels)) + 1e-6


def test_confident_right_answer_has_zero_loss():
    x = np.array([[1e4, 0.0, -1e4]], np.float32)
    loss, dx = ops.softmax_cross_entropy(x, np.array([0]))
    assert loss == 0.0 and np.all(dx == 0)
    loss, _ = ops.softmax_cross_entropy(x, np.array([2]))
    assert loss == pytest.approx(2e4)


def test_other_integer_label_dtypes_and_lists_are_accepted(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    ref = ops.softmax_cross_entropy(x, np.array([1, 2, 3]))[0]
    assert ops.softmax_cross_entropy(x, np.array([1, 2, 3], np.uint8))[0] == ref
    assert ops.softmax_cross_entropy(x, [1, 2, 3])[0] == ref


class _TensorLike:
    """An array-like whose dtype is not a numpy dtype (as a torch tensor's is): numpy reads it through __array__."""

    def __init__(self, values):
        self._values = np.asarray(values)
        self.dtype = f"torch.{self._values.dtype}"

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)


def test_labels_from_an_array_like_with_a_foreign_dtype(rng):
    # The dtype check asked labels.dtype.kind of it: an AttributeError instead of the labels being read.
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert ops.softmax_cross_entropy(x, _TensorLike([1, 2, 3]))[0] == ops.softmax_cross_entropy(x, [1, 2, 3])[0]
    with pytest.raises(TypeError, match="'labels' must be an integer array"):
        ops.softmax_cross_entropy(x, _TensorLike([1.0, 2.0, 3.0]))


def test_nan_logits_give_nan_rows():
    x = np.zeros((2, 3), np.float32)
    x[0, 1] = np.nan
    p = ops.softmax(x)
    assert np.all(np.isnan(p[0])) and np.all(np.isfinite(p[1]))


def test_one_call_gives_row_losses_gradient_and_stats(rng):
    x = (rng.standard_normal((300, 7)) * 3).astype(np.float32)
    labels = rng.integers(0, 7, 300).astype(np.int32)
    labels[5], labels[17] = 0, 6
    counter = np.zeros(1, np.uint32)
    row_loss, dx, stats = raw_cross_entropy(x, labels, counter)
    # (sum of the row losses in the backends' fixed order, smallest label, largest label)
    assert stats[0] == fixed_order_sum(row_loss)
    assert stats[0] == pytest.approx(float(row_loss.astype(np.float64).sum()), rel=1e-12)
    assert tuple(stats[1:]) == (0.0, 6.0)
    assert counter[0] == 0  # the CPU backend takes the counter and leaves it alone
    with pytest.raises(TypeError, match="'stats'"):
        _C.softmax_cross_entropy(x, labels, row_loss, dx, np.empty(3, np.float32), counter)


@pytest.mark.parametrize("n", [1, 5, 300])
@pytest.mark.parametrize("k", WIDTHS)
def test_cross_entropy_widths_match_numpy_and_the_fixed_order(rng, n, k):
    x = (rng.standard_normal((n, k)) * 5).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    row_loss, dx, stats = raw_cross_entropy(x, labels)
    assert stats[0] == fixed_order_sum(row_loss)
    loss, dx2 = ops.softmax_cross_entropy(x, labels)
    assert loss == stats[0] / n and np.array_equal(dx, dx2)
    assert abs(loss - ref_loss(x, labels)) <= 1e-5 * max(1.0, abs(loss))
    np.testing.assert_allclose(dx, (ref_softmax(x) - np.eye(k)[labels]) / n, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ops.softmax(x), ref_softmax(x), rtol=1e-5, atol=1e-7)


def test_more_rows_than_a_grid_and_the_sums_lanes(rng):
    n, k = 2 * 4096 + 3, 5  # the CUDA kernel's grid stops at 4096 blocks; the fixed order has 256 lanes
    x = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    labels = (np.arange(n) % k).astype(np.int32)
    row_loss, dx, stats = raw_cross_entropy(x, labels)
    assert stats[0] == fixed_order_sum(row_loss) and tuple(stats[1:]) == (0.0, k - 1.0)
    assert abs(stats[0] / n - ref_loss(x, labels)) <= 1e-5


def test_counter_is_validated(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.zeros(4, np.int32)
    out = np.empty(4, np.float32), np.empty_like(x), np.empty(3, np.float64)
    with pytest.raises(TypeError, match="'counter' must have dtype uint32, got int32"):
        _C.softmax_cross_entropy(x, labels, *out, np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="'counter' must hold exactly one uint32.*got shape \\(2,\\)"):
        _C.softmax_cross_entropy(x, labels, *out, np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="'counter' is written to but is read-only"):
        ro = np.zeros(1, np.uint32)
        ro.flags.writeable = False
        _C.softmax_cross_entropy(x, labels, *out, ro)
    with pytest.raises(TypeError, match="'counter' must be an array, got None"):
        _C.softmax_cross_entropy(x, labels, *out, None)


def test_a_call_after_bad_labels_is_right(rng):
    x = rng.standard_normal((6, 9)).astype(np.float32)
    labels = rng.integers(0, 9, 6)
    with pytest.raises(ValueError, match="label 9 is out of range"):
        ops.softmax_cross_entropy(x, np.where(np.arange(6) == 2, 9, labels))
    loss, dx = ops.softmax_cross_entropy(x, labels)
    assert abs(loss - ref_loss(x, labels)) <= 1e-5 * max(1.0, abs(loss))


# --- bad input -----------------------------------------------------------------------------------------------


# [0, -1]: the negative label in a row other than the first (another of the 256 lanes the label range is
# gathered in), so the lanes' smallest labels must be combined, as [0, 100] needs their largest.
@pytest.mark.parametrize("labels", [[0, 3], [-1, 0], [0, 100], [0, -1]])
def test_out_of_range_labels(labels):
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array(labels))


@pytest.mark.parametrize("labels, bad", [(np.array([2**64 - 1, 1], np.uint64), 2**64 - 1),  # was "label -1"
                                         (np.array([2**53 + 1, 0]), 2**53 + 1),  # was rounded to 2**53
                                         (np.array([1, 2**63 + 1], np.uint64), 2**63 + 1)])
def test_an_out_of_range_label_is_named_exactly(labels, bad):
    with pytest.raises(ValueError, match=f"label {bad} is out of range for 3 classes"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.float32), labels)


def test_labels_of_any_integer_dtype_and_byte_order():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    want = ops.softmax_cross_entropy(x, np.array([2, 0]))
    for dtype in (">i8", ">i4", "<u2", np.uint64, np.int8):  # big-endian int64 was refused with a dtype error
        loss, dx = ops.softmax_cross_entropy(x, np.array([2, 0]).astype(dtype))
        assert loss == want[0] and np.array_equal(dx, want[1])


@pytest.mark.parametrize("labels", [np.array([0, 1, 2]), np.array([0]), np.array([[0, 1]])])
def test_labels_of_the_wrong_length(labels):
    with pytest.raises(ValueError, match="'labels' must have shape \\(2,\\)"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.float32), labels)


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0]), np.array([True, False])])
def test_non_integer_labels(labels):
    with pytest.raises(TypeError, match="'labels' must be an integer array"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.float32), labels)


def test_bad_logits():
    with pytest.raises(ValueError, match="'logits' must be 2-dimensional"):
        ops.softmax_cross_entropy(np.zeros(3, np.float32), np.array([0]))
    with pytest.raises(ValueError, match="'logits' must be 2-dimensional"):
        ops.softmax(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="at least one class"):
        ops.softmax(np.zeros((2, 0), np.float32))
    with pytest.raises(ValueError, match="at least one row"):
        ops.softmax_cross_entropy(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    with pytest.raises(TypeError, match="'logits'"):
        ops.softmax(np.zeros((2, 3), np.int64))


# --- GPU ---------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(128, 1000), (3, 5), (1000, 37), (300, 1024), (4, 3000), (9, 1)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_gpu_matches_cpu(cp, rng, shape, dtype):
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0]).astype(dtype)
    loss, dx = ops.softmax_cross_entropy(x, labels)
    lossg, dxg = ops.softmax_cross_entropy(cp.asarray(x), cp.asarray(labels))
    assert isinstance(lossg, float) and isinstance(dxg, cp.ndarray)
    assert lossg == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(cp.asnumpy(ops.softmax(cp.asarray(x))), ops.softmax(x), rtol=1e-5, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("k", [2, 33, 250, 1000, 1001, 1024])  # padded register rows (float4 and float), and none
def test_gpu_infinite_logits_match_cpu(cp, rng, k):
    # Rows padded with -inf past their end must still sum exactly their own terms: a -inf logit gives p = 0, a row
    # of -inf or one holding +inf gives NaN, on both backends.
    x = rng.standard_normal((4, k)).astype(np.float32)
    x[0, 1 % k] = -np.inf
    x[1] = -np.inf
    x[2, k // 2] = np.inf
    labels = np.zeros(4, np.int64)
    row_loss, dx, _ = raw_cross_entropy(x, labels)
    row_loss_g, dx_g, _ = (cp.asnumpy(a) for a in raw_cross_entropy(cp.asarray(x), cp.asarray(labels)))
    np.testing.assert_allclose(row_loss_g, row_loss, rtol=1e-5, atol=1e-6)  # NaN where NaN, inf where inf
    np.testing.assert_allclose(dx_g, dx, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(cp.asnumpy(ops.softmax(cp.asarray(x))), ops.softmax(x), rtol=1e-5, atol=1e-9)
    assert np.isnan(ops.softmax(x)[1]).all() and np.isnan(ops.softmax(x)[2]).all()


def assert_dlogits_close(got, want, labels, rtol=1e-5, atol=1e-9):
    """dlogits = (p - onehot) / N within rtol of p / N at each row's label and of |dlogits| elsewhere. A row sum
    taken in another order (the GPU's) moves p by a few ulp, which at a label with p near 1 is a large part of
    p - 1: 128 x 256 logits (x 5) gave 4 ulp of a row's sum, p = 0.971, 1.0002 times rtol * |dlogits|."""
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    rows = np.arange(want64.shape[0])
    scale = np.abs(want64)
    scale[rows, labels] += (want64[rows, labels] * want64.shape[0] + 1) / want64.shape[0]  # + p / N
    with np.errstate(invalid="ignore"):
        close = (got64 == want64) | (np.isnan(got64) & np.isnan(want64)) | (np.abs(got64 - want64) <= atol + rtol * scale)
    where = np.argwhere(~close)
    assert not len(where), (f"{len(where)} dlogits differ, first at {tuple(int(i) for i in where[0])}: "
                            f"{got64[tuple(where[0])]!r} against {want64[tuple(where[0])]!r}")


# The GPU's row losses and dlogits differ from the CPU's in the last bits (CUDA's expf and logf, and a row's
# sum taken in another order), so they are compared within a tolerance; the batch's sum, from the GPU's own row
# losses, must be the fixed order's bit for bit, and every value the same from run to run. A row loss is
# log(sum) - (x[label] - max), near 0 where the label wins clearly: its error is the sum's relative error, and the
# CPU's sum of 1000 terms in turn is up to ~20 ulp off (8195 x 1000: 2.4e-6 at a loss of 0.0057), hence atol 1e-5.
@pytest.mark.gpu
@pytest.mark.parametrize("n, k", [(n, k) for n in (1, 128, 300) for k in WIDTHS]
                         + [(2 * 4096 + 3, k) for k in (5, 32, 1000)])  # more rows than the grid's 4096 blocks
def test_gpu_widths_match_cpu_and_the_fixed_order(cp, rng, n, k):
    x = (rng.standard_normal((n, k)) * 5).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int32)
    row_loss, dx, stats = raw_cross_entropy(x, labels)
    xg, lg = cp.asarray(x), cp.asarray(labels)
    first = [cp.asnumpy(a) for a in raw_cross_entropy(xg, lg)]
    again = [cp.asnumpy(a) for a in raw_cross_entropy(xg, lg)]
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes(), "the GPU must give the same bits on every run"
    row_loss_g, dx_g, stats_g = first
    assert stats_g[0] == fixed_order_sum(row_loss_g)
    assert tuple(stats_g[1:]) == tuple(stats[1:])
    assert stats_g[0] == pytest.approx(stats[0], rel=1e-5)
    np.testing.assert_allclose(row_loss_g, row_loss, rtol=1e-5, atol=1e-5)
    assert_dlogits_close(dx_g, dx, labels)
    np.testing.assert_allclose(cp.asnumpy(ops.softmax(xg)), ops.softmax(x), rtol=1e-5, atol=1e-9)
    assert stream_counter(xg) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("k", [1000, 32])
def test_gpu_misaligned_rows_take_the_float_path(cp, rng, k):
    """K % 4 == 0 but a pointer 4 bytes past 16-byte alignment: the kernel must not read it as float4."""
    n = 7
    x = (rng.standard_normal((n, k)) * 5).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    row_loss, dx, stats = raw_cross_entropy(x, labels)
    buf = cp.empty(n * k + 1, cp.float32)
    xg = buf[1:].reshape(n, k)
    xg[...] = cp.asarray(x)
    dx_buf = cp.full(n * k + 1, cp.nan, cp.float32)
    dx_g = dx_buf[1:].reshape(n, k)
    row_loss_g, stats_g = cp.empty(n, cp.float32), cp.empty(3, cp.float64)
    with B.launch(xg) as l:
        counter = B.last_block_counter(l)
    for x_in, dx_out in [(xg, cp.empty_like(xg)), (cp.asarray(x), dx_g), (xg, dx_g)]:
        _C.softmax_cross_entropy(x_in, cp.asarray(labels), row_loss_g, dx_out, stats_g, counter,
                                 cp.cuda.get_current_stream().ptr)
        np.testing.assert_allclose(cp.asnumpy(dx_out), dx, rtol=1e-5, atol=1e-9)
        assert float(stats_g[0]) == fixed_order_sum(cp.asnumpy(row_loss_g))
    p_buf = cp.empty(n * k + 1, cp.float32)
    _C.softmax_forward(xg, p_buf[1:].reshape(n, k), cp.cuda.get_current_stream().ptr)
    np.testing.assert_allclose(cp.asnumpy(p_buf[1:]).reshape(n, k), ops.softmax(x), rtol=1e-5, atol=1e-9)
    assert stream_counter(xg) == 0


@pytest.mark.gpu
def test_gpu_bad_labels(cp):
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        ops.softmax_cross_entropy(cp.zeros((2, 3), cp.float32), cp.asarray([0, 3]))
    with pytest.raises(ValueError, match="label -1 is out of range for 3 classes"):
        ops.softmax_cross_entropy(cp.zeros((300, 3), cp.float32), cp.asarray([0, -1] * 150, dtype=cp.int32))
    with pytest.raises(TypeError):
        ops.softmax_cross_entropy(cp.zeros((2, 3), cp.float32), np.array([0, 1]))


@pytest.mark.gpu
def test_gpu_call_after_bad_labels_is_right(cp, rng):
    """A call with bad labels still completes, so it leaves the stream's counter at 0 for the next one."""
    x = (rng.standard_normal((128, 1000)) * 5).astype(np.float32)
    labels = rng.integers(0, 1000, 128)
    bad = labels.copy()
    bad[77] = 1000
    xg = cp.asarray(x)
    with pytest.raises(ValueError, match="label 1000 is out of range"):
        ops.softmax_cross_entropy(xg, cp.asarray(bad))
    assert stream_counter(xg) == 0
    loss, dx = ops.softmax_cross_entropy(xg, cp.asarray(labels))
    assert loss == pytest.approx(ops.softmax_cross_entropy(x, labels)[0], rel=1e-5)
    np.testing.assert_allclose(cp.asnumpy(dx), ops.softmax_cross_entropy(x, labels)[1], rtol=1e-5, atol=1e-9)


@pytest.mark.gpu
def test_gpu_counter_is_validated(cp):
    x, labels = cp.zeros((4, 5), cp.float32), cp.zeros(4, cp.int32)
    out = cp.empty(4, cp.float32), cp.empty_like(x), cp.empty(3, cp.float64)
    with pytest.raises(TypeError, match="'counter'"):
        _C.softmax_cross_entropy(x, labels, *out, np.zeros(1, np.uint32))  # a host counter for a GPU call
    with pytest.raises(TypeError, match="'counter' must have dtype uint32"):
        _C.softmax_cross_entropy(x, labels, *out, cp.zeros(1, cp.int64))


@pytest.mark.gpu
def test_gpu_two_streams_each_have_a_counter(cp, rng):
    """Calls on two streams may overlap: each stream has its own counter, and both give the one-stream results."""
    shapes = [(128, 1000), (4096 + 5, 10)]
    cases = []
    for n, k in shapes:
        x = (rng.standard_normal((n, k)) * 5).astype(np.float32)
        labels = rng.integers(0, k, n).astype(np.int32)
        xg, lg = cp.asarray(x), cp.asarray(labels)
        cases.append((xg, lg, [cp.asnumpy(a) for a in raw_cross_entropy(xg, lg)]))
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
    counters = []
    for s in streams:
        with s:
            with B.launch(cases[0][0]) as l:
                counters.append(B.last_block_counter(l))
    assert counters[0].data.ptr != counters[1].data.ptr
    cp.cuda.get_current_stream().synchronize()
    outs = {}
    for rep in range(20):  # back to back on both streams, no sync between: the kernels overlap
        for i, s in enumerate(streams):
            with s:
                xg, lg, _ = cases[i]
                outs[i, rep] = raw_cross_entropy(xg, lg)
    for s in streams:
        s.synchronize()
    for (i, rep), got in outs.items():
        for a, b in zip(got, cases[i][2]):
            assert cp.asnumpy(a).tobytes() == b.tobytes()
    for s in streams:
        with s:
            assert stream_counter(cases[0][0]) == 0


def test_queued_loss_reads_what_softmax_cross_entropy_returns(rng):
    logits = rng.standard_normal((5, 7)).astype(np.float32)
    labels = np.array([0, 6, 3, 3, 1])
    read_loss, d = ops.softmax_cross_entropy_queued(logits, labels)
    loss, d_plain = ops.softmax_cross_entropy(logits, labels)
    assert read_loss() == loss
    np.testing.assert_array_equal(d, d_plain)
    read_bad, _ = ops.softmax_cross_entropy_queued(logits, np.array([0, 7, 3, 3, 1]))
    with pytest.raises(ValueError, match=r"label 7 is out of range for 7 classes"):
        read_bad()  # said when the loss is read, as softmax_cross_entropy says it


@pytest.mark.gpu
def test_gpu_queued_loss_is_read_while_later_work_is_queued(cp, rng):
    logits = rng.standard_normal((64, 1000)).astype(np.float32) * 5
    labels = rng.integers(0, 1000, 64)
    want, _ = ops.softmax_cross_entropy(cp.asarray(logits), cp.asarray(labels))  # the GPU's own, read at once
    read_loss, d = ops.softmax_cross_entropy_queued(cp.asarray(logits), cp.asarray(labels))
    big = cp.ones((4096, 4096), cp.float32)
    for _ in range(5):  # work queued after the loss: its copy must not read a later value, nor wait for it
        big = big @ big * (1 / 4096)
    assert read_loss() == want
    assert not cp.cuda.get_current_stream().done  # ~10 ms of products still running: the read did not wait for them
    read_bad, _ = ops.softmax_cross_entropy_queued(cp.asarray(logits), cp.asarray(np.r_[labels[:-1], 1000]))
    with pytest.raises(ValueError, match="label 1000 is out of range"):
        read_bad()


def test_bindings_refuse_labels_of_another_length_than_the_batch(rng):
    # ops checks the labels' length first; a direct _C call with too few labels read past their end.
    x = rng.standard_normal((4, 5)).astype(np.float32)
    out = np.empty(4, np.float32), np.empty_like(x), np.zeros(3, np.float64), np.zeros(1, np.uint32)
    for labels in (np.zeros(3, np.int64), np.zeros(5, np.int32), np.zeros(0, np.int64)):
        with pytest.raises(ValueError, match=r"argument 'labels' must have shape \(4,\), got \(%d,\)" % labels.size):
            _C.softmax_cross_entropy(x, labels, *out)


def test_bindings_refuse_a_counter_that_shares_memory_with_the_logits(rng):
    # The GPU kernel counts its finished blocks in `counter`: inside the logits (or an output) it would change the
    # numbers being read. Refused on both backends alike.
    x = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.zeros(4, np.int32)
    loss, dx, stats = np.empty(4, np.float32), np.empty_like(x), np.zeros(3, np.float64)
    with pytest.raises(ValueError, match="argument 'counter' must not share memory with 'logits'"):
        _C.softmax_cross_entropy(x, labels, loss, dx, stats, x.view(np.uint32).reshape(-1)[:1])
    with pytest.raises(ValueError, match="arguments 'row_loss' and 'counter' must not share memory"):
        _C.softmax_cross_entropy(x, labels, loss, dx, stats, loss.view(np.uint32)[3:])
