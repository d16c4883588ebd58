"""The augmentation kernel (crop, flip, PCA lighting, mean subtraction), centre and ten crops, against
plain numpy; the lighting statistics against the paper's rule; GPU/CPU parity."""
import numpy as np
import pytest

from pyalexnet import _C
from pyalexnet.data import augment, center_crop, lighting_offsets, random_parameters, ten_crops


def ref_augment(images, mean, crop, index, offsets, flips, lighting):
    out = np.empty((len(index), 3, crop, crop), np.float32)
    for i, (src, (top, left), flip) in enumerate(zip(index, offsets, flips)):
        patch = images[src, top:top + crop, left:left + crop].astype(np.float32) - mean[top:top + crop, left:left + crop]
        if flip:
            patch = patch[:, ::-1]
        out[i] = (patch + lighting[i].astype(np.float32)).transpose(2, 0, 1)
    return out


@pytest.fixture
def batch(rng):
    images = rng.integers(0, 256, (6, 13, 11, 3), dtype=np.uint8)
    mean = rng.uniform(0, 255, (13, 11, 3)).astype(np.float32)
    return images, mean


def test_known_pixels_crop_and_flip():
    # Pixel value encodes its position: R = row, G = column, B = 7.
    img = np.zeros((1, 6, 8, 3), np.uint8)
    img[0, :, :, 0] = np.arange(6)[:, None]
    img[0, :, :, 1] = np.arange(8)[None, :]
    img[0, :, :, 2] = 7
    mean = np.zeros((6, 8, 3), np.float32)
    out = augment(img, 4, mean, offsets=[[1, 3]], flips=[0])
    np.testing.assert_array_equal(out[0, 0], np.broadcast_to(np.arange(1, 5)[:, None], (4, 4)))
    np.testing.assert_array_equal(out[0, 1], np.broadcast_to(np.arange(3, 7)[None, :], (4, 4)))
    np.testing.assert_array_equal(out[0, 2], 7)
    flipped = augment(img, 4, mean, offsets=[[1, 3]], flips=[1])
    np.testing.assert_array_equal(flipped[0, 1], np.broadcast_to(np.arange(6, 2, -1)[None, :], (4, 4)))
    np.testing.assert_array_equal(flipped[0, 0], out[0, 0])
    # The last legal crop reaches the bottom-right corner exactly.
    corner = augment(img, 4, mean, offsets=[[2, 4]], flips=[0])
    assert corner[0, 0, -1, -1] == 5 and corner[0, 1, -1, -1] == 7


def test_matches_numpy_exactly(rng, batch):
    images, mean = batch
    n, crop = 9, 7
    index = rng.integers(0, len(images), n)
    offsets = np.stack([rng.integers(0, 13 - crop + 1, n), rng.integers(0, 11 - crop + 1, n)], 1).astype(np.int32)
    flips = rng.integers(0, 2, n).astype(np.uint8)
    lighting = rng.normal(0, 5, (n, 3)).astype(np.float32)
    out = augment(images, crop, mean, index=index, offsets=offsets, flips=flips, lighting=lighting)
    assert out.shape == (n, 3, crop, crop) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref_augment(images, mean, crop, index, offsets, flips, lighting))


def test_mean_subtraction_uses_the_mean_images_own_crop_and_flip(rng):
    # An image equal to the mean image gives exactly zero wherever it is cropped, flipped or not.
    mean_u8 = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    out = augment(mean_u8[None].repeat(4, 0), 6, mean_u8.astype(np.float32),
                  offsets=[[0, 0], [4, 4], [2, 3], [1, 4]], flips=[0, 1, 1, 0])
    np.testing.assert_array_equal(out, 0)


