"""linear and linear_backward against float64 numpy, finite differences, bad shapes, and the GPU."""
import numpy as np
import pytest

from pyalexnet import ops

from numerics import numeric_grad


@pytest.mark.parametrize("n,fin,fout", [(1, 1, 1), (4, 7, 3), (8, 256, 96)])
def test_linear_matches_numpy(rng, n, fin, fout):
    x = rng.standard_normal((n, fin)).astype(np.float32)
    w = rng.standard_normal((fout, fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    y = ops.linear(x, w, b)
    assert y.dtype == np.float32 and y.shape == (n, fout)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.linear(x, w), ref - b, rtol=1e-5, atol=1e-5)


def test_linear_backward_matches_numpy_and_finite_differences(rng):
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4)
    dy = rng.standard_normal((3, 4))
    dx, dw, db = ops.linear_backward(dy, x, w)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    np.testing.assert_allclose(dx, dy @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: v @ w.T + b, x, dy), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: x @ v.T + b, w, dy), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, numeric_grad(lambda v: x @ w.T + v, b, dy), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,fin,fout", [(4, 3, 4), (2, 5, 2)])
def test_bias_gradient_sums_over_the_batch_when_dy_is_square(rng, n, fin, fout):
    # With as many images as outputs, dy is square and a bias gradient summed over the wrong axis (the outputs,
    # not the batch) has the right shape: only the values can tell.
    x = rng.standard_normal((n, fin))
    w = rng.standard_normal((fout, fin))
    b = rng.standard_normal(fout)
    dy = rng.standard_normal((n, fout))
    assert not np.allclose(dy.sum(0), dy.sum(1), rtol=1e-3)
    dx, dw, db = ops.linear_backward(dy, x, w)
    assert db.shape == (fout,)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(lambda v: x @ w.T + v, b, dy), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-5, atol=1e-6)


def test_image_shaped_input_is_flattened(rng):
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)  # like conv5's (N, 256, 6, 6) into fc6
    w = rng.standard_normal((5, 36)).astype(np.float32)
    np.testing.assert_allclose(ops.linear(x, w), x.reshape(2, 36) @ w.T, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((2, 5)).astype(np.float32)
    dx, dw, _ = ops.linear_backward(dy, x, w)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dw, dy.T @ x.reshape(2, 36), rtol=1e-5, atol=1e-5)


def test_bad_shapes():
    x, w = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="'x'.*3 features.*'w'.*expects 5"):
        ops.linear(x, np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="'b' must have shape \\(4,\\)"):
        ops.linear(x, w, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="'w' must be 2-dimensional"):
        ops.linear(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="'x'"):
        ops.linear(np.ones(3, np.float32), w)
    with pytest.raises(ValueError, match="'dy' must have shape \\(2, 4\\)"):
        ops.linear_backward(np.ones((2, 5), np.float32), x, w)
    with pytest.raises(TypeError, match="'x'"):
        ops.linear(np.ones((2, 3), np.int64), w)


def test_dw_out_receives_the_same_weight_gradient(rng):
    x = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    w = rng.standard_normal((5, 18)).astype(np.float32)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    want = ops.linear_backward(dy, x, w)
    out = np.full(w.shape, np.nan, np.float32)  # whatever it held is overwritten, not added to
    got = ops.linear_backward(dy, x, w, dw_out=out)
    assert got[1] is out
    for g, c in zip(got, want):
        assert g.tobytes() == c.tobytes()


def test_one_image_gets_the_outer_product_exactly(rng):
    # One image takes a broadcast multiply (numpy's matmul with an inner size of 1 was 6x slower for fc6); each
    # dw element is one float32 product, so the result is exact to the bit, with dw_out or without.
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = rng.standard_normal((5, 18)).astype(np.float32)
    dy = rng.standard_normal((1, 5)).astype(np.float32)
    want = (dy.T.astype(np.float64) * x.reshape(1, -1).astype(np.float64)).astype(np.float32)
    out = np.full(w.shape, np.nan, np.float32)
    for dx, dw, db in (ops.linear_backward(dy, x, w), ops.linear_backward(dy, x, w, dw_out=out)):
        assert dw.shape == w.shape and dw.dtype == np.float32 and dw.tobytes() == want.tobytes()
        np.testing.assert_allclose(dx, (dy.astype(np.float64) @ w).reshape(x.shape), rtol=1e-5, atol=1e-6)
        assert db.tobytes() == dy[0].tobytes()
    assert ops.linear_backward(dy, x, w, dw_out=out)[1] is out


