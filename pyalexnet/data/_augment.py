"""Crop, flip, PCA lighting and mean subtraction (the compiled kernel), and the random parameters.

Pixel scale: inputs stay in 0..255 units minus the mean image, as cuda-convnet fed them, so the paper's
N(0, 0.01) initialisation sees the same magnitudes.

Rule, exactly (kernels/augment.h): output image i, channel c, row y, column x is
    (image[src, top + y, left + x', c] - mean_image[top + y, left + x', c]) + lighting[i, c]
with x' = crop - 1 - x when the image is flipped, else x. That is, the mean image is cropped at the same
position and flipped with the image: the same as subtracting the full mean image before cropping.

PCA lighting (the paper's rule): alpha ~ N(0, pca_std) per image and per presentation, and every pixel
gets 255 * eigvecs @ (alpha * eigvals), where eigvals/eigvecs describe the RGB covariance on the 0..1
scale (so the shift is in 0..255 units).
"""
from __future__ import annotations

import numpy as np

from .. import _backend as B
from .._backend import _C


def _xp(a):
    return B.cupy_module() if B.is_gpu_array(a) else np


def augment(images, crop_size: int, mean_image, *, offsets=None, flips=None, lighting=None, index=None):
    """float32 (n, 3, crop, crop) from uint8 NHWC `images` (numpy, or CuPy for the CUDA kernel).

    index (n,) int64: which image each output comes from (default: all, in order); offsets (n, 2) int32:
    crop (top, left) (default: centred); flips (n,) uint8 0/1 (default: none); lighting (n, 3) float32
    (default: zeros). The parameters may be numpy arrays also for CuPy images: they are checked on the
    host, then uploaded.
    """
    xp = _xp(images)
    if not hasattr(images, "dtype") or images.dtype != np.uint8:
        raise TypeError(f"argument 'images' must be a uint8 array (N, H, W, 3), got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"argument 'images' must be (N, H, W, 3), got shape {tuple(images.shape)}")
    num, height, width = images.shape[:3]
    crop = B.integer(crop_size, "crop_size")  # 3.9 was cut to 3
    if not 1 <= crop <= min(height, width):
        raise ValueError(f"crop_size {crop} must be between 1 and the image size {height}x{width}")
    index = np.arange(num, dtype=np.int64) if index is None else _host(index, np.int64, "index")
    n = len(index)
    if offsets is None:
        offsets = np.tile(np.array([(height - crop) // 2, (width - crop) // 2], np.int32), (n, 1))
    offsets = _host(offsets, np.int32, "offsets")
    flips = np.zeros(n, np.uint8) if flips is None else _host(flips, np.uint8, "flips")
    lighting = np.zeros((n, 3), np.float32) if lighting is None else _host(lighting, np.float32, "lighting")
    if offsets.shape != (n, 2) or flips.shape != (n,) or lighting.shape != (n, 3):
        raise ValueError(f"offsets {offsets.shape}, flips {flips.shape} and lighting {lighting.shape} must be "
                         f"({n}, 2), ({n},) and ({n}, 3) for {n} crops")
    if n and (index.min() < 0 or index.max() >= num):
        raise ValueError(f"argument 'index' must be in [0, {num}), got {index.min()}..{index.max()}")
    if n and (offsets.min() < 0 or (offsets[:, 0] + crop).max() > height or (offsets[:, 1] + crop).max() > width):
        raise ValueError(f"argument 'offsets': a {crop}x{crop} crop leaves the {height}x{width} image")
    if n and flips.max() > 1:
        raise ValueError("argument 'flips' must hold 0 or 1")
    if xp is not np:
        with B.launch(images) as l:
            mean_image = B.contiguous(xp.asarray(mean_image, xp.float32), xp)
            _check_mean(mean_image, height, width)
            params = [xp.asarray(a) for a in (index, offsets, flips, lighting)]
            out = xp.empty((n, 3, crop, crop), xp.float32)
            _C.augment(xp.ascontiguousarray(images), mean_image, *params, out, l.stream)
        return out
    mean_image = B.as_input(mean_image, "mean_image")
    _check_mean(mean_image, height, width)
    images = np.ascontiguousarray(images)  # no copy when already contiguous: a memmap is read in place
    out = np.empty((n, 3, crop, crop), np.float32)
    _C.augment(images, mean_image, index, offsets, flips, lighting, out, 0)
    return out


def _check_mean(mean_image, height, width):
    if tuple(mean_image.shape) != (height, width, 3):
        raise ValueError(f"argument 'mean_image' must have shape ({height}, {width}, 3), got {tuple(mean_image.shape)}")


def _host(a, dtype, name):
    a, want = B.to_host(a), np.dtype(dtype)
    if a.dtype.kind not in ("f" if want.kind == "f" else "iub"):
        raise TypeError(f"argument '{name}' must be {want.name}-compatible, got {a.dtype}")
    if want.kind in "iu" and a.dtype != want and a.size:
        # Checked before the cast, which would wrap an offset of 2**32 to 0 and a flip of 257 to 1.
        lo, hi, limits = int(a.min()), int(a.max()), np.iinfo(want)
        if lo < limits.min or hi > limits.max:
            raise ValueError(f"argument '{name}' holds {lo if lo < limits.min else hi}, outside {want.name}")
    return B.contiguous(np.asarray(a, want), np)


def center_crop(images, crop_size: int, mean_image):
    """The test-time input: the centred crop minus the mean image's centred crop, float32 NCHW."""
    return augment(images, crop_size, mean_image)


def ten_crops(images, crop_size: int, mean_image, *, patch: int | None = None):
    """float32 (10, N, 3, crop, crop): the four corners (top-left, top-right, bottom-left, bottom-right)
    and the centre, then the same five flipped horizontally (the paper's test-time patches).

    patch=k gives only the k-th, (N, 3, crop, crop): a tenth of the memory (a batch of 128 ImageNet
    images' ten patches take 770 MB)."""
    num, height, width = images.shape[:3]
    c = B.integer(crop_size, "crop_size")  # as augment: int() cut 3.9 to 3 and took True as 1
    if not 1 <= c <= min(height, width):
        raise ValueError(f"crop_size {c} must be between 1 and the image size {height}x{width}")
    corners = [(0, 0), (0, width - c), (height - c, 0), (height - c, width - c), ((height - c) // 2, (width - c) // 2)]
    patch = None if patch is None else B.integer(patch, "patch")  # True was patch 1
    patches = range(10) if patch is None else [patch]
    if patch is not None and patch not in range(10):
        raise ValueError(f"patch must be 0..9, got {patch!r}")
    offsets = np.repeat(np.array([corners[k % 5] for k in patches], np.int32), num, axis=0)
    flips = np.repeat(np.array([k >= 5 for k in patches], np.uint8), num)
    index = np.tile(np.arange(num, dtype=np.int64), len(patches))
    out = augment(images, c, mean_image, offsets=offsets, flips=flips, index=index)
    return out if patch is not None else out.reshape(10, num, 3, c, c)


def lighting_offsets(alpha, eigvals, eigvecs) -> np.ndarray:
    """float32 (n, 3): 255 * eigvecs @ (alpha_i * eigvals) for each row alpha_i of `alpha` (n, 3)."""
    alpha = np.asarray(alpha, np.float64)
    return (255.0 * (alpha * np.asarray(eigvals, np.float64)) @ np.asarray(eigvecs, np.float64).T).astype(np.float32)


def random_parameters(rng: np.random.Generator, n: int, image_size: int, crop_size: int, *, eigvals=None,
                      eigvecs=None, pca_std: float = 0.1, flip: bool = True):
    """Training-time (offsets, flips, lighting) for n images of image_size (a side, or (height, width)),
    drawn from `rng` in a fixed order: tops, lefts, flips, alphas. Uniform crop positions, flips with
    probability 1/2, alpha ~ N(0, pca_std)."""
    # Both sides: with the height's span alone, 16x40 images were cropped only from their left 16 columns
    # (and 40x16 ones failed at the first batch with crops leaving the image).
    height, width = (image_size, image_size) if np.ndim(image_size) == 0 else image_size
    offsets = np.stack([rng.integers(0, height - crop_size + 1, n), rng.integers(0, width - crop_size + 1, n)],
                       axis=1).astype(np.int32)
    flips = (rng.random(n) < 0.5).astype(np.uint8)
    alpha = pca_std * rng.standard_normal((n, 3))
    if not flip:
        flips[:] = 0
    if eigvals is None or eigvecs is None or pca_std == 0:
        lighting = np.zeros((n, 3), np.float32)
    else:
        lighting = lighting_offsets(alpha, eigvals, eigvecs)
    return offsets, flips, lighting
