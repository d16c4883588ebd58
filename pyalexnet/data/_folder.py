"""ImageNet-style folders: root/<class>/<image>, or root/train/<class>/... and root/val/<class>/...

Images are decoded with Pillow, converted to RGB, resized so the shorter side is `size` and centre-cropped
to size x size (the paper's preprocessing). Unreadable files are skipped with a warning and counted.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import re
import threading
from pathlib import Path

import numpy as np

from .. import _backend as B

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def visible_paths(folder: Path):
    """Everything under `folder`, recursively, but what is hidden (a name starting with '.', or inside such a
    folder: .thumbnails, .git), which training, evaluation and predict all leave out alike. Linked folders are
    followed (rglob left their images out without a word), each real folder once (a link to an ancestor would
    loop); folders that cannot be listed are passed over, as rglob did (the caller says so)."""
    seen = set()
    for where, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(where)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(where)
        yield from (base / d for d in dirs)
        yield from (base / f for f in sorted(files) if not f.startswith("."))


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _files_by_class(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) for every image under root/<class>/, sorted; a class folder with no image is an error."""
    out, broken = [], []
    read_as = {}  # real folder -> the class whose folder it was found in
    for label, name in enumerate(classes):
        d = root / name
        files, unread = [], []
        if d.is_dir():
            for p in visible_paths(d):
                if _is_image(p):
                    files.append(str(p))
                elif p.is_symlink() and not p.exists() and p.suffix.lower() in IMAGE_EXTENSIONS:
                    broken.append(str(p))  # skipped without a word before
                elif p.is_dir() and not os.access(p, os.R_OK | os.X_OK):
                    unread.append(p)  # rglob passes over a folder it cannot list
        # The real folders its images are in (a folder without images linked into two classes labels none twice).
        for real in sorted({os.path.realpath(folder) for folder in {os.path.dirname(f) for f in files}}):
            # through a link (a class folder linked to the data root, or a link to another class's folder): each
            # of its images would be trained with two labels
            if read_as.setdefault(real, name) != name:
                raise ValueError(f"the folder {real} is in two class folders, {root / read_as[real]} and {d} (through "
                                 f"a link): its images would be trained as both {read_as[real]!r} and {name!r}")
        if not os.access(d, os.R_OK | os.X_OK):
            unread.insert(0, d)
        if unread:
            raise PermissionError(f"{unread[0]} cannot be read (no permission): its images would be left out")
        if not files:
            raise ValueError(f"class folder {d} has no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        out += [(f, label) for f in sorted(files)]
    if broken:
        B.warn_user(f"{len(broken)} image link(s) under {root} point nowhere, left out: {', '.join(broken[:3])}"
                    + (", ..." if len(broken) > 3 else ""))
    return out


# Folder names that say a split, not a class: a root of only such folders, but not exactly train/ and val/ (which
# alone are read as splits), was read as a data set whose classes are its splits ("validation", "Val").
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing", "eval", "dev"})


def _refuse_split_named_classes(root: Path, classes: list[str]) -> None:
    if all(c.lower() in SPLIT_NAMES for c in classes):
        raise ValueError(f"{root}'s folders ({', '.join(classes)}) are named like splits, not classes; pyalexnet "
                         f"reads the splits from root/train and root/val, named exactly so: rename them (validation "
                         f"-> val, Train -> train), or give the folder of class folders itself")


def has_split_layout(root: Path) -> bool:
    """root/train and root/val; or root/train alone (beside at most a test/), its images' val share held out."""
    names = {d.name for d in _class_dirs(root)} if root.is_dir() else set()
    return (root / "train").is_dir() and ((root / "val").is_dir() or names <= {"train", "test"})


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(_is_image(p) for p in visible_paths(folder))


def _hold_out(files, num_classes: int, val_fraction: float, seed: int):
    """(train, val): a stratified `val_fraction` of each class's (path, label) files, chosen by `seed`."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_label = [[] for _ in range(num_classes)]  # one pass: a pass per class took 28 s over ImageNet's 1.28M
    for f in files:
        by_label[f[1]].append(f)
    train, val = [], []
    for label, mine in enumerate(by_label):
        order = rng.permutation(len(mine))
        n_val = int(round(val_fraction * len(mine)))
        if val_fraction > 0 and len(mine) >= 2:
            n_val = min(max(n_val, 1), len(mine) - 1)
        val += [mine[i] for i in sorted(order[:n_val])]
        train += [mine[i] for i in sorted(order[n_val:])]
    return train, val


# Labels for a val/ folder of images without class folders (ImageNet's own layout), looked for in root and
# the folders above it: Kaggle's LOC_val_solution.csv ("ImageId,PredictionString" rows whose string starts
# with the class), or val_labels.txt (lines "FILE CLASS", FILE with or without its extension).
VAL_LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")


def _read_val_labels(path: Path) -> dict[str, str]:
    """{file name without its extension: class} from a VAL_LABEL_FILES file."""
    labels = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            if path.suffix == ".csv" and i == 0 and line.startswith("ImageId"):
                continue
            # The CSV's name ends at its comma; val_labels.txt's at a space or a tab.
            name, rest = ((line.split(",", 1) if path.suffix == ".csv" else line.split(None, 1)) + ["", ""])[:2]
            if rest.split():
                labels[Path(name.strip()).stem] = rest.split()[0]
    return labels


def _flat_val(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) for root/val/<image> files, labelled by a VAL_LABEL_FILES file; a clear error without one."""
    from ._names import find_upwards

    files = sorted(p for p in (root / "val").iterdir() if _is_image(p))
    where = find_upwards(root, VAL_LABEL_FILES)
    if where is None:
        raise ValueError(
            f"{root / 'val'} holds {len(files)} image{'s' * (len(files) != 1)} but no class folders (ImageNet's own "
            f"layout). Put Kaggle's LOC_val_solution.csv or a val_labels.txt (lines 'FILE CLASS') in {root} or a "
            f"folder above it, or sort the images into {root / 'val'}/<class>/")
    labels, index = _read_val_labels(where), {c: i for i, c in enumerate(classes)}
    missing = [p.name for p in files if p.stem not in labels]
    if missing:
        raise ValueError(f"{where} gives no class for {len(missing)} of the {len(files)} images in {root / 'val'}, "
                         f"e.g. {missing[0]}")
    unknown = sorted({labels[p.stem] for p in files} - set(index))
    if unknown:
        raise ValueError(f"{where} names classes that {root / 'train'} lacks: {unknown[:5]}")
    return [(str(p), index[labels[p.stem]]) for p in files]


def has_own_validation_images(root) -> bool:
    """Whether an image folder has its own validation images (root/train beside a val/ holding images), so
    that no share of its training images is held out."""
    root = Path(root)
    return has_split_layout(root) and _has_images(root / "val")


def _two_classes_at_least(folder: Path, classes: list[str]) -> None:
    """Said of the folder, before any decoding: the model's "num_classes must be an integer >= 2" came after."""
    if len(classes) < 2:
        raise ValueError(f"{folder} has one class folder ({classes[0]}): a classifier needs two or more, "
                         "a sub-folder of images for each class")


def list_folder(root, *, val_fraction: float = 0.1, seed: int = 0):
    """classes, train [(path, label)], val [(path, label)] of an ImageNet-style folder.

    With root/train and root/val the split is theirs (val's classes must be train's; val's images may also
    lie directly in val/, labelled by a VAL_LABEL_FILES file). Otherwise (root/<class>, or root/train with
    no val/ or an empty one) a stratified `val_fraction` of each class, chosen by `seed`, is held out.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder, a prepared store, or a known dataset name")
    if has_split_layout(root):
        classes = [d.name for d in _class_dirs(root / "train")]
        if not classes:
            raise ValueError(f"{root / 'train'} has no class folders (expected train/<class>/<image>)")
        _two_classes_at_least(root / "train", classes)
        extra = sorted({d.name for d in _class_dirs(root / "val")} - set(classes)) if (root / "val").is_dir() else []
        if extra:
            raise ValueError(f"{root / 'val'} has class folders that train lacks: {extra[:5]}")
        train = _files_by_class(root / "train", classes)
        if not _has_images(root / "val"):  # train/ alone: as a folder of classes (train/ alone was one class)
            if _has_images(root / "test"):  # left out without a word
                B.warn_user(f"{root / 'test'} is not read: validation is a held-out {val_fraction:g} of "
                            f"{root / 'train'}'s images (to validate on test/'s images, rename it val)")
            return (classes, *_hold_out(train, len(classes), val_fraction, seed))
        if not _class_dirs(root / "val") and any(_is_image(p) for p in (root / "val").iterdir()):
            return classes, train, _flat_val(root, classes)
        loose = sum(1 for p in (root / "val").iterdir() if _is_image(p))
        if loose:  # beside val's class folders: left out, as in the root, and said as there
            B.warn_user(f"{loose} image(s) lie directly in {root / 'val'}, beside its class folders: left out")
        val_classes = [c for c in classes if (root / "val" / c).is_dir()]
        if len(val_classes) < len(classes):  # allowed (a small val/ may miss some), but its error leaves them out
            missing = [c for c in classes if c not in val_classes]
            B.warn_user(f"{root / 'val'} has no folder for {len(missing)} of the {len(classes)} classes "
                        f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): they are trained on but "
                        "never validated or tested")
        val = [(f, classes.index(val_classes[l])) for f, l in _files_by_class(root / "val", val_classes)]
        return classes, train, val
    dirs = _class_dirs(root)
    if not dirs:
        loose = any(_is_image(p) for p in root.iterdir())
        raise ValueError(f"dataset folder {root} " + ("holds images but no class folders" if loose else "is empty")
                         + ": expected one sub-folder per class (root/<class>/<image>) or root/train and root/val")
    classes = [d.name for d in dirs]
    _refuse_split_named_classes(root, classes)
    _two_classes_at_least(root, classes)
    loose = sum(1 for p in root.iterdir() if _is_image(p))
    if loose:
        B.warn_user(f"{loose} image(s) lie directly in {root}, in no class folder: left out")
    return (classes, *_hold_out(_files_by_class(root, classes), len(classes), val_fraction, seed))


def median_short_side(files, *, sample: int = 32, seed: int = 0) -> int | None:
    """The median shorter side of up to `sample` of the (path, label) files, chosen by `seed`, from their headers
    alone (Pillow reads no pixels to open a file); None when none could be read."""
    from PIL import Image

    if not files:
        return None
    rng = np.random.default_rng(seed)
    sides = []
    for i in rng.choice(len(files), min(sample, len(files)), replace=False):
        try:
            with Image.open(files[i][0]) as im:
                sides.append(min(im.size))
        except Exception:  # an unreadable file is said when it is decoded
            continue
    return int(np.median(sides)) if sides else None


def _stored_rawmode(im) -> str:
    """How the file stores its samples ("I;16B", "I;32S", "I;12", ...) as Pillow's tiles say before they are
    read; "" when unknown. Pillow's mode alone does not say it: "I" holds 16-bit signed, 32-bit and widened
    PGM levels alike."""
    tile = getattr(im, "tile", None) or []
    args = tile[0].args if tile and hasattr(tile[0], "args") else (tile[0][3] if tile else None)
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return rawmode if isinstance(rawmode, str) else ""


def _white_level(mode: str, rawmode: str) -> int:
    """The level that is white for an integer grey image of Pillow mode I or I;16*: the top of the stored type's
    range (16-bit: 65535; TIFF's 12-bit: 4095; signed 16-bit: 32767; 32-bit: 2**32 - 1 or 2**31 - 1).

    The type's range, not the image's own maximum: a dark 16-bit photo and a 12-bit camera's image stored in 16
    bits hold the same values, and scaling each image by its own maximum would brighten every dark one (and
    make each image's scale depend on its content). So a 12-bit image in a 16-bit file comes out dark (1/16)."""
    m = re.fullmatch(r"I;(\d+)([A-Z]*)", rawmode)
    if m:  # Pillow's rawmodes: I;16 (little-endian), I;16B, I;16S (signed), I;32BS, ... and TIFF's I;12
        bits, signed = int(m.group(1)), "S" in m.group(2)
    elif mode == "I" and rawmode == "I":  # native 32-bit signed
        bits, signed = 32, True
    else:  # mode I;16*, or I widened by Pillow (a PGM of maxval 4095 comes as 0-65535), or unknown
        bits, signed = 16, False
    return 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1


def _grey_to_8_bits(im, rawmode: str):
    """An "L" image for Pillow's grey modes of more than 8 bits ("I;16*", "I", "F"), levels scaled to 0-255 and
    rounded; other images as they are. Pillow's own conversion to RGB clips every level above 255 to white
    (and takes floats as 0-255 levels), so a 16-bit image came out nearly all white and one in 0-1 black."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        levels = np.asarray(im)
        if levels.dtype == np.int32 and re.fullmatch(r"I;32[BN]?", rawmode):
            levels = levels.view(np.uint32)  # unsigned 32-bit, held by Pillow's signed mode I
        scaled = levels.astype(np.float64) * (255 / _white_level(im.mode, rawmode))
    elif im.mode == "F":
        # Float grey (TIFF) has no type's range: 0-1 is the usual convention (scaled to 0-255); an image with
        # larger values is taken as 0-255 levels already. NaN is black, infinities the ends.
        v = np.nan_to_num(np.asarray(im, np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scaled = v * (255 if v.max(initial=0) <= 1 else 1)
    else:
        return im
    return Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8))  # negative (signed) levels: black


def decode_image(path: str, size: int) -> np.ndarray:
    """uint8 (size, size, 3): turned upright by its EXIF orientation (a phone's photos), shorter side resized
    to `size` (bilinear, antialiased), centre crop. Grey levels of more than 8 bits are scaled to 0-255 by their
    type's range (16-bit: / 257, see _white_level), float grey in [0, 1] to 0-255; Pillow reads 16-bit colour
    PNGs as 8-bit RGB itself (the high byte of each sample)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        _opened.pixels = im.size[0] * im.size[1]  # for decode_many's naming of Pillow's large-image warning
        rawmode = _stored_rawmode(im)  # before the tiles are read (and dropped)
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when that still covers `size`
        im = _grey_to_8_bits(ImageOps.exif_transpose(im), rawmode)
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = (nw - size) // 2, (nh - size) // 2
        if (nw, nh) != (w, h):
            # Only the centre crop is resampled: the source box it covers, scaled to size x size (the same
            # pixels as resizing to nw x nh and cropping, within a level). Resized whole, a 100000x1 strip
            # became 25600000x256 (20 GB) before the crop: a MemoryError that ended the load.
            box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
            im = im.resize((size, size), getattr(Image, "Resampling", Image).BILINEAR, box=box,
                           reducing_gap=None)  # (Image.Resampling: 9.1-9.3 warn of Image.BILINEAR)
        else:
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


# The pixels of the image this thread opened last (decode_image). Pillow warns of an image over
# Image.MAX_IMAGE_PIXELS when it opens it, naming no file: in decode_many's threads nobody could tell which.
_opened = threading.local()


def _decode_noting_large(path: str, size: int):
    """_decode_or_none, and the image's pixels where they are over Pillow's warning limit, else None."""
    from PIL import Image

    _opened.pixels = None
    image, error = _decode_or_none(path, size)
    limit = Image.MAX_IMAGE_PIXELS
    return image, error, (_opened.pixels if image is not None and limit and (_opened.pixels or 0) > limit else None)


def warn_large_image(path: str, pixels: int) -> None:
    """Pillow's warning of an image over Image.MAX_IMAGE_PIXELS, which names no file, said with its name (in
    Pillow's category: a filter of Pillow's warning filters this one too)."""
    from PIL import Image

    B.warn_user(f"{path} has {pixels} pixels, over Pillow's limit of {Image.MAX_IMAGE_PIXELS} for a trusted image "
                "(its decompression-bomb warning): decoded all the same", Image.DecompressionBombWarning)


def _decode_or_none(path: str, size: int):
    from PIL import Image

    try:
        return decode_image(path, size), None
    except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises for corrupt or truncated files
        return None, f"{type(exc).__name__}: {exc}"
    # Pillow's guard for servers: over 179M pixels (twice MAX_IMAGE_PIXELS) this ended train, prepare and
    # predict with a traceback; between 89M and 179M it warns once and decodes.
    except Image.DecompressionBombError as exc:
        pixels = str(exc).split("(", 1)[-1].split(" ", 1)[0]
        return None, (f"too large to decode ({pixels} pixels; Pillow decodes at most {2 * Image.MAX_IMAGE_PIXELS}): "
                      "shrink it first")


def decode_many(files, size: int, *, workers: int = 0, pool: cf.Executor | None = None, progress: bool = False,
                desc: str = "decoding"):
    """Decodes [(path, label)] in order: (images uint8 (n, size, size, 3), labels int64 (n,), skipped).

    Corrupt or unreadable files are left out, each with a warning; `skipped` lists (path, reason).
    Threads decode in parallel (Pillow releases the GIL while decoding). Each image goes straight into
    the result (no list of images to stack: half the peak memory). progress: a tqdm bar named `desc`.
    """
    paths = [f for f, _ in files]
    own = cf.ThreadPoolExecutor(workers) if pool is None and workers and workers > 1 and len(paths) > 1 else None
    ex = pool or own
    results = (ex.map(_decode_noting_large, paths, [size] * len(paths)) if ex is not None
               else (_decode_noting_large(p, size) for p in paths))
    images = np.empty((len(files), size, size, 3), np.uint8)
    labels = np.empty(len(files), np.int64)
    skipped, kept = [], 0
    try:
        with B.progress_bar(progress, total=len(files), desc=desc, unit="img") as bar:
            for (path, label), (img, err, large) in zip(files, results):
                if large:  # Pillow's own warning (from a thread, once) names no file
                    warn_large_image(path, large)
                if img is None:
                    B.warn_user(f"skipping unreadable image {path} ({err})")
                    skipped.append((path, err))
                else:
                    images[kept], labels[kept] = img, label
                    kept += 1
                bar.update(1)
    finally:
        if own is not None:
            own.shutdown(cancel_futures=True)
    return images[:kept], labels[:kept], skipped


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
