"""softmax and softmax_cross_entropy against float64 numpy, finite differences, bad labels, and the GPU."""
import numpy as np
import pytest

from pyalexnet import ops

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


def test_nan_logits_give_nan_rows():
    x = np.zeros((2, 3), np.float32)
    x[0, 1] = np.nan
    p = ops.softmax(x)
    assert np.all(np.isnan(p[0])) and np.all(np.isfinite(p[1]))


def test_one_call_gives_row_losses_gradient_and_stats(rng):
    from pyalexnet._backend import _C

    x = (rng.standard_normal((300, 7)) * 3).astype(np.float32)
    labels = rng.integers(0, 7, 300).astype(np.int32)
    labels[5], labels[17] = 0, 6
    row_loss, dx, stats = np.empty(300, np.float32), np.empty_like(x), np.empty(3, np.float64)
    _C.softmax_cross_entropy(x, labels, row_loss, dx, stats)
    # (sum of the row losses in the backends' fixed order, smallest label, largest label)
    assert stats[0] == pytest.approx(float(row_loss.astype(np.float64).sum()), rel=1e-12)
    assert tuple(stats[1:]) == (0.0, 6.0)
    with pytest.raises(TypeError, match="'stats'"):
        _C.softmax_cross_entropy(x, labels, row_loss, dx, np.empty(3, np.float32))


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[0, 3], [-1, 0], [0, 100]])
def test_out_of_range_labels(labels):
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array(labels))


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
def test_gpu_bad_labels(cp):
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        ops.softmax_cross_entropy(cp.zeros((2, 3), cp.float32), cp.asarray([0, 3]))
    with pytest.raises(ValueError, match="label -1 is out of range for 3 classes"):
        ops.softmax_cross_entropy(cp.zeros((300, 3), cp.float32), cp.asarray([0, -1] * 150, dtype=cp.int32))
    with pytest.raises(TypeError):
        ops.softmax_cross_entropy(cp.zeros((2, 3), cp.float32), np.array([0, 1]))
