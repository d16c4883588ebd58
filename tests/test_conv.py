"""conv2d and conv2d_backward against direct float64 sums in numpy, finite differences, and (GPU) the CPU backend."""
import os

import numpy as np
import pytest

from pyalexnet import _C, ops

from numerics import numeric_grad


# --- the reference: direct sums over filter taps, float64, no im2col -------------------------------------


def _taps(x_padded, r, s, stride, P, Q):
    """x_padded[:, :, p*stride + r, q*stride + s] for all (p, q)."""
    return x_padded[:, :, r:r + stride * (P - 1) + 1:stride, s:s + stride * (Q - 1) + 1:stride]


def ref_conv2d(x, w, b, stride, padding, groups):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = (H + 2 * padding - R) // stride + 1, (W + 2 * padding - S) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((N, K, P, Q))
    Kg = K // groups
    for g in range(groups):
        ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
        for r in range(R):
            for s in range(S):
                y[:, ks] += np.einsum("ncpq,kc->nkpq", _taps(xp[:, cs], r, s, stride, P, Q), w[ks, :, r, s])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def ref_conv2d_backward(dy, x, w, stride, padding, groups):
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    Kg = K // groups
    for g in range(groups):
        ks, cs = slice(g * Kg, (g + 1) * Kg), slice(g * Cg, (g + 1) * Cg)
        for r in range(R):
            for s in range(S):
                _taps(dxp[:, cs], r, s, stride, P, Q)[...] += np.einsum("nkpq,kc->ncpq", dy[:, ks], w[ks, :, r, s])
                dw[ks, :, r, s] = np.einsum("nkpq,ncpq->kc", dy[:, ks], _taps(xp[:, cs], r, s, stride, P, Q))
    dx = dxp[:, :, padding:padding + H, padding:padding + W]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def assert_close(actual, expected, reduction):
    # float32 sums of `reduction` products of N(0,1) values: error grows like sqrt(reduction).
    tol = 2e-6 * np.sqrt(reduction) * max(1.0, float(np.abs(expected).max()) ** 0.5)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=tol)


# (N, C, H, W, K, R, S, stride, padding, groups): every parameter, odd sizes, channels not multiples of 4.
CASES = [
    (1, 3, 7, 7, 4, 3, 3, 1, 1, 1),
    (2, 6, 11, 10, 8, 5, 3, 2, 2, 2),     # 5x3 filter, stride 2, groups 2
    (1, 4, 13, 13, 4, 11, 11, 4, 2, 4),   # 11x11 stride 4 (conv1-like), groups 4, one channel per group
    (2, 5, 6, 6, 7, 1, 1, 1, 0, 1),       # 1x1
    (3, 8, 9, 9, 12, 3, 3, 3, 3, 4),      # stride 3, padding 3
    (2, 4, 10, 9, 6, 3, 5, 2, 0, 2),      # 3x5, no padding
    (1, 7, 8, 8, 5, 5, 3, 1, 3, 1),
    (2, 2, 5, 5, 3, 5, 5, 1, 0, 1),       # filter as large as the input: 1x1 output
    (1, 3, 4, 4, 2, 5, 5, 1, 1, 1),       # filter larger than the input, fits the padding
    (2, 3, 27, 27, 5, 11, 11, 4, 2, 1),
    (1, 9, 12, 11, 6, 3, 3, 2, 1, 3),
    (4, 6, 15, 15, 10, 3, 3, 1, 1, 2),
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 1),
    (2, 3, 6, 5, 2, 2, 2, 4, 1, 1),       # stride larger than the filter: skipped pixels get zero gradient
    # Rows that line up (stride 1, Q == W): the CPU moves each tap's rows as one flat run.
    (2, 3, 9, 8, 4, 5, 3, 1, 1, 1),       # 5x3, padding 1: Q == W but P == H - 2
    (4, 8, 12, 12, 16, 5, 5, 1, 2, 2),    # "same" 5x5, enough work for one image per thread
    (1, 2, 3, 2, 3, 5, 5, 1, 2, 1),       # wider than the input: some taps see only padding
]


