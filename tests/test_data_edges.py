"""Edges of the augmentation, the statistics, the CIFAR-10 / Fashion-MNIST readers and the built-in data set that the
other data tests did not reach (mutation-testing additions)."""
import io
import pickle
import tarfile

import numpy as np
import pytest

from pyalexnet.data import _builtin, _formats, _stats
from pyalexnet.data._augment import augment, ten_crops

from data_files import cifar_folder, fashion_folder, write_idx


# ----- augmentation ----------------------------------------------------------------------------------------------
def test_a_strided_view_of_the_images_is_cropped_as_its_copy():
    images = np.random.default_rng(0).integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)
    view = images[:, :, ::-1]  # a mirrored view: not C-contiguous
    mean = np.zeros((6, 8, 3), np.float32)
    np.testing.assert_array_equal(augment(view, 4, mean), augment(np.ascontiguousarray(view), 4, mean))


def test_flips_out_of_byte_range_are_refused_not_wrapped():
    images = np.zeros((2, 6, 8, 3), np.uint8)
    for flips in (np.array([-255, 0]), np.array([257, 0])):  # uint8 casts would make both 1
        with pytest.raises(ValueError, match="argument 'flips' holds"):
            augment(images, 4, np.zeros((6, 8, 3), np.float32), flips=flips)


def test_ten_crops_patch_must_be_an_integer():
    images = np.zeros((1, 6, 6, 3), np.uint8)
    with pytest.raises(TypeError, match="patch must be an integer, got True"):
        ten_crops(images, 4, np.zeros((6, 6, 3), np.float32), patch=True)


def test_ten_crops_refuses_a_crop_size_that_is_not_an_integer_as_the_centre_crop_does():
    images, mean = np.zeros((1, 6, 6, 3), np.uint8), np.zeros((6, 6, 3), np.float32)
    for bad in (3.9, True):  # were cut to crops of 3 and 1
        with pytest.raises(TypeError, match="crop_size must be an integer"):
            ten_crops(images, bad, mean)
    assert ten_crops(images, np.int64(4), mean).shape == (10, 1, 3, 4, 4)


# ----- statistics ------------------------------------------------------------------------------------------------
def test_statistics_of_images_larger_than_one_chunk_count_every_image():
    # 600x600 images: the RGB sums go two images at a time, so three images take a second, shorter chunk.
    images = np.random.default_rng(1).integers(0, 256, (3, 600, 600, 3), dtype=np.uint8)
    mean_image, vals, vecs = _stats.compute_stats(images)
    pixels = images.reshape(-1, 3).astype(np.float64) / 255
    want = np.linalg.eigvalsh(np.cov(pixels, rowvar=False, bias=True))[::-1]
    np.testing.assert_allclose(vals, want, rtol=1e-6)
    np.testing.assert_allclose(mean_image, images.mean(axis=0), rtol=1e-6)


def test_statistics_fed_one_image_at_a_time_equal_those_of_the_whole_set():
    images = np.random.default_rng(2).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    stats = _stats.RunningStats(6)
    for image in images:
        stats.update(image[None])
    stats.update(images[:0])
    for got, want in zip(stats.finalize(), _stats.compute_stats(images)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_statistics_of_no_images_are_refused():
    with pytest.raises(ValueError, match="cannot compute statistics of an empty training set"):
        _stats.RunningStats(4).finalize()


def test_grey_images_have_no_negative_eigenvalues():
    grey = np.random.default_rng(3).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8).repeat(3, axis=3)
    _, vals, _ = _stats.compute_stats(grey)
    assert np.all(vals >= 0) and vals[0] > 0


def test_eigenvector_signs_do_not_depend_on_the_solver(monkeypatch):
    cov = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, 0.2], [0.5, 0.2, 1.0]])
    vals, vecs = _stats.eigen_rgb(cov)
    solver = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda a: (lambda w, v: (w, -v))(*solver(a)))  # the other signs
    vals2, vecs2 = _stats.eigen_rgb(cov)
    np.testing.assert_array_equal(vals2, vals)
    np.testing.assert_allclose(vecs2, vecs)
    assert all(vecs[np.argmax(np.abs(vecs[:, j])), j] > 0 for j in range(3))


# ----- CIFAR-10 --------------------------------------------------------------------------------------------------
def _write_batch(path, data, labels):
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f)


@pytest.mark.parametrize("label", [10, -1])
def test_cifar_labels_just_outside_0_to_9_are_refused(tmp_path, rng, label):
    cifar_folder(tmp_path, rng)
    _write_batch(tmp_path / "data_batch_2", np.zeros((2, 3072), np.uint8), [0, label])
    with pytest.raises(ValueError, match=rf"data_batch_2: labels must be integers 0..9, found \[{label}\]"):
        _formats.load_cifar10(tmp_path)