def test_center_crop_and_ten_crops_geometry(batch):
    images, mean = batch
    c = 5
    cc = center_crop(images, c, mean)
    np.testing.assert_array_equal(cc, ref_augment(images, mean, c, range(6), [[4, 3]] * 6, [0] * 6, np.zeros((6, 3))))
    tc = ten_crops(images, c, mean)
    assert tc.shape == (10, 6, 3, c, c)
    corners = [(0, 0), (0, 6), (8, 0), (8, 6), (4, 3)]
    for k in range(10):
        top, left = corners[k % 5]
        ref = ref_augment(images, mean, c, range(6), [[top, left]] * 6, [k >= 5] * 6, np.zeros((6, 3)))
        np.testing.assert_array_equal(tc[k], ref, err_msg=f"crop {k}")
        np.testing.assert_array_equal(ten_crops(images, c, mean, patch=k), ref, err_msg=f"patch {k} alone")
    with pytest.raises(ValueError, match="patch must be 0..9"):
        ten_crops(images, c, mean, patch=10)
    np.testing.assert_array_equal(tc[4], cc)
    np.testing.assert_array_equal(tc[5], tc[0][..., ::-1])


def test_centre_crops_round_down_and_ten_crops_centre_is_the_centre_crop(rng):
    # Odd margins (12 - 5 = 7 rows, 10 - 5 = 5 columns): the centre crop starts at floor(margin / 2), (3, 2),
    # and the ten-crop centre patch (and its mirror) is that same crop, as the test-time centre crop is.
    images = rng.integers(0, 256, (3, 12, 10, 3), dtype=np.uint8)
    mean = rng.uniform(0, 255, (12, 10, 3)).astype(np.float32)
    want = ref_augment(images, mean, 5, range(3), [[3, 2]] * 3, [0] * 3, np.zeros((3, 3)))
    np.testing.assert_array_equal(center_crop(images, 5, mean), want)
    np.testing.assert_array_equal(ten_crops(images, 5, mean, patch=4), want)
    np.testing.assert_array_equal(ten_crops(images, 5, mean, patch=9), want[..., ::-1])


def test_lighting_covariance_follows_the_papers_rule(rng):
    # alpha ~ N(0, 0.1); the added colour 255 * P (alpha * lambda) has covariance
    # 255^2 * P diag((0.1 lambda)^2) P^T.
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    eigvals = np.array([0.2175, 0.0188, 0.0045])
    _, _, lighting = random_parameters(np.random.default_rng(5), 200_000, 256, 224, eigvals=eigvals, eigvecs=q)
    shift = lighting.astype(np.float64) / 255.0
    expected = q @ np.diag((0.1 * eigvals) ** 2) @ q.T
    np.testing.assert_allclose(np.cov(shift.T), expected, atol=0.02 * expected.max())
    np.testing.assert_allclose(shift.mean(0), 0, atol=3 * 0.1 * eigvals[0] / np.sqrt(200_000) * 2)
    # Along each eigenvector the shift's standard deviation is 0.1 * lambda_i.
    np.testing.assert_allclose((shift @ q).std(0), 0.1 * eigvals, rtol=0.02)
    # The kernel adds exactly these offsets to every pixel of the image.
    img = np.full((3, 8, 8, 3), 100, np.uint8)
    out = augment(img, 8, np.zeros((8, 8, 3), np.float32), lighting=lighting[:3])
    np.testing.assert_allclose(out, np.broadcast_to(100 + lighting[:3, :, None, None], out.shape), rtol=1e-6)


def test_random_parameters_ranges_and_flip_rate():
    offsets, flips, _ = random_parameters(np.random.default_rng(0), 20_000, 40, 32)
    assert offsets.min() == 0 and offsets.max() == 8  # every position 0..8 is reachable, no further
    assert abs(flips.mean() - 0.5) < 0.02
    _, no_flips, zero = random_parameters(np.random.default_rng(0), 100, 40, 32, flip=False)
    assert not no_flips.any() and not zero.any()


def test_lighting_offsets_formula():
    eigvecs = np.eye(3)[:, [2, 0, 1]]
    out = lighting_offsets([[1.0, 2.0, 3.0]], [0.5, 0.25, 0.125], eigvecs)
    np.testing.assert_allclose(out[0], 255 * eigvecs @ np.array([0.5, 0.5, 0.375]), rtol=1e-6)


def test_memmapped_images_are_read_in_place(tmp_path, batch):
    images, mean = batch
    mm = np.memmap(tmp_path / "x.u8", np.uint8, "w+", shape=images.shape)
    mm[:] = images
    mm.flush()
    ro = np.memmap(tmp_path / "x.u8", np.uint8, "r", shape=images.shape)
    np.testing.assert_array_equal(center_crop(ro, 5, mean), center_crop(images, 5, mean))