def case_arrays(rng, case, bias=True):
    N, C, H, W, K, R, S, stride, padding, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C // groups, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    return x, w, b, dict(stride=stride, padding=padding, groups=groups)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_forward_matches_direct_sums(rng, case):
    x, w, b, hyper = case_arrays(rng, case)
    y = ops.conv2d(x, w, b, **hyper)
    expected = ref_conv2d(x, w, b, **hyper)
    assert y.dtype == np.float32 and y.shape == expected.shape
    assert_close(y, expected, w[0].size)
    assert_close(ops.conv2d(x, w, **hyper), expected - b[None, :, None, None], w[0].size)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_backward_matches_direct_sums(rng, case):
    x, w, _, hyper = case_arrays(rng, case, bias=False)
    y_shape = ref_conv2d(x[:, :, :, :], w, None, **hyper).shape
    dy = rng.standard_normal(y_shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    dx_ref, dw_ref, db_ref = ref_conv2d_backward(dy, x, w, **hyper)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (w.shape[0],)
    assert all(a.dtype == np.float32 for a in (dx, dw, db))
    K, _, R, S = w.shape
    assert_close(dx, dx_ref, (K // hyper["groups"]) * R * S)
    assert_close(dw, dw_ref, dy[:, 0].size)
    assert_close(db, db_ref, dy[:, 0].size)


def assert_passes_match_direct_sums(rng, case):
    """The forward (with a bias) and all three gradients of `case` against the direct sums."""
    x, w, b, hyper = case_arrays(rng, case)
    y = ops.conv2d(x, w, b, **hyper)
    assert_close(y, ref_conv2d(x, w, b, **hyper), w[0].size)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    dx_ref, dw_ref, db_ref = ref_conv2d_backward(dy, x, w, **hyper)
    assert_close(dx, dx_ref, w.shape[0] // hyper["groups"] * w[0, 0].size)
    assert_close(dw, dw_ref, dy[:, 0].size)
    assert_close(db, db_ref, dy[:, 0].size)


def test_large_shape_spans_several_workspace_chunks_and_gemm_blocks(rng):
    # 64 channels of 56x56 with 3x3 filters: the CPU filter gradient deals five images to four partial
    # sums (one sums two), the batched forward path takes one image per chunk, and the GEMMs cross every
    # cache-block edge (96 rows, 256 columns, 256-deep slices).
    assert_passes_match_direct_sums(rng, (5, 64, 56, 56, 100, 3, 3, 1, 1, 1))


# The CPU backend cuts each image's im2col into blocks that stay in cache (kernels/conv_cpu.cpp: 256 taps x
# 288 output positions in the forward, 288 taps x 256 positions in the filter gradient). These shapes have
# 300 taps per group and 575 positions, so blocks end partway along both, and inside an output row; stride
# 1 with Q == W (taps moved as flat runs) and stride 2 (row by row).
BLOCK_EDGE_CASES = [
    (4, 24, 25, 23, 16, 5, 5, 1, 2, 2),
    (4, 24, 51, 47, 16, 5, 5, 2, 1, 2),
]


@pytest.mark.parametrize("case", BLOCK_EDGE_CASES, ids=lambda c: "x".join(map(str, c)))
def test_cpu_im2col_blocks_that_end_anywhere(rng, case):
    x, w, b, hyper = case_arrays(rng, case)
    y = ops.conv2d(x, w, b, **hyper)
    assert_close(y, ref_conv2d(x, w, b, **hyper), w[0].size)
    for n in range(len(x)):  # a lone image takes the unblocked path: the blocks must not change a bit
        assert ops.conv2d(x[n:n + 1], w, b, **hyper).tobytes() == y[n:n + 1].tobytes()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    dx_ref, dw_ref, db_ref = ref_conv2d_backward(dy, x, w, **hyper)
    assert_close(dx, dx_ref, w.shape[0] // hyper["groups"] * 25)
    assert_close(dw, dw_ref, dy[:, 0].size)
    assert_close(db, db_ref, dy[:, 0].size)


def test_cpu_workspace_is_bounded():
    # AlexNet conv2 at batch 128: im2col for the whole batch would be 1200 x 93312 floats (448 MB).
    # The forward keeps one image's columns per OpenMP thread (16 threads on the GPU machine), so the
    # bound grows with the threads, never with the batch.
    threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    need = _C.conv2d_workspace_size((128, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2, "forward", False)
    assert 0 < need <= (1 << 22) + max(2, threads) * (1200 + 128) * 729
    need = _C.conv2d_workspace_size((128, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2, "backward_filter", False)
    assert 0 < need <= 1 << 23


# --- finite differences (conv is linear in x, w and b, so a large step is exact up to rounding) ----------


FD_CASES = [(2, 4, 5, 5, 4, 3, 3, 2, 1, 2), (1, 3, 6, 4, 2, 3, 2, 1, 2, 1), (1, 2, 7, 7, 3, 5, 5, 3, 1, 1)]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: "x".join(map(str, c)))
def test_gradients_match_finite_differences(rng, case):
    x, w, b, hyper = case_arrays(rng, case)
    dy = rng.standard_normal(ops.conv2d(x, w, b, **hyper).shape)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    eps = 0.5
    num_dx = numeric_grad(lambda t: ops.conv2d(t, w, b, **hyper), x, dy, eps)
    num_dw = numeric_grad(lambda t: ops.conv2d(x, t, b, **hyper), w, dy, eps)
    num_db = numeric_grad(lambda t: ops.conv2d(x, w, t, **hyper), b, dy, eps)
    for analytic, numeric in ((dx, num_dx), (dw, num_dw), (db, num_db)):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-4)


# --- determinism and optional outputs ---------------------------------------------------------------------


def test_cpu_filter_gradient_is_bit_identical_across_runs(rng):
    x, w, _, hyper = case_arrays(rng, (5, 48, 40, 40, 64, 5, 5, 1, 2, 2), bias=False)
    dy = rng.standard_normal(ops.conv2d(x, w, **hyper).shape).astype(np.float32)
    _, dw1, db1 = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    _, dw2, db2 = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    assert dw1.tobytes() == dw2.tobytes()
    assert db1.tobytes() == db2.tobytes()


# Above the per-image path's work threshold. The first runs one image per thread; the others have maps small
# enough that several images share one product (kernels/conv_cpu.cpp, images_per_item): 13 images in items
# of 4, 4, 4 and 1 (7x7, as the small preset's conv3-5); 9 images of 6x6 maps, grouped, stride 2.
BATCH_CASES = [(6, 16, 24, 24, 32, 3, 5, 2, 2, 2), (13, 32, 7, 7, 48, 3, 3, 1, 1, 1), (9, 32, 11, 11, 64, 3, 3, 2, 1, 2)]


@pytest.mark.parametrize("case", BATCH_CASES, ids=lambda c: "x".join(map(str, c)))
def test_batch_gives_the_same_bits_as_single_images(rng, case):
    # With several threads a batch runs one image (or a few small ones) per thread, a lone image as parallel
    # GEMMs over a wider split: the summation order is the same, so the bits must be too.
    x, w, b, hyper = case_arrays(rng, case)
    y = ops.conv2d(x, w, b, **hyper)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, _, _ = ops.conv2d_backward(dy, x, w, **hyper)
    assert_close(y, ref_conv2d(x, w, b, **hyper), w[0].size)
    assert_close(dx, ref_conv2d_backward(dy, x, w, **hyper)[0], w.shape[0] // hyper["groups"] * w[0, 0].size)
    for n in range(len(x)):
        assert ops.conv2d(x[n:n + 1], w, b, **hyper).tobytes() == y[n:n + 1].tobytes()
        assert ops.conv2d_backward(dy[n:n + 1], x[n:n + 1], w, **hyper)[0].tobytes() == dx[n:n + 1].tobytes()


# Filter gradients whose dW is over 64K floats go by tiles of taps, each summing every image (conv_cpu.cpp,
# filter_by_tap_tiles): 3 images of 17x17 in two slices of the reduction each, 432 taps per group in tiles of
# 288, 96 or 48 by the thread count; 13 images of 7x7 in items of 5, 5 and 3, 576 taps.
TAP_TILE_CASES = [(3, 96, 17, 17, 160, 3, 3, 1, 1, 2), (13, 64, 7, 7, 128, 3, 3, 1, 1, 1)]


@pytest.mark.parametrize("case", BATCH_CASES[1:] + [(45, 8, 7, 7, 16, 3, 3, 1, 1, 1)] + TAP_TILE_CASES,
                         ids=lambda c: "x".join(map(str, c)))
def test_cpu_filter_gradient_of_several_images_per_product(rng, case):
    # Maps this small go several images to one product in the filter gradient too (images_per_item's
    # twin, filter_images_per_item): 13 images of 7x7 in items of 5, 5 and 3, 576 taps in blocks of 288;
    # 45 images in 9 items, more than the 8 partial sums, so a sum takes two items.
    x, w, _, hyper = case_arrays(rng, case, bias=False)
    dy = rng.standard_normal(ops.conv2d(x, w, **hyper).shape).astype(np.float32)
    _, dw, _ = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    assert_close(dw, ref_conv2d_backward(dy, x, w, **hyper)[1], dy[:, 0].size)
    for n in (1, 4, 6):  # fewer images than one item, and items cut short
        _, dw_n, _ = ops.conv2d_backward(dy[:n], x[:n], w, need_dx=False, **hyper)
        assert_close(dw_n, ref_conv2d_backward(dy[:n], x[:n], w, **hyper)[1], dy[:n, 0].size)


_THREADS_PROBE = """
import hashlib, numpy as np
from pyalexnet import ops
rng = np.random.default_rng(5)
for case in {cases!r}:
    N, C, H, W, K, R, S, stride, pad, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C // groups, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    y = ops.conv2d(x, w, b, stride=stride, padding=pad, groups=groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = ops.conv2d_backward(dy, x, w, stride=stride, padding=pad, groups=groups)
    print(hashlib.sha256(b"".join(a.tobytes() for a in (y, *grads))).hexdigest())
"""


def test_cpu_results_do_not_depend_on_the_thread_count():
    # How the work is cut (images per product, filter-gradient slots, GEMM tiles) may follow the thread
    # count; the order each element is summed in must not.
    import subprocess
    import sys

    cases = BATCH_CASES + TAP_TILE_CASES + [(3, 24, 27, 27, 64, 5, 5, 1, 2, 2), (1, 3, 35, 35, 16, 11, 11, 4, 2, 1)]
    out = {}
    for threads in (1, 2, 3):
        r = subprocess.run([sys.executable, "-c", _THREADS_PROBE.format(cases=cases)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": str(threads)}, timeout=300)
        assert r.returncode == 0, r.stderr
        out[threads] = r.stdout.split()
        assert len(out[threads]) == len(cases)
    assert out[1] == out[2] == out[3]


def test_cpu_passes_stay_inside_their_workspace_at_any_thread_count(tmp_path):
    """tests/cpu_conv/check_workspace.cpp under AddressSanitizer: every pass on an exactly sized workspace at
    1, 2 and 3 threads, on the small preset's shapes and odd batches of small maps, bit-identical across
    thread counts."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    root = Path(__file__).resolve().parent.parent
    exe = tmp_path / "check_workspace"
    build = subprocess.run(["g++", "-std=c++17", "-O1", "-g", "-fopenmp", "-march=native", "-fsanitize=address,undefined",
                            "-fno-sanitize-recover=all", f"-I{root / 'kernels'}", str(root / "tests/cpu_conv/check_workspace.cpp"),
                            str(root / "kernels/conv_cpu.cpp"), str(root / "kernels/gemm_cpu.cpp"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_WAIT_POLICY": "passive", "ASAN_OPTIONS": "detect_leaks=0"})
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout[-4000:] + r.stderr[-4000:]


def test_need_dx_and_need_db_skip_those_outputs(rng):
    x, w, _, hyper = case_arrays(rng, CASES[1], bias=False)
    dy = rng.standard_normal(ops.conv2d(x, w, **hyper).shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    dx2, dw2, db2 = ops.conv2d_backward(dy, x, w, need_dx=False, need_db=False, **hyper)
    assert dx2 is None and db2 is None
    np.testing.assert_array_equal(dw2, dw)
    dx3, _, db3 = ops.conv2d_backward(dy, x, w, need_dx=True, need_db=False, **hyper)
    np.testing.assert_array_equal(dx3, dx)
    assert db3 is None


def test_need_dw_false_gives_each_gradient_alone(rng):
    x, w, _, hyper = case_arrays(rng, CASES[1], bias=False)
    dy = rng.standard_normal(ops.conv2d(x, w, **hyper).shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    dx1, dw1, db1 = ops.conv2d_backward(dy, x, w, need_dw=False, need_db=False, **hyper)
    assert dw1 is None and db1 is None
    np.testing.assert_array_equal(dx1, dx)
    _, _, db2 = ops.conv2d_backward(dy, x, w, need_dx=False, need_dw=False, **hyper)
    np.testing.assert_array_equal(db2, db)
    assert ops.conv2d_backward(dy, x, w, need_dx=False, need_dw=False, need_db=False, **hyper) == (None, None, None)


@pytest.mark.parametrize("option", ["need_dx", "need_dw", "need_db"])
@pytest.mark.parametrize("bad", ["no", None, 0, "False"])
def test_need_options_are_booleans(rng, option, bad):
    # A string is truthy: need_dx="no" computed dx; None and 0 skipped it where a caller may have meant the default.
    x, w, _, hyper = case_arrays(rng, CASES[1], bias=False)
    dy = np.ones(ops.conv2d(x, w, **hyper).shape, np.float32)
    with pytest.raises(TypeError, match=f"{option} must be True or False, got {bad!r}"):
        ops.conv2d_backward(dy, x, w, **{option: bad}, **hyper)
    assert ops.conv2d_backward(dy, x, w, **{option: np.bool_(False)}, **hyper)[
        ["need_dx", "need_dw", "need_db"].index(option)] is None


@pytest.mark.parametrize("needs", [(True, False, False), (False, False, True), (False, True, False)])
def test_mismatched_dy_is_refused_whichever_gradients_are_asked_for(rng, needs):
    x, w, _, hyper = case_arrays(rng, CASES[1], bias=False)
    shape = list(ops.conv2d(x, w, **hyper).shape)
    shape[-1] += 1
    dy = np.ones(shape, np.float32)
    need_dx, need_dw, need_db = needs
    with pytest.raises(ValueError, match="'dy' must have shape"):
        ops.conv2d_backward(dy, x, w, need_dx=need_dx, need_dw=need_dw, need_db=need_db, **hyper)


def test_empty_batch(rng):
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = ops.conv2d(x, w, np.ones(4, np.float32), padding=1)
    assert y.shape == (0, 4, 8, 8)
    dx, dw, db = ops.conv2d_backward(y, x, w, padding=1)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


def test_float64_and_noncontiguous_inputs_are_converted(rng):
    x, w, b, hyper = case_arrays(rng, CASES[0])
    x_t = np.asfortranarray(x.astype(np.float64))
    np.testing.assert_array_equal(ops.conv2d(x_t, w, b, **hyper), ops.conv2d(x, w, b, **hyper))


# --- bad input ----------------------------------------------------------------------------------------------


def _x(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 4, 8, 8), (2, 3, 3, 3), {}, "channel mismatch"),
    ((1, 4, 8, 8), (2, 4, 3, 3), {"groups": 2}, "channel mismatch"),
    ((1, 5, 8, 8), (4, 2, 3, 3), {"groups": 2}, "does not divide the 5 input channels"),
    ((1, 4, 8, 8), (3, 2, 3, 3), {"groups": 2}, "does not divide the 3 filters"),
    ((1, 3, 4, 4), (2, 3, 7, 7), {"padding": 1}, "larger than the padded input"),
    ((1, 3, 8, 4), (2, 3, 3, 7), {}, "larger than the padded input"),
    ((3, 8, 8), (2, 3, 3, 3), {}, "x must be 4-dimensional"),
    ((1, 3, 8, 8), (2, 3, 3), {}, "w must be 4-dimensional"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": 0}, "stride must be >= 1"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"padding": -1}, "padding must be >= 0"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"groups": 0}, "groups must be >= 1"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": 2**32}, "stride must be < 2"),  # crashed the CUDA data gradient
    ((1, 3, 8, 8), (2, 3, 3, 3), {"padding": 2**31}, "padding must be < 2"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": 2**70}, r"stride must be < 2\^31"),  # was pybind11's quote of x
    ((1, 3, 8, 8), (2, 3, 3, 3), {"groups": -2**64}, "groups must be >= 1"),
    # The padded plane's size wrapped in int64 and passed the 32-bit guard.
    ((1, 3, 8, 8), (2, 3, 3, 3), {"padding": 2**31 - 1, "stride": 2**31 - 1}, r"2\^31 - 1024 or more elements"),
    ((1, 3, 8, 8), (2, 3, 0, 3), {}, "at least one"),
])
def test_bad_shapes_and_hyperparameters_raise(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.conv2d(_x(*x_shape), _x(*w_shape), **kwargs)
    dy = _x(1, 2, 6, 6)
    with pytest.raises(ValueError, match=match):
        ops.conv2d_backward(dy, _x(*x_shape), _x(*w_shape), **kwargs)


def test_mismatched_dy_raises():
    x, w = _x(2, 3, 8, 8), _x(4, 3, 3, 3)
    for dy in (_x(2, 4, 7, 7), _x(2, 5, 6, 6), _x(1, 4, 6, 6), _x(4, 6, 6)):
        with pytest.raises(ValueError, match="dy"):
            ops.conv2d_backward(dy, x, w)


def test_bad_bias_dtype_and_hyperparameter_types_raise():
    x, w = _x(1, 3, 8, 8), _x(4, 3, 3, 3)
    with pytest.raises(ValueError, match="'b'"):
        ops.conv2d(x, w, _x(3))
    with pytest.raises(TypeError, match="'x'"):
        ops.conv2d(np.zeros((1, 3, 8, 8), np.int32), w)
    with pytest.raises(TypeError, match="stride"):
        ops.conv2d(x, w, stride=1.5)
    with pytest.raises(TypeError, match="padding"):
        ops.conv2d(x, w, padding=True)
    with pytest.raises(TypeError, match="stride"):
        ops.conv2d(x, w, stride=np.array(1.0))
    # 0-d integer arrays are integers, as 0-d arrays are real numbers for alpha or lr
    np.testing.assert_array_equal(ops.conv2d(x, w, stride=np.array(2), padding=np.array(1, np.uint8)),
                                  ops.conv2d(x, w, stride=2, padding=1))


def test_low_level_launchers_validate_outputs_and_workspace():
    x, w = _x(1, 3, 8, 8), _x(4, 3, 3, 3)
    need = _C.conv2d_workspace_size(x.shape, w.shape, 1, 0, 1, "forward", False)
    with pytest.raises(ValueError, match="workspace"):
        _C.conv2d_forward(x, w, None, _x(1, 4, 6, 6), _x(need - 1), 1, 0, 1)
    with pytest.raises(ValueError, match="'y'"):
        _C.conv2d_forward(x, w, None, _x(1, 4, 6, 5), _x(need), 1, 0, 1)
    with pytest.raises(ValueError, match="'dy'"):
        _C.conv2d_backward_data(_x(1, 4, 5, 6), w, _x(1, 3, 8, 8), _x(need), 1, 0, 1)
    with pytest.raises(ValueError, match="'db'"):
        _C.conv2d_backward_bias(_x(1, 4, 6, 6), _x(3), _x(1))
    with pytest.raises(ValueError, match="pass must be"):
        _C.conv2d_workspace_size(x.shape, w.shape, 1, 0, 1, "sideways", False)


def test_low_level_filter_gradient_refuses_a_dy_of_another_shape():
    # ops checks dy first; conv2d_backward_filter itself must too (a dy with fewer images or maps was read past
    # its end, one with more gave a filter gradient of the leading part, both without an error).
    x, dw = _x(2, 3, 8, 8), _x(4, 3, 3, 3)
    ws = _x(max(1, _C.conv2d_workspace_size(x.shape, dw.shape, 1, 0, 1, "backward_filter", False)))
    for shape in ((1, 4, 6, 6), (2, 5, 6, 6), (2, 4, 6, 5), (3, 4, 6, 6)):
        with pytest.raises(ValueError, match=r"argument 'dy' must have shape \(2, 4, 6, 6\)"):
            _C.conv2d_backward_filter(_x(*shape), x, dw, ws, 1, 0, 1)
    _C.conv2d_backward_filter(_x(2, 4, 6, 6), x, dw, ws, 1, 0, 1)


# --- algorithm= ("auto" | "direct" | "winograd" | "fft"): validated on both backends, ignored by the CPU one ---


@pytest.mark.parametrize("bad", ["Winograd", "FFT", "", "gemm"])
def test_unknown_algorithm_is_refused(bad):
    x, w = _x(1, 3, 8, 8), _x(4, 3, 3, 3)
    with pytest.raises(ValueError, match="algorithm must be 'auto', 'direct', 'winograd' or 'fft'"):
        ops.conv2d(x, w, padding=1, algorithm=bad)
    with pytest.raises(ValueError, match="algorithm must be"):
        ops.conv2d_backward(_x(1, 4, 8, 8), x, w, padding=1, algorithm=bad)
    with pytest.raises(ValueError, match="algorithm must be"):
        _C.conv2d_workspace_size(x.shape, w.shape, 1, 1, 1, "forward", False, algorithm=bad)


def test_algorithm_must_be_a_string():
    x, w = _x(1, 3, 8, 8), _x(4, 3, 3, 3)
    for bad in (None, 1, b"winograd"):
        with pytest.raises(TypeError, match="algorithm"):
            ops.conv2d(x, w, algorithm=bad)
        with pytest.raises(TypeError, match="algorithm"):
            ops.conv2d_backward(_x(1, 4, 6, 6), x, w, algorithm=bad)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 3, 8, 8), (4, 3, 5, 5), {"padding": 2}, "needs 3x3 filters"),
    ((1, 3, 8, 8), (4, 3, 3, 1), {"padding": 1}, "needs 3x3 filters"),
    ((1, 3, 9, 9), (4, 3, 3, 3), {"stride": 2}, "needs stride 1"),
    ((1, 8192, 3, 3), (8192, 1, 3, 3), {"groups": 8192}, "at most 4095 groups"),
])
def test_winograd_is_refused_for_shapes_it_cannot_do(x_shape, w_shape, kwargs, match):
    # The same ValueError on the CPU backend as on the GPU one, though the CPU ignores the algorithm.
    x, w = _x(*x_shape), _x(*w_shape)
    y = ops.conv2d(x, w, algorithm="direct", **kwargs)  # the shape itself is fine
    with pytest.raises(ValueError, match=match):
        ops.conv2d(x, w, algorithm="winograd", **kwargs)
    with pytest.raises(ValueError, match=match):
        ops.conv2d_backward(y, x, w, algorithm="winograd", **kwargs)
    with pytest.raises(ValueError, match=match):
        _C.conv2d_workspace_size(x_shape, w_shape, kwargs.get("stride", 1), kwargs.get("padding", 0),
                                 kwargs.get("groups", 1), "forward", False, algorithm="winograd")


def test_cpu_backend_ignores_the_algorithm(rng):
    x, w, b, hyper = case_arrays(rng, (2, 6, 9, 8, 4, 3, 3, 1, 1, 2))
    y = ops.conv2d(x, w, b, **hyper)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = ops.conv2d_backward(dy, x, w, **hyper)
    for algorithm in ("auto", "direct", "winograd", "fft"):
        assert ops.conv2d(x, w, b, algorithm=algorithm, **hyper).tobytes() == y.tobytes()
        for a, g in zip(ops.conv2d_backward(dy, x, w, algorithm=algorithm, **hyper), grads):
            assert a.tobytes() == g.tobytes()
        for p in ("forward", "backward_data", "backward_filter", "backward_bias"):
            assert (_C.conv2d_workspace_size(x.shape, w.shape, 1, 1, 2, p, False, algorithm=algorithm)
                    == _C.conv2d_workspace_size(x.shape, w.shape, 1, 1, 2, p, False))


# --- algorithm="fft": the filter gradient by FFTs (kernels/conv_fft.h) ---------------------------------------
# The numpy prototype below is the reference of the CUDA path's conventions: transform size, bin order, layouts
# Xhat[g][bin][n][c] / DYhat[g][bin][n][k] / DW[bin][K][Cg], conj(DYhat) * Xhat, two real rows per complex
# FFT, and the partial inverse at lags (r - pad, s - pad) mod L over the half spectrum.


def fft_transform_size(H, W, padding):
    return 16 if max(H, W) + 2 * padding <= 16 else 32


def fft_half_spectra(planes, L):
    """planes (M, rows, cols) real, at the origin of an L x L grid -> (M, L * (L//2 + 1)) bins u*(L//2+1) + v:
    rows two at a time as one complex FFT (z = a + ib), split by Hermitian symmetry, then the columns."""
    M, rows, cols = planes.shape
    half = L // 2 + 1
    spec = np.zeros((M, L, half), complex)
    v = np.arange(half)
    for j in range(0, rows, 2):
        z = np.zeros((M, L), complex)
        z[:, :cols] = planes[:, j]
        if j + 1 < rows:
            z[:, :cols] += 1j * planes[:, j + 1]
        Z = np.fft.fft(z, axis=-1)
        Zv, Zm = Z[:, v], np.conj(Z[:, (L - v) % L])
        spec[:, j] = (Zv + Zm) / 2
        if j + 1 < rows:
            spec[:, j + 1] = (Zv - Zm) / 2j
    return np.fft.fft(spec, axis=1).reshape(M, L * half)


def fft_filter_gradient_prototype(dy, x, R, S, padding, groups):
    dy, x = np.asarray(dy, np.float64), np.asarray(x, np.float64)
    N, C, H, W = x.shape
    K = dy.shape[1]
    Cg, Kg = C // groups, K // groups
    L = fft_transform_size(H, W, padding)
    half = L // 2 + 1
    X = fft_half_spectra(x.reshape(N * C, H, W), L).reshape(N, groups, Cg, -1)
    D = fft_half_spectra(dy.reshape(N * K, *dy.shape[2:]), L).reshape(N, groups, Kg, -1)
    xhat, dyhat = X.transpose(1, 3, 0, 2), D.transpose(1, 3, 0, 2)  # [g][bin][n][c], [g][bin][n][k]
    dw_hat = np.einsum("gbnk,gbnc->bgkc", np.conj(dyhat), xhat).reshape(L, half, K, Cg)  # [bin][K][Cg]
    weight = np.full(half, 2.0)
    weight[0] = weight[-1] = 1.0  # v = 0 and L/2 stand for themselves; the others also for their conjugates
    u, v = np.arange(L)[:, None], np.arange(half)[None, :]
    dw = np.zeros((K, Cg, R, S))
    for r in range(R):
        for s in range(S):
            lag_r, lag_s = (r - padding) % L, (s - padding) % L
            e = np.exp(2j * np.pi * (u * lag_r + v * lag_s) / L) * weight / L**2
            dw[:, :, r, s] = np.einsum("uvkc,uv->kc", dw_hat, e).real
    return dw


# (N, C, H, W, K, R, S, padding, groups): stride 1, padded planes up to 32x32
FFT_CASES = [
    (2, 6, 27, 27, 8, 5, 5, 2, 2),    # conv2-like, L = 32
    (1, 3, 7, 9, 4, 3, 5, 1, 1),      # R != S
    (3, 4, 13, 13, 6, 3, 3, 1, 2),    # conv3-like, L = 16
    (2, 5, 6, 5, 3, 7, 7, 3, 1),      # 7x7
    (1, 2, 32, 30, 2, 1, 1, 0, 1),    # 32 rows
    (1, 2, 5, 5, 2, 1, 1, 13, 1),     # padding 13: 31x31 dy
    (2, 4, 9, 9, 4, 2, 3, 3, 4),      # groups 4
    (1, 1, 17, 9, 3, 1, 3, 0, 1),     # L = 32 from the rows alone
]


@pytest.mark.parametrize("case", FFT_CASES, ids=lambda c: "x".join(map(str, c)))
def test_fft_prototype_matches_direct_sums(rng, case):
    N, C, H, W, K, R, S, padding, groups = case
    x = rng.standard_normal((N, C, H, W))
    dy = rng.standard_normal((N, K, H + 2 * padding - R + 1, W + 2 * padding - S + 1))
    w = np.zeros((K, C // groups, R, S))
    _, dw, _ = ref_conv2d_backward(dy, x, w, 1, padding, groups)
    np.testing.assert_allclose(fft_filter_gradient_prototype(dy, x, R, S, padding, groups), dw, rtol=0,
                               atol=1e-12 * np.abs(dw).max())


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 3, 9, 9), (4, 3, 3, 3), {"stride": 2, "padding": 1}, "needs stride 1"),
    ((1, 3, 40, 40), (4, 3, 3, 3), {"padding": 1}, "padded input planes of at most 32x32"),
    ((1, 3, 30, 30), (4, 3, 5, 5), {"padding": 2}, "padded input planes of at most 32x32"),  # 34 > 32
    ((1, 3, 8, 33), (4, 3, 1, 1), {}, "padded input planes of at most 32x32"),
])
def test_fft_is_refused_for_shapes_it_cannot_do(x_shape, w_shape, kwargs, match):
    # On every pass (one algorithm names a whole backward) and on the CPU backend, which ignores the algorithm.
    x, w = _x(*x_shape), _x(*w_shape)
    y = ops.conv2d(x, w, **kwargs)
    with pytest.raises(ValueError, match=match):
        ops.conv2d_backward(y, x, w, algorithm="fft", **kwargs)
    with pytest.raises(ValueError, match=match):
        ops.conv2d_backward(y, x, w, algorithm="fft", need_dx=False, need_db=False, **kwargs)
    with pytest.raises(ValueError, match=match):
        ops.conv2d(x, w, algorithm="fft", **kwargs)
    with pytest.raises(ValueError, match=match):
        _C.conv2d_workspace_size(x_shape, w_shape, kwargs.get("stride", 1), kwargs.get("padding", 0), 1,
                                 "backward_filter", False, algorithm="fft")


def test_fft_accepts_the_largest_planes_and_any_filter():
    assert list(_C.conv2d_shape((1, 2, 28, 32), (3, 2, 7, 1), 1, 0, 1, algorithm="fft")) == [1, 3, 22, 32]
    assert list(_C.conv2d_shape((1, 2, 16, 16), (3, 2, 16, 16), 1, 8, 1, algorithm="fft")) == [1, 3, 17, 17]
    assert list(_C.conv2d_shape((2, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2, algorithm="fft")) == [2, 256, 27, 27]


def test_tensors_too_big_for_32_bit_gpu_indices_are_refused():
    # The CUDA kernels' last tile computes int32 indices ~150 past a tensor's end (and FastDiv needs
    # them < 2^31), so tensors within 1024 elements of 2^31 are refused, not only those of 2^31 or more.
    limit = 2**31 - 1 - 1024
    assert list(_C.conv2d_shape((1, 1, 1, limit), (1, 1, 1, 1), 1, 0, 1)) == [1, 1, 1, limit]
    for numel in (limit + 1, 2**31 - 100, 2**31):
        with pytest.raises(ValueError, match=rf"the input x \(1x1x1x{numel}\) has 2\^31 - 1024 or more elements"):
            _C.conv2d_shape((1, 1, 1, numel), (1, 1, 1, 1), 1, 0, 1)
        with pytest.raises(ValueError, match="the input x .* split the batch"):
            _C.conv2d_shape((numel, 1, 1, 1), (1, 1, 1, 1), 1, 0, 1)
    # named as what is too big: "split the batch" was said of one image with a padding of 2^20
    with pytest.raises(ValueError, match=r"the padded input plane \(2097158x2097158\) .* use less padding"):
        _C.conv2d_shape((1, 1, 6, 6), (1, 1, 3, 3), 1, 2**20, 1)
    with pytest.raises(ValueError, match=r"the filter tensor w \(65536x65536x1x1\)"):
        _C.conv2d_shape((1, 65536, 1, 1), (65536, 65536, 1, 1), 1, 0, 1)


def test_a_cpu_convolution_that_cannot_fit_in_memory_is_a_memory_error_before_anything_is_allocated(monkeypatch):
    # np.empty is lazily backed: each part was given and the OOM killer ended the process as the kernel wrote
    # them (padding=23000 on a 1x1 image: 8.5 GB output, 17 GB workspace). Here the machine is made small.
    from pyalexnet import _backend as B
    monkeypatch.setattr(B, "_HOST_MEMORY_CHECK_BYTES", 0)
    monkeypatch.setattr(B, "available_memory", lambda: 1000)
    allocated, empty = [], np.empty
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocated.append(a) or pytest.fail("allocated"))
    x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(MemoryError, match=r"conv2d of x \(1, 1, 1, 1\) with w \(1, 1, 1, 1\), padding=20, on the CPU "
                                          r"needs .* \(output y .*workspace .*\); this machine can give 1.0 KiB"):
        ops.conv2d(x, w, padding=20)
    with pytest.raises(MemoryError, match=r"\(dw .*, dx .*, workspace .*\)"):
        ops.conv2d_backward(np.ones((1, 1, 41, 41), np.float32), x, w, padding=20)
    assert allocated == []
    monkeypatch.setattr(np, "empty", empty)
    monkeypatch.setattr(B, "available_memory", lambda: None)  # unknown (not Linux): not refused
    assert ops.conv2d(x, w, padding=20).shape == (1, 1, 41, 41)


# --- GPU: the CUDA kernels against the CPU backend -----------------------------------------------------------

ALEXNET = {  # batch 2; x shape, w shape, stride, padding, groups
    "conv1": ((2, 3, 224, 224), (96, 3, 11, 11), 4, 2, 1),
    "conv2": ((2, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2),
    "conv3": ((2, 256, 13, 13), (384, 256, 3, 3), 1, 1, 1),
    "conv4": ((2, 384, 13, 13), (384, 192, 3, 3), 1, 1, 2),
    "conv5": ((2, 384, 13, 13), (256, 192, 3, 3), 1, 1, 2),
}
ODD = {"x".join(map(str, c)): ((c[0], c[1], c[2], c[3]), (c[4], c[1] // c[9], c[5], c[6]), c[7], c[8], c[9])
       for c in CASES + [(3, 130, 9, 9, 200, 3, 3, 1, 1, 2), (1, 5, 40, 33, 129, 5, 3, 2, 1, 1)]}


# Winograd-only shapes (3x3, stride 1): pads 0-3, odd and even sizes, tiny and non-multiple-of-4 channels.
WINOGRAD_ODD = {"x".join(map(str, c)): ((c[0], c[1], c[2], c[3]), (c[4], c[1] // c[9], c[5], c[6]), c[7], c[8], c[9])
                for c in [(3, 5, 8, 6, 7, 3, 3, 1, 0, 1), (1, 6, 9, 10, 10, 3, 3, 1, 2, 2), (3, 2, 3, 3, 1, 3, 3, 1, 1, 1),
                          (1, 1, 1, 1, 1, 3, 3, 1, 1, 1), (1, 4, 4, 5, 4, 3, 3, 1, 3, 2), (3, 34, 13, 13, 36, 3, 3, 1, 1, 2),
                          (2, 9, 13, 7, 66, 3, 3, 1, 0, 1),
                          # the filter gradients' 64 x 192 tiles, whole and partial (both algorithms)
                          (2, 320, 7, 7, 48, 3, 3, 1, 1, 2), (1, 20, 6, 6, 140, 3, 3, 1, 1, 1),
                          (1, 150, 6, 6, 140, 3, 3, 1, 1, 1)]}
SHAPES = {**ALEXNET, **ODD, **WINOGRAD_ODD}


def _winograd_can(name):
    _, w_shape, stride, _, _ = SHAPES[name]
    return w_shape[2:] == (3, 3) and stride == 1


GPU_CASES = [(name, "auto") for name in list(ALEXNET) + list(ODD)] + [
    (name, algorithm) for name in SHAPES for algorithm in ("direct", "winograd")
    if algorithm == "direct" or _winograd_can(name)]


@pytest.mark.gpu
@pytest.mark.parametrize("name, algorithm", GPU_CASES, ids=lambda v: v)
def test_gpu_matches_cpu(cp, rng, name, algorithm):
    x_shape, w_shape, stride, padding, groups = SHAPES[name]
    hyper = dict(stride=stride, padding=padding, groups=groups)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    y = ops.conv2d(x, w, b, **hyper)
    y_gpu = ops.conv2d(cp.asarray(x), cp.asarray(w), cp.asarray(b), algorithm=algorithm, **hyper)
    assert isinstance(y_gpu, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y, rtol=1e-4, atol=1e-4)
    y0_gpu = ops.conv2d(cp.asarray(x), cp.asarray(w), algorithm=algorithm, **hyper)  # no bias
    np.testing.assert_allclose(cp.asnumpy(y0_gpu), y - b[None, :, None, None], rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    cpu = ops.conv2d_backward(dy, x, w, **hyper)
    gpu = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), algorithm=algorithm, **hyper)
    scale = np.sqrt(y[:, 0].size)
    for name_, c, g in zip(("dx", "dw", "db"), cpu, gpu):
        np.testing.assert_allclose(cp.asnumpy(g), c, rtol=1e-4, atol=1e-5 * scale, err_msg=name_)


@pytest.mark.gpu
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", [
    ((128, 3, 227, 227), (96, 3, 11, 11), 4, 0),   # conv1: 11 splits of each filter's 387,200 values
    ((128, 256, 13, 13), (384, 256, 3, 3), 1, 1),  # conv3: 3 splits, 169 pixels per image (< one block's 256)
    ((2, 5, 9, 9), (7, 5, 3, 3), 1, 1),            # one split: db written directly
])
def test_gpu_bias_gradient_splits_match_float64_and_repeat(cp, rng, x_shape, w_shape, stride, padding):
    # The bias gradient splits each filter's values over several blocks and adds the splits in order; only dy
    # matters, so x and w are zeros.
    hyper = dict(stride=stride, padding=padding)
    x, w = cp.zeros(x_shape, cp.float32), cp.zeros(w_shape, cp.float32)
    P = (x_shape[2] + 2 * padding - w_shape[2]) // stride + 1
    dy = rng.standard_normal((x_shape[0], w_shape[0], P, P)).astype(np.float32)
    db = [cp.asnumpy(ops.conv2d_backward(cp.asarray(dy), x, w, need_dx=False, need_dw=False, **hyper)[2])
          for _ in range(2)]
    assert db[0].tobytes() == db[1].tobytes(), "the bias gradient must give the same bits on every run"
    ref = dy.astype(np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(db[0], ref, rtol=1e-5, atol=1e-6 * np.sqrt(dy[:, 0].size))


@pytest.mark.gpu
@pytest.mark.parametrize("algorithm", ["direct", "winograd"])
def test_gpu_matches_cpu_on_a_grid_that_takes_128_row_tiles(cp, rng, algorithm):
    # At batch 2 the forward and data-gradient launchers pick 64-row tiles (the grid is under one wave);
    # conv3 at batch 64 fills ~2 waves of 128-row tiles on an H100, covering the other kernel variant.
    x = rng.standard_normal((64, 256, 13, 13)).astype(np.float32)
    w = (rng.standard_normal((384, 256, 3, 3)) / 48).astype(np.float32)
    y = ops.conv2d(x, w, padding=1)
    y_gpu = ops.conv2d(cp.asarray(x), cp.asarray(w), padding=1, algorithm=algorithm)
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, _ = ops.conv2d_backward(dy, x, w, padding=1, need_db=False)
    dx_gpu, dw_gpu, _ = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), padding=1, need_db=False,
                                            algorithm=algorithm)
    np.testing.assert_allclose(cp.asnumpy(dx_gpu), dx, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cp.asnumpy(dw_gpu), dw, rtol=1e-4, atol=1e-5 * np.sqrt(dy[:, 0].size) * 10)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_winograd_runs_in_several_chunks(cp, rng):
    # conv4 at batch 256: Winograd's transformed planes exceed one chunk (2^27 floats, 222 images), so every
    # pass runs two chunks of 128 images (the filter gradient carries a running sum from one to the next).
    x_shape, w_shape, stride, padding, groups = ALEXNET["conv4"]
    x_shape = (256,) + x_shape[1:]
    hyper = dict(stride=stride, padding=padding, groups=groups)
    need = _C.conv2d_workspace_size(x_shape, w_shape, stride, padding, groups, "forward", True, algorithm="winograd")
    assert need < 16 * (384 + 384) * 256 * 49  # less than one chunk of the whole batch
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / 40).astype(np.float32)
    y = ops.conv2d(x, w, **hyper)
    y_gpu = ops.conv2d(cp.asarray(x), cp.asarray(w), algorithm="winograd", **hyper)
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, _ = ops.conv2d_backward(dy, x, w, need_db=False, **hyper)
    dx_gpu, dw_gpu, _ = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), need_db=False,
                                            algorithm="winograd", **hyper)
    np.testing.assert_allclose(cp.asnumpy(dx_gpu), dx, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cp.asnumpy(dw_gpu), dw, rtol=1e-4, atol=1e-5 * np.sqrt(dy[:, 0].size) * 10)


@pytest.mark.gpu
@pytest.mark.parametrize("name, chosen", [("conv1", "direct"), ("conv2", "direct"), ("conv3", "winograd"),
                                          ("conv4", "winograd"), ("conv5", "winograd")])
def test_gpu_auto_picks_winograd_for_conv3_to_conv5(cp, rng, name, chosen):
    # "auto" must give the bits of the algorithm the selection rule names (and the workspace it needs).
    x_shape, w_shape, stride, padding, groups = ALEXNET[name]
    hyper = dict(stride=stride, padding=padding, groups=groups)
    x = cp.asarray(rng.standard_normal(x_shape).astype(np.float32))
    w = cp.asarray((rng.standard_normal(w_shape) / 40).astype(np.float32))
    y = ops.conv2d(x, w, **hyper)
    assert cp.asnumpy(y).tobytes() == cp.asnumpy(ops.conv2d(x, w, algorithm=chosen, **hyper)).tobytes()
    auto = ops.conv2d_backward(y, x, w, need_db=False, **hyper)[:2]
    forced = ops.conv2d_backward(y, x, w, need_db=False, algorithm=chosen, **hyper)[:2]
    for a, f in zip(auto, forced):
        assert cp.asnumpy(a).tobytes() == cp.asnumpy(f).tobytes()
    for p in ("forward", "backward_data", "backward_filter"):
        assert (_C.conv2d_workspace_size(x_shape, w_shape, stride, padding, groups, p, True)
                == _C.conv2d_workspace_size(x_shape, w_shape, stride, padding, groups, p, True, algorithm=chosen))


@pytest.mark.gpu
@pytest.mark.parametrize("name, algorithm", [("conv2", "direct"), ("conv3", "direct"), ("conv3", "winograd"),
                                             ("conv4", "winograd"), ("conv2", "fft"), ("conv4", "fft")])
def test_gpu_filter_gradient_is_bit_identical_across_runs(cp, rng, name, algorithm):
    x_shape, w_shape, stride, padding, groups = ALEXNET[name]
    hyper = dict(stride=stride, padding=padding, groups=groups, algorithm=algorithm)
    x = cp.asarray(rng.standard_normal(x_shape).astype(np.float32))
    w = cp.asarray(rng.standard_normal(w_shape).astype(np.float32))
    dy = ops.conv2d(x, w, **hyper)
    _, dw1, db1 = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    _, dw2, db2 = ops.conv2d_backward(dy, x, w, need_dx=False, **hyper)
    assert cp.asnumpy(dw1).tobytes() == cp.asnumpy(dw2).tobytes()
    assert cp.asnumpy(db1).tobytes() == cp.asnumpy(db2).tobytes()


@pytest.mark.gpu
def test_gpu_need_dx_false_and_mixed_devices(cp, rng):
    x = cp.asarray(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((8, 3, 5, 5)).astype(np.float32))
    dy = ops.conv2d(x, w, stride=2, padding=2)
    dx, dw, db = ops.conv2d_backward(dy, x, w, stride=2, padding=2, need_dx=False, need_db=False)
    assert dx is None and db is None and isinstance(dw, cp.ndarray)
    with pytest.raises(TypeError):
        ops.conv2d(x, cp.asnumpy(w))


# --- GPU: the FFT filter gradient (algorithm="fft") against the CPU backend ------------------------------------
# Tolerance relative to max |dw|, not per element: a float32 FFT's rounding errors are spread over every bin
# and come back into each output lag in proportion to the whole correlation's energy (growing ~log2 L), so
# small elements of dw carry the same absolute error as large ones. The CPU emulation of these kernels measured
# <= 4.2e-7 of max |dw| (tests/conv_cuda_emulation); 1e-5 leaves ~25x for the GPU's fused multiply-adds and the
# CPU reference's own float32 error.
FFT_REL_TOL = 1e-5


def _assert_fft_close(got, want):
    np.testing.assert_allclose(got, want, rtol=0, atol=FFT_REL_TOL * float(np.abs(want).max()))


FFT_GPU_SHAPES = {  # x shape, w shape, padding, groups; stride 1
    "conv2": ((2, 96, 27, 27), (256, 48, 5, 5), 2, 2),
    "conv2-batch4": ((4, 96, 27, 27), (256, 48, 5, 5), 2, 2),
    "conv3": ((2, 256, 13, 13), (384, 256, 3, 3), 1, 1),
    "conv4": ((3, 384, 13, 13), (384, 192, 3, 3), 1, 2),
    "conv5": ((2, 384, 13, 13), (256, 192, 3, 3), 1, 2),
    "3x5-one-image": ((1, 3, 7, 9), (4, 3, 3, 5), 1, 1),
    "1x1-groups4": ((2, 4, 16, 13), (8, 1, 1, 1), 0, 4),
    "7x7-odd-counts": ((2, 5, 6, 5), (7, 5, 7, 7), 3, 1),
    "2x3-groups3": ((2, 9, 12, 14), (6, 3, 2, 3), 1, 3),
    "partial-gemm-tiles": ((3, 130, 9, 9), (200, 65, 3, 3), 1, 2),
    "300-filters": ((2, 20, 12, 12), (300, 20, 3, 3), 1, 1),
    "17-images": ((17, 3, 4, 4), (5, 3, 3, 3), 1, 1),
    "32x32": ((2, 3, 32, 32), (4, 3, 3, 3), 0, 1),
    "9x9": ((2, 16, 8, 8), (16, 16, 9, 9), 4, 1),
    "padding13": ((1, 2, 5, 5), (2, 2, 1, 1), 13, 1),
    "L32-from-rows": ((1, 2, 17, 9), (3, 2, 1, 3), 0, 1),
    "1x1x1": ((1, 1, 1, 1), (1, 1, 1, 1), 0, 1),
}


def _fft_case(rng, name):
    x_shape, w_shape, padding, groups = FFT_GPU_SHAPES[name]
    hyper = dict(padding=padding, groups=groups)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    dy = rng.standard_normal(_C.conv2d_shape(x_shape, w_shape, 1, padding, groups)).astype(np.float32)
    return x, w, dy, hyper


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(FFT_GPU_SHAPES))
def test_gpu_fft_filter_gradient_matches_cpu(cp, rng, name):
    x, w, dy, hyper = _fft_case(rng, name)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **hyper)
    gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    fdx, fdw, fdb = ops.conv2d_backward(gdy, gx, gw, algorithm="fft", **hyper)
    _assert_fft_close(cp.asnumpy(fdw), dw)
    # dx and db under "fft" are "auto"'s, bit for bit.
    adx, _, adb = ops.conv2d_backward(gdy, gx, gw, need_dw=False, **hyper)
    assert cp.asnumpy(fdx).tobytes() == cp.asnumpy(adx).tobytes()
    assert cp.asnumpy(fdb).tobytes() == cp.asnumpy(adb).tobytes()
    np.testing.assert_allclose(cp.asnumpy(fdx), dx, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_gpu_fft_forward_is_autos(cp, rng):
    x, w, _, hyper = _fft_case(rng, "conv2")
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    gx, gw, gb = cp.asarray(x), cp.asarray(w), cp.asarray(b)
    y_fft = ops.conv2d(gx, gw, gb, algorithm="fft", **hyper)
    assert cp.asnumpy(y_fft).tobytes() == cp.asnumpy(ops.conv2d(gx, gw, gb, **hyper)).tobytes()
    for p in ("forward", "backward_data"):
        args = (x.shape, w.shape, 1, hyper["padding"], hyper["groups"], p, True)
        assert _C.conv2d_workspace_size(*args, algorithm="fft") == _C.conv2d_workspace_size(*args)


@pytest.mark.gpu
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((1, 3, 9, 9), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((1, 3, 40, 40), (4, 3, 3, 3), {"padding": 1}),
])
def test_gpu_fft_is_refused_for_shapes_it_cannot_do(cp, x_shape, w_shape, kwargs):
    x, w = cp.asarray(_x(*x_shape)), cp.asarray(_x(*w_shape))
    y = ops.conv2d(x, w, **kwargs)
    with pytest.raises(ValueError, match="algorithm='fft' needs"):
        ops.conv2d_backward(y, x, w, algorithm="fft", **kwargs)
    with pytest.raises(ValueError, match="algorithm='fft' needs"):
        _C.conv2d_workspace_size(x_shape, w_shape, kwargs.get("stride", 1), kwargs["padding"], 1,
                                 "backward_filter", True, algorithm="fft")


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_fft_runs_in_several_chunks(cp, rng):
    # 1088 bins' worth of spectra per (image, channel or filter) at L = 32: 1024 channels + filters hold 120
    # images per chunk (2^27 floats), so batch 128 runs two chunks of 64 (DW summed in chunk order).
    x_shape, w_shape, padding, groups = (128, 512, 24, 24), (512, 16, 3, 3), 1, 32
    need = _C.conv2d_workspace_size(x_shape, w_shape, 1, padding, groups, "backward_filter", True, algorithm="fft")
    assert need < 2 * 544 * (512 + 512) * 128  # less than the spectra of the whole batch
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / 12).astype(np.float32)
    dy = rng.standard_normal(_C.conv2d_shape(x_shape, w_shape, 1, padding, groups)).astype(np.float32)
    hyper = dict(padding=padding, groups=groups)
    _, dw, _ = ops.conv2d_backward(dy, x, w, need_dx=False, need_db=False, **hyper)
    gdy, gx, gw = cp.asarray(dy), cp.asarray(x), cp.asarray(w)
    _, fdw, _ = ops.conv2d_backward(gdy, gx, gw, need_dx=False, need_db=False, algorithm="fft", **hyper)
    _assert_fft_close(cp.asnumpy(fdw), dw)
    _, fdw2, _ = ops.conv2d_backward(gdy, gx, gw, need_dx=False, need_db=False, algorithm="fft", **hyper)
    assert cp.asnumpy(fdw).tobytes() == cp.asnumpy(fdw2).tobytes()
