"""Datasets and load_dataset(): every source becomes the same Splits of uint8 NHWC images."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import _backend as B
from .._backend import available_memory  # (tests patch it here, where it is looked up)
from . import _builtin, _folder, _formats, _store
from ._stats import compute_stats


class Dataset:
    """Images uint8 (N, H, W, 3) (a numpy array or a read-only memmap), labels int64 (N,).

    `skipped` lists (path, reason) for images left out because they could not be read.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], skipped=()) -> None:
        images = np.asarray(images) if not isinstance(images, np.memmap) else images
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" and labels.size:  # a cast would truncate 1.7 to 1 without a word
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"labels must be in 0..{len(classes) - 1}, found {labels.min()}..{labels.max()}")
        self.images = images
        self.labels = labels
        self.classes = list(classes)
        self.skipped = list(skipped)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __repr__(self) -> str:
        return f"Dataset({len(self)} images of {self.images.shape[1]}x{self.images.shape[2]}, {len(self.classes)} classes)"


def crop_size_for(image_size: int) -> int:
    """The paper's 224 of 256: 7/8 of the side, rounded down (32 -> 28, 28 -> 24)."""
    return max(1, image_size * 7 // 8)


def smallest_image_size(preset: str) -> int:
    """The smallest image side whose crops (crop_size_for) the preset's network takes: below it the maps
    vanish before fc6 (18 for "small", which trains every crop under 96 px). Every crop from the network's
    smallest input up fits, and crops grow with the side."""
    from ..model import smallest_input_size

    least = smallest_input_size(preset)  # an unknown preset says so
    return next(side for side in range(1, 8 * least + 9) if crop_size_for(side) >= least)


def summary(value) -> str:
    """`value` for a repr, in one short line: an array as its dtype and shape (a mean image printed as some hundred
    lines of numbers), a list of more than five items as its first five and how many in all (ImageNet's thousand
    class names)."""
    if isinstance(value, np.ndarray):
        return f"<{value.dtype} array {value.shape}>"
    if isinstance(value, (list, tuple)) and len(value) > 5:
        left, right = "[]" if isinstance(value, list) else "()"
        return left + ", ".join(repr(v) for v in value[:5]) + f", ... ({len(value)} in all)" + right
    return repr(value)


@dataclasses.dataclass(repr=False)
class Splits:
    """A training and a validation Dataset with what augmentation needs.

    mean_image: float32 (image_size, image_size, 3), the training set's mean, in 0..255 pixel units.
    eigvals (3,), eigvecs (3, 3) (columns): the RGB covariance of training pixels on the 0..1 scale
    (pixel / 255), descending. val is the data set's official test split where it has one.
    held_out: for an image folder, {"seed", "val_fraction"} that chose its held-out images (load_dataset's; unused
    beside a val/): what train() records, so a model trained on these Splits is tested on the same ones.
    """

    train: Dataset
    val: Dataset
    classes: list
    image_size: int
    crop_size: int
    mean_image: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    source: str = ""
    held_out: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_skipped(self) -> int:
        return self.train.num_skipped + self.val.num_skipped

    def __repr__(self) -> str:
        # One line: the dataclass's printed the mean image and the colour statistics in full, some fifty lines at
        # the end of a notebook cell (`splits` alone, or a TrainResult, which holds two copies).
        return "Splits(" + ", ".join(f"{f.name}={summary(getattr(self, f.name))}"
                                     for f in dataclasses.fields(self)) + ")"

    def loader(self, split: str, batch_size: int, **kwargs):
        """A Loader over `split` ("train" or "val") with this data set's crop size and statistics; training
        mode for "train" unless train= is given."""
        from ._loader import Loader

        kwargs.setdefault("train", split == "train")
        for k in ("crop_size", "mean_image", "eigvals", "eigvecs"):
            kwargs.setdefault(k, getattr(self, k))
        return Loader(getattr(self, split), batch_size, **kwargs)


def _splits_from_arrays(train, val, classes, source, crop_size=None, skipped=((), ())) -> Splits:
    train_ds = Dataset(train[0], train[1], classes, skipped[0])
    val_ds = Dataset(val[0], val[1], classes, skipped[1])
    if len(train_ds) == 0:
        raise ValueError(f"{source}: the training split has no readable images")
    empty = [str(c) for c, n in zip(classes, np.bincount(train_ds.labels, minlength=len(classes))) if n == 0]
    if empty and skipped[0]:  # every image of a class unreadable: said one by one, then trained without a word
        B.warn_user(f"{source}: no training image of {len(empty)} class(es) could be read "
                    f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}): the network never sees them")
    size = train_ds.images.shape[1]
    mean_image, eigvals, eigvecs = compute_stats(train_ds.images)
    return Splits(train_ds, val_ds, list(classes), size, crop_size or crop_size_for(size), mean_image, eigvals,
                  eigvecs, source)