def test_bad_inputs_are_clear_errors(batch):
    images, mean = batch
    with pytest.raises(TypeError, match="uint8"):
        augment(images.astype(np.float32), 5, mean)
    with pytest.raises(ValueError, match="crop_size 14"):
        augment(images, 14, mean)
    with pytest.raises(ValueError, match="mean_image"):
        augment(images, 5, mean[:, :10])
    with pytest.raises(ValueError, match="offsets"):
        augment(images, 5, mean, offsets=[[9, 0]], index=[0])
    with pytest.raises(ValueError, match="index"):
        augment(images, 5, mean, index=[6])
    with pytest.raises(ValueError, match="flips"):
        augment(images, 5, mean, index=[0], flips=[2])
    # Values the cast to int32 / uint8 would wrap into valid ones (a crop at (0, 1), a flip) are refused.
    with pytest.raises(ValueError, match="argument 'offsets' holds 4294967297, outside int32"):
        augment(images, 5, mean, index=[0], offsets=np.array([[2**32, 2**32 + 1]]))
    with pytest.raises(ValueError, match="argument 'flips' holds 257, outside uint8"):
        augment(images, 5, mean, index=[0], flips=np.array([257]))
    with pytest.raises(ValueError, match="argument 'index' holds 18446744073709551615, outside int64"):
        augment(images, 5, mean, index=np.array([2**64 - 1], np.uint64))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        augment(images[..., :2], 5, mean)


def test_bindings_check_before_launching(batch):
    images, mean = batch
    n, c = 2, 5
    args = dict(index=np.zeros(n, np.int64), offsets=np.zeros((n, 2), np.int32), flips=np.zeros(n, np.uint8),
                lighting=np.zeros((n, 3), np.float32), out=np.empty((n, 3, c, c), np.float32))
    _C.augment(images, mean, **args)
    bad = dict(args, offsets=np.array([[0, 7], [0, 0]], np.int32))
    with pytest.raises(ValueError, match="'offsets': crop 0 at \\(0, 7\\)"):
        _C.augment(images, mean, **bad)
    with pytest.raises(ValueError, match="'index'"):
        _C.augment(images, mean, **dict(args, index=np.array([0, -1], np.int64)))
    with pytest.raises(TypeError, match="'index' must have dtype int64"):
        _C.augment(images, mean, **dict(args, index=np.zeros(n, np.int32)))
    with pytest.raises(ValueError, match="'lighting' must have shape"):
        _C.augment(images, mean, **dict(args, lighting=np.zeros((n, 2), np.float32)))
    with pytest.raises(ValueError, match="'out' must have shape"):
        _C.augment(images, mean, **dict(args, out=np.empty((n, 3, c, c + 1), np.float32)))
    empty = dict(index=np.zeros(0, np.int64), offsets=np.zeros((0, 2), np.int32), flips=np.zeros(0, np.uint8),
                 lighting=np.zeros((0, 3), np.float32), out=np.empty((0, 3, c, c), np.float32))
    _C.augment(images, mean, **empty)


@pytest.mark.gpu
def test_gpu_augmentation_equals_cpu(cp, rng):
    images = rng.integers(0, 256, (16, 40, 36, 3), dtype=np.uint8)
    mean = rng.uniform(0, 255, (40, 36, 3)).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    offsets, flips, lighting = random_parameters(np.random.default_rng(3), 16, 36, 32, eigvals=[0.2, 0.02, 0.004],
                                                 eigvecs=q)
    index = rng.permutation(16)
    cpu = augment(images, 32, mean, index=index, offsets=offsets, flips=flips, lighting=lighting)
    gpu = augment(cp.asarray(images), 32, cp.asarray(mean), index=index, offsets=offsets, flips=flips,
                  lighting=lighting)
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(gpu), cpu)
    np.testing.assert_array_equal(cp.asnumpy(ten_crops(cp.asarray(images), 32, cp.asarray(mean))),
                                  ten_crops(images, 32, mean))
