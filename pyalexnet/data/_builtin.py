"""The "builtin" data set: synthetic RGB images generated in the package, with no file or download.

Ten classes, each a kind of shape or texture. Everything else is a random nuisance drawn per image: the
foreground and background colours, a background gradient, the position and the scale of the shape, and
pixel noise. Because colour, position and scale vary independently of the class, no linear function of
the pixels separates the classes (tests/test_data_builtin.py checks a least-squares classifier stays near
chance), while a small convnet, which detects local shapes wherever they are, can learn them.
"""
from __future__ import annotations

import functools

import numpy as np

CLASSES = ["disk", "ring", "square", "square-outline", "plus", "x-cross", "triangle", "horizontal-stripes",
           "vertical-stripes", "checkerboard"]
IMAGE_SIZE = 40
CROP_SIZE = 32
TRAIN_SIZE = 5000
VAL_SIZE = 1000
_SEED = 20121203  # fixed: "builtin" is one data set, the same on every machine
_CHUNK = 128  # images generated together (their float64 temporaries stay in cache)


def _shape_masks(labels, u, v, freq, phase):
    """Boolean foreground masks (n, S, S); u, v are pixel coordinates relative to the shape's centre, in
    units of its radius; freq, phase (n, 1, 1) shape the textures."""
    r = np.sqrt(u * u + v * v)
    a, b = np.abs(u), np.abs(v)
    box = np.maximum(a, b)
    disk = r <= 1.0
    masks = np.empty(u.shape, bool)
    rules = {
        0: lambda k: disk[k],
        1: lambda k: (r[k] >= 0.55) & disk[k],
        2: lambda k: box[k] <= 0.8,
        3: lambda k: (box[k] >= 0.5) & (box[k] <= 0.85),
        4: lambda k: ((a[k] <= 0.28) & (b[k] <= 1.0)) | ((b[k] <= 0.28) & (a[k] <= 1.0)),
        5: lambda k: ((np.abs(u[k] - v[k]) <= 0.38) | (np.abs(u[k] + v[k]) <= 0.38)) & (box[k] <= 0.9),
        6: lambda k: (v[k] >= -0.85) & (v[k] <= 0.85) & (a[k] <= (v[k] + 0.85) / 1.7),
        7: lambda k: disk[k] & (np.sin(freq[k] * v[k] + phase[k]) > 0),
        8: lambda k: disk[k] & (np.sin(freq[k] * u[k] + phase[k]) > 0),
        9: lambda k: disk[k] & (np.sin(freq[k] * u[k] + phase[k]) * np.sin(freq[k] * v[k] + phase[k]) > 0),
    }
    for label, rule in rules.items():
        k = np.flatnonzero(labels == label)
        if len(k):
            masks[k] = rule(k)
    return masks


def generate(n: int, seed: int, size: int = IMAGE_SIZE):
    """uint8 images (n, size, size, 3) and int64 labels (n,), balanced over the classes, fully determined
    by (n, seed, size)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    radius = rng.uniform(0.16, 0.30, n) * size
    cy = rng.uniform(radius + 1, size - 1 - radius)
    cx = rng.uniform(radius + 1, size - 1 - radius)
    freq = rng.uniform(2.5, 3.5, n) * np.pi  # 2.5 to 3.5 stripe periods across the shape
    phase = rng.uniform(0, 2 * np.pi, n)
    bg = rng.uniform(0, 255, (n, 3))
    fg = rng.uniform(0, 255, (n, 3))
    # Keep the shape visible: where the two colours are too alike, take the foreground's complement.
    weak = np.abs(fg - bg).mean(axis=1) < 60
    fg[weak] = 255 - bg[weak]
    gradient = rng.uniform(-40, 40, (n, 2, 3))  # background brightness change across the image, per channel

    grid = (np.arange(size, dtype=np.float32) + 0.5)
    t = (grid / size - 0.5).astype(np.float32)
    f3 = lambda a: a[:, None, None].astype(np.float32)  # noqa: E731
    images = np.empty((n, size, size, 3), np.uint8)
    # A chunk of images at a time, each step as for all at once (the same bits; the noise is drawn in the
    # same order): whole-set float64 temporaries of n*size*size*3 went through memory five times, 4.5 s
    # of the 5000 training images' 4.8.
    for i in range(0, n, _CHUNK):
        k = slice(i, min(n, i + _CHUNK))
        r_ = radius[k, None, None].astype(np.float32)
        v = (grid[None, :, None] - cy[k, None, None].astype(np.float32)) / r_
        u = (grid[None, None, :] - cx[k, None, None].astype(np.float32)) / r_
        u, v = np.broadcast_arrays(u, v)
        mask = _shape_masks(labels[k], u, v, f3(freq[k]), f3(phase[k]))
        background = (bg[k, None, None, :].astype(np.float32) + t[None, :, None, None] * gradient[k, None, None, 0, :]
                      + t[None, None, :, None] * gradient[k, None, None, 1, :].astype(np.float32))
        chunk = np.where(mask[..., None], fg[k, None, None, :].astype(np.float32), background)
        chunk += 8 * rng.standard_normal(chunk.shape, dtype=np.float32)
        images[k] = np.clip(np.rint(chunk), 0, 255)
    return images, labels


@functools.lru_cache(maxsize=2)
def builtin_arrays(train_size: int = TRAIN_SIZE, val_size: int = VAL_SIZE):
    """((train_images, train_labels), (val_images, val_labels)), generated once per process and cached."""
    train = generate(train_size, _SEED)
    val = generate(val_size, _SEED + 1)
    for a in (*train, *val):
        a.flags.writeable = False  # shared by every caller through the cache
    return train, val