def _check_fits_in_memory(path, n: int, image_size: int) -> None:
    """Refuses, before hours of decoding, a folder whose decoded images would not fit in memory."""
    need, free = n * image_size * image_size * 3, available_memory()
    if free is not None and need > 0.8 * free:
        raise MemoryError(
            f"decoding the {n} images of {path} at {image_size}x{image_size} needs {B.byte_size(need)}, more than "
            f"the {B.byte_size(free)} of memory free here can hold. Decode them once into a memory-mapped store and "
            f"train from that: pyalexnet prepare {path} STORE, then --data STORE")


def load_dataset(spec=None, *, seed: int = 0, val_fraction: float = 0.1, image_size: int | None = None,
                 workers: int | None = None, progress: bool | None = None, train_sample: int | None = None,
                 note_small_images: bool = False) -> Splits:
    """Loads a data set as Splits.

    spec: None or "builtin" (synthetic, 40x40, crop 32, made in the package) | "fashion-mnist" (Debian's
    dataset-fashion-mnist at /usr/share/datasets/fashion-mnist) | "fashion-mnist:PATH" | "cifar10:PATH"
    (the folder of data_batch_1..5 and test_batch, the folder above it, or the downloaded
    cifar-10-python.tar.gz) | a folder root/<class>/<image> (or root/train and
    root/val; otherwise `val_fraction` of each class, chosen by `seed`, is held out), decoded with Pillow
    to `image_size` (default 256; shorter side resized, centre crop) | a store written by `pyalexnet prepare`.
    Other sources have their own image size and validation split: an image_size other than theirs, or a
    val_fraction other than the default 0.1, is a ValueError, not ignored (a folder with its own val/ images
    warns that val_fraction is not used).
    Folders are decoded into memory by `workers` threads, with a progress bar (progress: default on a
    terminal or in a Jupyter notebook); one that would not fit in memory is a MemoryError at once: prepare big
    ones instead.
    train_sample: keep only this many of the training images (a fixed random sample, by `seed`): what testing
    a model needs (its checkpoint holds the training mean). A folder decodes only those, without decoding a
    training set that may not fit in memory, and takes the mean image and colour statistics from them, as do
    builtin, Fashion-MNIST and CIFAR-10; a store keeps the statistics of all its training images, computed
    when it was prepared. note_small_images: warn when a folder's
    images (a sample's median shorter side) are under half of image_size, which enlarges them (train() asks
    for it when image_size was not given).
    """
    if train_sample is not None:
        train_sample = B.integer(train_sample, "train_sample", low=1, high=2**63 - 1)
    # Checked here as the command line checks them (image_size=0 warned of every image, then divided by zero;
    # seed=-1 was numpy's "expected non-negative integer", naming nothing).
    asked = None if image_size is None else B.integer(image_size, "image_size", low=1)
    seed = B.integer(seed, "seed", low=0, high=2**64 - 1)
    splits = _load(spec, seed, val_fraction, 256 if asked is None else asked, workers, progress, train_sample,
                   note_small_images)
    if asked is not None and splits.image_size != asked:  # it was ignored without a word
        raise ValueError(f"image_size={asked} sets the side an image folder is decoded to; {splits.source} "
                         f"holds its own {splits.image_size}x{splits.image_size} images (leave image_size out)")
    return splits


def is_image_folder(spec) -> bool:
    """Whether load_dataset(spec) reads spec as an image folder (a path that is not there counts: loading says
    so), not as builtin, Fashion-MNIST, CIFAR-10 or a store, the sources with their own image size and their own
    validation split. Callers with a size of their own (a checkpoint's) pass image_size only to a folder."""
    spec = str(spec) if isinstance(spec, Path) else spec
    if spec is None or spec == "builtin" or spec.partition(":")[0] in ("fashion-mnist", "cifar10"):
        return False
    path = Path(spec).expanduser()
    return not (_store.is_store(path) or _store.looks_like_store(path))


DEFAULT_VAL_FRACTION = 0.1  # load_dataset's; callers pass it through for every source (train, eval)


def _refuse_val_fraction(val_fraction, source: str, hint: str = "") -> None:
    """For a source with its own validation split: a val_fraction asked for was ignored without a word. The
    words are train()'s, whose option (--val-fraction) reaches here."""
    if val_fraction != DEFAULT_VAL_FRACTION:
        raise ValueError(f"val_fraction (--val-fraction) is the share an image folder without val/ holds out; "
                         f"{source} has its own validation split{hint}")


