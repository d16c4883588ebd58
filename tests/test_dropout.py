"""dropout: Philox known answers, mask statistics, determinism, scaling, backward, and CPU/GPU identity."""
import numpy as np
import pytest

from pyalexnet import _C, ops

from numerics import numeric_grad

# Random123's known-answer vectors for Philox4x32-10 (counter, key, result).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    assert _C.philox4x32_10(ctr, key) == expected


def ref_mask(seed, n, p):
    """The documented rule: element i is kept iff Philox word i of (seed, subsequence 0) >= floor(p * 2^32)."""
    words = []
    for g in range((n + 3) // 4):
        words.extend(_C.philox4x32_10((g & 0xFFFFFFFF, g >> 32, 0, 0), (seed & 0xFFFFFFFF, seed >> 32)))
    return (np.array(words[:n], np.uint64) >= int(p * 2**32)).astype(np.uint8)


@pytest.mark.parametrize("n", [1, 7, 64, 1001])
@pytest.mark.parametrize("seed", [0, 12345, 2**64 - 1])
def test_mask_follows_the_documented_rule(rng, n, seed):
    x = rng.standard_normal(n).astype(np.float32)
    y, mask = ops.dropout(x, p=0.3, seed=seed)
    assert mask.dtype == np.uint8 and mask.shape == x.shape
    np.testing.assert_array_equal(mask, ref_mask(seed, n, 0.3))
    np.testing.assert_array_equal(y, np.where(mask == 1, x * np.float32(1 / 0.7), 0).astype(np.float32))


@pytest.mark.parametrize("frac", [0.0, 0.75])
@pytest.mark.parametrize("seed", [0, 12345])
def test_a_word_equal_to_the_threshold_is_kept(rng, seed, frac):
    # The rule is word >= floor(p * 2^32): with p = (w + frac) / 2^32 exactly (a double) for word w of element k,
    # the threshold is w and element k sits on the boundary: it must be kept. A random p almost never lands there,
    # so `>` instead of `>=` (either frac), or a threshold rounded to nearest instead of floored (frac 0.75: w + 1),
    # passed every other test; here they drop element k.
    n = 64
    x = rng.standard_normal(n).astype(np.float32) + 5  # no zeros, so y shows the kept elements too
    words = []
    for g in range(n // 4):
        words.extend(_C.philox4x32_10((g, 0, 0, 0), (seed & 0xFFFFFFFF, seed >> 32)))
    words = np.array(words, np.uint64)
    for k in (0, 5, n - 1):  # the first, a middle and the last lane of a Philox call
        w = int(words[k])
        p = (w + frac) / 2**32
        assert 0 < p < 1 and p * 2**32 == w + frac and int(p * 2**32) == w
        y, mask = ops.dropout(x, p=p, seed=seed)
        assert mask[k] == 1, (k, w)
        expected = (words >= w).astype(np.uint8)
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(mask, ref_mask(seed, n, p))
        np.testing.assert_array_equal(y, np.where(expected == 1, x * np.float32(1 / (1 - p)), 0).astype(np.float32))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_fraction_and_scaling(p):
    x = np.ones((256, 4096), np.float32)
    y, mask = ops.dropout(x, p=p, seed=7)
    keep = mask.mean()
    assert abs(keep - (1 - p)) < 5 * np.sqrt(p * (1 - p) / x.size)
    kept = y[mask == 1]
    np.testing.assert_allclose(kept, np.float32(1 / (1 - p)), rtol=1e-7)
    assert np.all(y[mask == 0] == 0)
    assert abs(y.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation


def test_neighbours_are_uncorrelated():
    _, mask = ops.dropout(np.ones(1 << 20, np.float32), p=0.5, seed=99)
    m = mask.astype(np.float64) - mask.mean()
    for lag in (1, 2, 3, 4, 5, 8, 4096):
        corr = np.dot(m[:-lag], m[lag:]) / np.dot(m, m)
        assert abs(corr) < 5 / np.sqrt(m.size), (lag, corr)


def test_determinism_and_seed_sensitivity():
    x = np.ones((64, 100), np.float32)
    _, a = ops.dropout(x, seed=1)
    _, b = ops.dropout(x, seed=1)
    _, c = ops.dropout(x, seed=2)
    _, d = ops.dropout(x, seed=1 + 2**32)  # the high word of the seed matters too
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.4 and (a != d).mean() > 0.4


def test_mask_depends_only_on_the_element_index():
    _, full = ops.dropout(np.ones((10, 10), np.float32), seed=5)
    _, flat = ops.dropout(np.ones(100, np.float32), seed=5)
    np.testing.assert_array_equal(full.reshape(-1), flat)


def test_p_zero_is_the_identity(rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    y, mask = ops.dropout(x, p=0.0, seed=3)
    np.testing.assert_array_equal(y, x)
    assert np.all(mask == 1)
    np.testing.assert_array_equal(ops.dropout_backward(x, mask, p=0.0), x)


def test_backward_matches_the_mask_and_finite_differences(rng):
    x = rng.standard_normal((4, 6))
    _, mask = ops.dropout(x, p=0.4, seed=11)
    dy = rng.standard_normal(x.shape)
    dx = ops.dropout_backward(dy, mask, p=0.4)
    np.testing.assert_allclose(dx, np.where(mask == 1, dy / 0.6, 0), rtol=1e-6)
    numeric = numeric_grad(lambda v: np.where(mask == 1, v / 0.6, 0), x, dy)
    np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-6)


def test_defaults_are_the_papers_half_both_ways(rng):
    # p = 0.5 (the paper's fc6 and fc7) in the forward and the backward alike: a backward whose default differed
    # from the forward's scaled the gradients of dropout(x, seed=s) wrongly for a caller who relied on both.
    x = rng.standard_normal((8, 50)).astype(np.float32)
    y, mask = ops.dropout(x, seed=4)
    assert 0.35 < mask.mean() < 0.65
    np.testing.assert_allclose(y, np.where(mask == 1, x / 0.5, 0), rtol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(ops.dropout_backward(dy, mask), np.where(mask == 1, dy / 0.5, 0), rtol=1e-6)


def test_unaligned_views_work(rng):
    x = rng.standard_normal(1001).astype(np.float32)
    y, mask = ops.dropout(x[1:], seed=4)
    np.testing.assert_array_equal(mask, ref_mask(4, 1000, 0.5))


def test_empty_input():
    y, mask = ops.dropout(np.zeros((0, 5), np.float32), seed=0)
    assert y.shape == mask.shape == (0, 5)
    assert ops.dropout_backward(y, mask).shape == (0, 5)


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_p_out_of_range(p):
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        ops.dropout(np.ones(3, np.float32), p=p, seed=0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        ops.dropout_backward(np.ones(3, np.float32), np.ones(3, np.uint8), p=p)


def test_bad_seeds():
    x = np.ones(3, np.float32)
    with pytest.raises(TypeError):
        ops.dropout(x)  # seed is required
    for bad in (1.5, "1", None, True):
        with pytest.raises(TypeError, match="seed"):
            ops.dropout(x, seed=bad)
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="seed"):
            ops.dropout(x, seed=bad)
    ops.dropout(x, seed=np.uint64(2**64 - 1))


def test_bad_masks():
    dy = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="'mask'.*uint8"):
        ops.dropout_backward(dy, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="'dy'.*'mask'"):
        ops.dropout_backward(dy, np.ones((3, 2), np.uint8))


def test_bindings_refuse_p_of_one():
    # ops refuses it first; the bindings must too: scale 1 / (1 - p) is inf there (y = 0 * inf = NaN).
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"dropout p must be in \[0, 1\), got 1"):
        _C.dropout_forward(x, np.empty_like(x), np.empty(4, np.uint8), 3, 1.0)
    with pytest.raises(ValueError, match=r"dropout p must be in \[0, 1\), got 1"):
        _C.dropout_backward(x, np.ones(4, np.uint8), np.empty_like(x), 1.0)
    _C.dropout_backward(x, np.ones(4, np.uint8), np.empty_like(x), np.nextafter(1.0, 0.0))  # just below: taken


# --- GPU ---------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(16, 4096), (16, 9216), (1001,), (3,)])
@pytest.mark.parametrize("seed", [0, 2**63 + 12345])
def test_gpu_mask_is_bit_identical_to_cpu(cp, rng, shape, seed):
    x = rng.standard_normal(shape).astype(np.float32)
    y, mask = ops.dropout(x, p=0.5, seed=seed)
    yg, maskg = ops.dropout(cp.asarray(x), p=0.5, seed=seed)
    assert isinstance(maskg, cp.ndarray) and maskg.dtype == cp.uint8
    np.testing.assert_array_equal(cp.asnumpy(maskg), mask)
    np.testing.assert_array_equal(cp.asnumpy(yg), y)
    dy = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(cp.asnumpy(ops.dropout_backward(cp.asarray(dy), maskg)),
                                  ops.dropout_backward(dy, mask))


@pytest.mark.gpu
def test_gpu_unaligned_views_match_cpu(cp, rng):
    x = rng.standard_normal(4099).astype(np.float32)
    xg = cp.asarray(x)
    _, mask = ops.dropout(x[1:], seed=8)
    _, maskg = ops.dropout(xg[1:], seed=8)
    np.testing.assert_array_equal(cp.asnumpy(maskg), mask)