def test_a_cifar_batch_that_is_not_a_dict_is_a_clear_error(tmp_path, rng):
    cifar_folder(tmp_path, rng)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 python batch \\(a pickled dict\\), got list"):
        _formats.load_cifar10(tmp_path)


def test_a_cifar_pickle_calling_eval_is_refused(tmp_path, rng):
    cifar_folder(tmp_path, rng)

    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    _write_batch(tmp_path / "data_batch_1", Evil(), [])
    with pytest.raises(ValueError, match="refusing to load builtins.eval"):
        _formats.load_cifar10(tmp_path)


def test_an_uncompressed_cifar_tar_is_read(tmp_path, rng):
    arrays = cifar_folder(tmp_path / "src", rng)
    archive = tmp_path / "cifar-10-python.tar"
    with tarfile.open(archive, "w") as tar:
        for f in sorted((tmp_path / "src").iterdir()):
            tar.add(f, arcname=f"cifar-10-batches-py/{f.name}")
    classes, (train_x, train_y), (test_x, test_y) = _formats.load_cifar10(archive)
    assert classes[0] == "c0" and len(train_x) == 30 and test_y.tolist() == [int(v) for v in arrays["test_batch"][1]]


# ----- Fashion-MNIST ---------------------------------------------------------------------------------------------
def _fashion_with(tmp_path, rng, prefix="train", images=None, labels=None):
    fashion_folder(tmp_path, rng, compress=False)
    if images is not None:
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images, compress=False)
    if labels is not None:
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    return tmp_path


def test_fashion_labels_above_9_are_refused(tmp_path, rng):
    root = _fashion_with(tmp_path, rng, labels=np.array([0] * 11 + [10]))
    with pytest.raises(ValueError, match="train labels must be 0..9, found 10"):
        _formats.load_fashion_mnist(root)


def test_fashion_images_and_labels_of_different_counts_are_refused(tmp_path, rng):
    root = _fashion_with(tmp_path, rng, prefix="t10k", labels=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"t10k images \(5, 28, 28\) and labels \(4,\) do not match"):
        _formats.load_fashion_mnist(root)


def test_idx_files_of_other_element_types_or_with_trailing_bytes_are_refused(tmp_path, rng):
    root = _fashion_with(tmp_path, rng)
    path = root / "train-labels-idx1-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match=r"header says shape \(12,\) but the file holds 13 values"):
        _formats.load_fashion_mnist(root)
    path.write_bytes(raw[:2] + b"\x0b" + raw[3:])  # 0x0B: 2-byte integers
    with pytest.raises(ValueError, match="is not an unsigned-byte IDX file"):
        _formats.load_fashion_mnist(root)


def test_fashion_files_named_with_a_dot_idx_are_found(tmp_path, rng):
    arrays = fashion_folder(tmp_path, rng, compress=True)
    for f in tmp_path.iterdir():
        f.rename(f.with_name(f.name.replace("-idx", ".idx")))
    _, (train_x, _), (_, test_y) = _formats.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(train_x[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(test_y, arrays["t10k"][1])


def test_only_the_default_fashion_folder_gets_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(_formats, "FASHION_MNIST_DIR", str(tmp_path / "default"))
    with pytest.raises(FileNotFoundError, match="install Debian's dataset-fashion-mnist package"):
        _formats.load_fashion_mnist()
    with pytest.raises(FileNotFoundError) as caught:
        _formats.load_fashion_mnist(tmp_path / "mine")
    assert str(caught.value) == f"Fashion-MNIST folder {tmp_path / 'mine'} does not exist"


# ----- the built-in data set -------------------------------------------------------------------------------------
def test_builtin_splits_are_read_only_and_validation_is_not_training_drawn_again():
    (train_x, train_y), (val_x, val_y) = _builtin.builtin_arrays(20, 20)
    assert not any(a.flags.writeable for a in (train_x, train_y, val_x, val_y))  # shared through the cache
    assert not np.array_equal(train_x, val_x)  # another seed: no validation image is a training image
    assert train_y[:10].tolist() != list(range(10))  # classes shuffled, not in turn


def test_every_builtin_class_has_its_own_shape():
    size = 24
    grid = np.arange(size, dtype=np.float32) + 0.5
    v, u = np.broadcast_arrays((grid[:, None] - size / 2) / 8, (grid[None, :] - size / 2) / 8)
    n = len(_builtin.CLASSES)
    ones = np.ones((n, 1, 1), np.float32)
    masks = _builtin._shape_masks(np.arange(n), np.broadcast_to(u, (n, size, size)),
                                  np.broadcast_to(v, (n, size, size)), 3 * np.pi * ones, 0.3 * ones)
    for i in range(n):
        assert masks[i].any() and not masks[i].all(), _builtin.CLASSES[i]
        for j in range(i):
            assert (masks[i] != masks[j]).any(), (_builtin.CLASSES[i], _builtin.CLASSES[j])
