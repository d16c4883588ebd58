"""CIFAR-10 python batches and Fashion-MNIST IDX files."""
from __future__ import annotations

import gzip
import io
import math
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
# Debian's dataset-fashion-mnist package (apt install dataset-fashion-mnist) puts the files here.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist (data/fashion: four .gz files)"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"  # what the archive unpacks to
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"  # the download's name
_CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class _ArraysOnly(pickle.Unpickler):
    """CIFAR batches are pickles: allow only what a dict of numpy arrays and lists needs, so a hostile file
    cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _unpickle(path, data: bytes | None = None) -> dict:
    """The dict pickled in the file `path` (or in `data`, read from an archive; path then names it)."""
    try:
        with (open(path, "rb") if data is None else io.BytesIO(data)) as f:
            d = _ArraysOnly(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch (a pickled dict), got {type(d).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_batch(path, data: bytes | None = None):
    d = _unpickle(path, data)
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path}: a CIFAR-10 batch needs b'data' and b'labels', found {sorted(map(str, d))}")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1:  # (was "5 images but 5 labels" of a 5x1 list)
        raise ValueError(f"{path}: b'labels' must be a flat list of numbers, got shape {labels.shape}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {labels.size} labels")
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9):
        bad = labels[(labels < 0) | (labels > 9)] if labels.dtype.kind in "iu" else labels[:3]
        raise ValueError(f"{path}: labels must be integers 0..9, found {bad[:5].tolist()}")
    # Rows are 1024 R, then G, then B values, each a row-major 32x32 plane.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels.astype(np.int64)


def _cifar_archive(path: Path) -> dict:
    """{file name: bytes} of the CIFAR-10 batches in the downloaded archive, read without unpacking it.

    Read as a stream to its end, so that gzip checks its CRC: tarfile alone stops at the archive's end marker
    and never reaches it, so flipped bits came through as wrong pixels, and a damaged header in the middle
    ended the listing early (reported as missing batches)."""
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
            found = {}
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    name = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and name in _CIFAR10_FILES + ["batches.meta"]:
                        found[name] = tar.extractfile(member).read()
            while stream.read(1 << 20):  # the rest (padding), to the gzip trailer's checks
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable CIFAR-10 archive (a .tar.gz of {CIFAR10_FOLDER}/): {exc}; "
                         f"a download that ends so is damaged or incomplete: download it again from "
                         f"{CIFAR10_URL}") from exc
    missing = [n for n in _CIFAR10_FILES if n not in found]
    if missing:
        raise FileNotFoundError(f"the archive {path} lacks {', '.join(missing)}: CIFAR-10's python version is "
                                f"{CIFAR10_URL}")
    return found


def load_cifar10(root):
    """(classes, (train_images, train_labels), (test_images, test_labels)) from cifar-10-batches-py, the
    folder it is in, or the downloaded cifar-10-python.tar.gz itself (or a folder holding only that)."""
    root = Path(root)
    if root.is_dir() and not (root / "data_batch_1").exists() and not (root / CIFAR10_FOLDER).is_dir() \
            and (root / CIFAR10_ARCHIVE).is_file():
        root = root / CIFAR10_ARCHIVE  # the download folder, not unpacked
    if root.is_file():
        files = _cifar_archive(root)
        where = {n: f"{root}:{n}" for n in files}
    else:
        if root.is_dir() and not (root / "data_batch_1").exists() and (root / CIFAR10_FOLDER).is_dir():
            root = root / CIFAR10_FOLDER  # the folder the archive was unpacked in
        if not root.is_dir():
            raise FileNotFoundError(f"CIFAR-10 folder {root} does not exist (expected data_batch_1..5 and "
                                    f"test_batch, or the archive: download {CIFAR10_URL})")
        missing = [n for n in _CIFAR10_FILES if not (root / n).is_file()]
        if missing and all((root / f"{n}.bin").is_file() for n in missing):
            raise ValueError(f"{root} holds CIFAR-10's binary version (data_batch_1.bin, ...); pyalexnet reads the "
                             f"python version: {CIFAR10_URL}")
        if missing:
            raise FileNotFoundError(f"CIFAR-10 folder {root} lacks {', '.join(missing)} (CIFAR-10's python "
                                    f"version: {CIFAR10_URL})")
        files = {n: None for n in _CIFAR10_FILES + ["batches.meta"] if (root / n).is_file()}
        where = {n: root / n for n in files}
    train = [_cifar_batch(where[n], files[n]) for n in _CIFAR10_FILES[:5]]
    test = _cifar_batch(where["test_batch"], files["test_batch"])
    classes = CIFAR10_CLASSES
    if "batches.meta" in files:
        meta = _unpickle(where["batches.meta"], files["batches.meta"])
        names_ = meta.get("label_names")
        if names_ is not None and len(names_) == 10:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names_]
    return classes, (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])), test


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:  # a cut header read as zeros: "shape (0, 0, 0) but the file holds -10 values"
        raise ValueError(f"{path}: cut short in its header ({len(raw)} bytes, the header of {ndim} dimensions "
                         f"takes {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + math.prod(shape):  # Python ints: np.prod wrapped 2^31 * 2^31 * 4 to 0
        raise ValueError(f"{path}: header says shape {shape} but the file holds {len(raw) - header} values")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"Fashion-MNIST folder {root} lacks {stem}[.gz]")


def load_fashion_mnist(root=None):
    """(classes, train, test) from IDX files (gzip or raw), grayscale repeated to 3 channels."""
    root = Path(root or FASHION_MNIST_DIR)
    if not root.is_dir():
        hint = (" (install Debian's dataset-fashion-mnist package, or download the files from "
                f"{FASHION_MNIST_URL} and pass fashion-mnist:PATH)") if str(root) == FASHION_MNIST_DIR else ""
        raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist{hint}")
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{root}: {prefix} images {images.shape} and labels {labels.shape} do not match")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{root}: {prefix} labels must be 0..9, found {int(labels.max())}")
        # Checked here: a non-square set failed in the mean image with numpy's broadcast error, and a test split
        # of another size at the first validation batch, after a training epoch.
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"{root}: {prefix} images of {images.shape[1]}x{images.shape[2]} pixels: square ones "
                             f"expected (Fashion-MNIST's are 28x28)")
        if splits and images.shape[1:] != splits[0][0].shape[1:3]:
            raise ValueError(f"{root}: {prefix} images are {images.shape[1]}x{images.shape[2]} and train images "
                             f"{splits[0][0].shape[1]}x{splits[0][0].shape[2]}: both splits must have one size")
        splits.append((np.repeat(images[..., None], 3, axis=3), labels.astype(np.int64)))
    return FASHION_MNIST_CLASSES, splits[0], splits[1]
