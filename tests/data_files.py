"""Small data sets written by the tests: image folders, CIFAR-10 batches, Fashion-MNIST IDX files."""
import gzip
import pickle

import numpy as np
from PIL import Image


def write_image(path, rng, size=(30, 20), ext=".png", mode="RGB"):
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode)
    path = path.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=95) if ext == ".jpg" else im.save(path)
    return path


def image_folder(root, rng, classes=("cat", "dog", "eel"), per_class=4, ext=".png"):
    """root/<class>/<i>.<ext>, images of varying sizes and modes."""
    for c in classes:
        for i in range(per_class):
            size = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
            write_image(root / c / f"{i:03d}", rng, size, ext, mode="L" if i == 1 else "RGB")
    return root


def cifar_folder(root, rng, per_batch=6, labels=None):
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lab = list(rng.integers(0, 10, per_batch)) if labels is None else list(labels)
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [int(v) for v in lab], b"batch_label": name.encode()}, f)
        arrays[name] = (data, lab)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return arrays


def write_idx(path, arr, compress):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def fashion_folder(root, rng, compress, n_train=12, n_test=5):
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)
        out[prefix] = (images, labels)
    return out