def test_bad_dw_out_is_a_clear_error(rng):
    x, w, dy = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"'dw_out' must be a C-contiguous float32 array of w's shape \(4, 3\)"):
        ops.linear_backward(dy, x, w, dw_out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="'dw_out'.*float64"):
        ops.linear_backward(dy, x, w, dw_out=np.empty((4, 3), np.float64))
    with pytest.raises(ValueError, match="not C-contiguous"):
        ops.linear_backward(dy, x, w, dw_out=np.empty((3, 4), np.float32).T)
    with pytest.raises(TypeError, match="'dw_out' must be a numpy.ndarray"):
        ops.linear_backward(dy, x, w, dw_out=[[0.0] * 3] * 4)
    with pytest.raises(ValueError, match="must not share memory"):
        ops.linear_backward(dy, x, w, dw_out=w)
    read_only = np.empty((4, 3), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="'dw_out' is written to but is read-only"):  # numpy's named no argument
        ops.linear_backward(dy, x, w, dw_out=read_only)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix, on purpose
def test_numpy_subclasses_give_plain_arrays_of_the_right_shapes(rng, tmp_path):
    # np.matrix kept its class through numpy's products and sums: db came back (1, out), not (out,).
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (2, 4), (3, 2)))
    dx, dw, db = ops.linear_backward(np.matrix(dy), np.matrix(x), np.matrix(w))
    assert [type(a) for a in (dx, dw, db)] == [np.ndarray] * 3
    assert (dx.shape, dw.shape, db.shape) == ((3, 4), (2, 4), (2,))
    np.testing.assert_allclose(db, dy.sum(axis=0), rtol=1e-6)
    y = ops.linear(np.matrix(x), np.matrix(w), b=np.ones(2))
    assert type(y) is np.ndarray and y.shape == (3, 2)
    assert type(ops.relu(np.matrix(x))) is np.ndarray


def test_dw_out_may_be_a_plain_array_for_a_memmapped_w(rng, tmp_path):
    # The check compared exact types: a memmap w (weights read from a file) refused a plain ndarray dw_out.
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (2, 4), (3, 2)))
    mw = np.memmap(tmp_path / "w", np.float32, "w+", shape=w.shape)
    mw[...] = w
    out = np.empty(w.shape, np.float32)
    got = ops.linear_backward(dy, x, mw, dw_out=out)
    assert got[1] is out
    assert out.tobytes() == ops.linear_backward(dy, x, w)[1].tobytes()
    # and a memmap dw_out that overlaps w is still seen to
    with pytest.raises(ValueError, match="must not share memory"):
        ops.linear_backward(dy, x, w, dw_out=w.view(np.memmap))


@pytest.mark.gpu
def test_gpu_linear_matches_cpu(cp, rng):
    x = rng.standard_normal((16, 9216)).astype(np.float32)
    w = (rng.standard_normal((256, 9216)) * 0.01).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    dy = rng.standard_normal((16, 256)).astype(np.float32)
    y = ops.linear(cp.asarray(x), cp.asarray(w), cp.asarray(b))
    assert isinstance(y, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(y), ops.linear(x, w, b), rtol=1e-4, atol=1e-4)
    for g, c in zip(ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w)), ops.linear_backward(dy, x, w)):
        np.testing.assert_allclose(cp.asnumpy(g), c, rtol=1e-4, atol=1e-3)
    for g, c in zip(ops.linear_backward(cp.asarray(dy[:1]), cp.asarray(x[:1]), cp.asarray(w)),
                    ops.linear_backward(dy[:1], x[:1], w)):  # one image: the outer product
        np.testing.assert_allclose(cp.asnumpy(g), c, rtol=1e-4, atol=1e-3)
    out = cp.full(w.shape, cp.nan, cp.float32)
    _, dw, _ = ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), dw_out=out)
    assert dw is out
    np.testing.assert_allclose(cp.asnumpy(dw), ops.linear_backward(dy, x, w)[1], rtol=1e-4, atol=1e-3)
    with pytest.raises(TypeError, match="'dw_out' must be a cupy.ndarray"):
        ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), dw_out=np.empty(w.shape, np.float32))
