"""The builtin synthetic data set: deterministic, balanced, and not solvable by a linear model on pixels."""
import numpy as np

from pyalexnet.data import load_dataset
from pyalexnet.data._builtin import CLASSES, generate


def test_generation_is_deterministic():
    a_img, a_lab = generate(64, seed=11)
    b_img, b_lab = generate(64, seed=11)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = generate(64, seed=12)
    assert not np.array_equal(a_img, c_img)


def test_generation_does_not_depend_on_the_chunk_size(monkeypatch):
    # generate() works through the images a chunk at a time: any chunk size gives the same data set.
    from pyalexnet.data import _builtin
    whole = generate(300, seed=5)
    for chunk in (1, 7, 128, 299):
        monkeypatch.setattr(_builtin, "_CHUNK", chunk)
        got = generate(300, seed=5)
        np.testing.assert_array_equal(got[0], whole[0])
        np.testing.assert_array_equal(got[1], whole[1])


def test_splits_shape_balance_and_cache():
    s = load_dataset("builtin")
    assert s is not None and load_dataset(None).train.images is s.train.images  # generated once per process
    assert s.classes == CLASSES and s.num_classes == 10
    assert s.train.images.shape == (5000, 40, 40, 3) and s.val.images.shape == (1000, 40, 40, 3)
    assert s.image_size == 40 and s.crop_size == 32
    assert np.bincount(s.train.labels).tolist() == [500] * 10
    assert not np.array_equal(s.train.images[:100], s.val.images[:100])
    # Nuisances really vary within a class: mean colours of one class's images spread widely.
    disks = s.train.images[s.train.labels == 0].reshape(500, -1, 3).mean(1)
    assert disks.std(0).min() > 25


def _ridge_accuracy(xtr, ytr, xte, yte, lam):
    # Least squares on one-hot targets, solved in the dual (fewer samples than pixels).
    mu = xtr.mean(0)
    xtr, xte = xtr - mu, xte - mu
    targets = np.eye(10)[ytr]
    alpha = np.linalg.solve(xtr @ xtr.T + lam * np.eye(len(xtr)), targets - targets.mean(0))
    return float(((xte @ (xtr.T @ alpha)).argmax(1) == yte).mean())


def test_a_linear_classifier_on_pixels_does_poorly():
    s = load_dataset("builtin")
    n = 2500
    xtr = s.train.images[:n].reshape(n, -1).astype(np.float64) / 255
    xte = s.val.images.reshape(len(s.val), -1).astype(np.float64) / 255
    accs = [_ridge_accuracy(xtr, s.train.labels[:n], xte, s.val.labels, lam) for lam in (1.0, 100.0, 3000.0)]
    # The best regularisation, chosen on the test set itself (generous to the linear model), stays far
    # below what a small convnet reaches (chance is 10%).
    assert max(accs) < 0.35, accs


def _normalised_masks(images, k=16):
    """Shape masks with colour, position and scale taken out: the foreground (pixels far from the border's
    median colour), cropped to its bounding box and resampled to k x k."""
    x = images.astype(np.float32)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    mask = np.abs(x - np.median(border, axis=1)[:, None, None]).mean(-1) > 30
    out = np.zeros((len(images), k * k))
    for i, m in enumerate(mask):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(rows):
            r = np.linspace(rows[0], rows[-1], k).round().astype(int)
            c = np.linspace(cols[0], cols[-1], k).round().astype(int)
            out[i] = m[np.ix_(r, c)].ravel()
    return out


def test_the_classes_are_learnable_once_the_nuisances_are_removed():
    # The same linear classifier on nonlinear, colour/position/scale-invariant features separates the
    # classes well: the structure is there for a convnet to find.
    s = load_dataset("builtin")
    n = 2000
    acc = _ridge_accuracy(_normalised_masks(s.train.images[:n]), s.train.labels[:n], _normalised_masks(s.val.images),
                          s.val.labels, 10.0)
    assert acc > 0.75, acc