def _sample_indices(n: int, train_sample, seed: int):
    """Sorted indices of a fixed random `train_sample` of n training images (by `seed`); None for all."""
    if train_sample is None or train_sample >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, train_sample, replace=False))


def _sampled(arrays, train_sample, seed: int):
    """(images, labels) of a source read whole, cut to its train_sample."""
    keep = _sample_indices(len(arrays[1]), train_sample, seed)
    return arrays if keep is None else (arrays[0][keep], arrays[1][keep])


def _load(spec, seed, val_fraction, image_size, workers, progress, train_sample, note_small_images) -> Splits:
    spec = "builtin" if spec is None else spec
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset spec must be a name or a path, got {spec!r}")
    name, _, arg = spec.partition(":")
    # ~ expanded here: the shell leaves it alone after "cifar10:" (and in quotes). Paths are recorded
    # absolute (Splits.source, and so a checkpoint's "data"): eval and --resume from another folder find them.
    arg = str(Path(arg).expanduser().resolve()) if arg and name in ("fashion-mnist", "cifar10") else arg
    if spec == "builtin" or name in ("fashion-mnist", "cifar10"):  # read whole, with their own test split
        if name == "cifar10" and not arg:
            raise ValueError("cifar10 needs the folder of its python batches or their archive: cifar10:PATH "
                             f"(download {_formats.CIFAR10_URL})")
        source = f"{name}:{arg}" if arg else spec
        _refuse_val_fraction(val_fraction, source)  # before reading it
        crop = None
        if spec == "builtin":
            (train, test), classes, crop = _builtin.builtin_arrays(), _builtin.CLASSES, _builtin.CROP_SIZE
        elif name == "fashion-mnist":
            classes, train, test = _formats.load_fashion_mnist(arg or None)
        else:
            classes, train, test = _formats.load_cifar10(arg)
        return _splits_from_arrays(_sampled(train, train_sample, seed), test, classes, source, crop)
    path = Path(spec).expanduser()
    if not path.exists():
        if ":" in spec and len(name) > 1 or not any(c in spec for c in "/\\."):
            raise ValueError(f"unknown dataset {spec!r} (and no folder of that name here): use builtin, "
                             "fashion-mnist[:PATH], cifar10:PATH, an image folder or a prepared store")
        raise FileNotFoundError(f"dataset folder {path} does not exist")
    path = path.resolve()
    if _store.is_store(path) or _store.looks_like_store(path):  # a damaged one is said to be one
        _refuse_val_fraction(val_fraction, str(path), " (a store's is made by prepare --val-fraction)")
        splits = _store.open_store(path)
        keep = _sample_indices(len(splits.train), train_sample, seed)
        if keep is not None:  # read from the memory map: only these images come into memory
            t = splits.train
            splits.train = Dataset(t.images[keep], t.labels[keep], t.classes, t.skipped)
        return splits
    classes, train_files, val_files = _folder.list_folder(path, val_fraction=val_fraction, seed=seed)
    if val_fraction != DEFAULT_VAL_FRACTION and _folder.has_own_validation_images(path):
        # (said here for train too; a resumed run or eval passes a run's value back only where it is used)
        B.warn_user(f"{path} has its own val/ images: val_fraction (--val-fraction) {val_fraction:g} is not used")
    keep = _sample_indices(len(train_files), train_sample, seed)
    if keep is not None:
        train_files = [train_files[i] for i in keep]
    _check_fits_in_memory(path, len(train_files) + len(val_files), image_size)
    if note_small_images:
        side = _folder.median_short_side(train_files, seed=seed)
        if side is not None and 2 * side < image_size:  # 48 px images went to 256 and the paper network, unsaid
            B.warn_user(f"the images in {path} are small (a sample's shorter sides: {side} px at the median): they "
                        f"are enlarged to {image_size}x{image_size}; --image-size {max(side, smallest_image_size('small'))} "
                        "(image_size=) decodes them near their own size, and trains the small network on them")
    w = workers or _folder.default_workers()
    show = B.show_progress(progress)
    *train, train_skipped = _folder.decode_many(train_files, image_size, workers=w, progress=show,
                                                desc="decoding training images")
    *val, val_skipped = _folder.decode_many(val_files, image_size, workers=w, progress=show,
                                            desc="decoding validation images")
    splits = _splits_from_arrays(train, val, classes, str(path), skipped=(train_skipped, val_skipped))
    splits.held_out = {"seed": seed, "val_fraction": val_fraction}
    return splits
