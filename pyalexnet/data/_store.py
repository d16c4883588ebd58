"""Prepared stores: a folder of images decoded once into packed uint8 arrays that training memory-maps.

Layout of DST:
  meta.json              format, version, source, classes, image_size, per split its count and
                         skipped files, and "complete"
  files.json             the (path, label) lists being converted, fixed when the conversion starts
  {train,val}_images.u8  raw uint8 (count, S, S, 3), C order (numpy.memmap)
  {train,val}_labels.npy int64 (count,)
  stats.npz              mean_image float32 (S, S, 3), eigvals (3,), eigvecs (3, 3) of the training set
  progress.npz           while converting: the resume point and the running sums (removed when done)

The conversion streams: K images at a time are decoded (by threads), written to the memmap and added to
float64 running sums; then the memmap is flushed and progress.npz replaced atomically. A rerun after an
interruption continues from the last checkpoint, so at most K images are decoded twice.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from .. import _backend as B
from . import _folder
from ._names import CLASS_NAME_FILES, find_upwards
from ._stats import RunningStats

FORMAT = "pyalexnet-store"
VERSION = 1
SPLITS = ("train", "val")
# What prepare writes before meta.json: a folder holding nothing else is a conversion killed before it began
# converting (no image written), begun again by the same command.
_STARTED = {"files.json", "files.json.tmp", "meta.json.tmp"}


def is_store(path) -> bool:
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        return False
    try:
        meta = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT  # a list was AttributeError


def _only_started(path: Path) -> bool:
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    return bool(names) and names <= _STARTED


def looks_like_store(path) -> bool:
    """A store, or what is left of one: its file list or images, with or without its meta.json (a store that lost
    it was "dataset folder ... is empty: expected one sub-folder per class")."""
    path = Path(path)
    return path.is_dir() and ((path / "meta.json").is_file() or (path / "files.json").is_file()) and (
        (path / "files.json").is_file() or any(path.glob("*_images.u8")))


def _damaged(path: Path, what: str) -> ValueError:
    return ValueError(f"the store {path} is damaged ({what}): prepare it again with --overwrite (overwrite=True)")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def open_store(path):
    """The Splits of a finished store; images are read-only memmaps (nothing is decoded again)."""
    from ._datasets import Dataset, Splits, crop_size_for

    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        version, complete = meta.get("version"), meta.get("complete")
    except (OSError, ValueError, AttributeError) as exc:  # a cut or overwritten meta.json
        if _only_started(path):  # was "damaged ... --overwrite", where the same prepare goes on
            raise ValueError(f"{path}: the store is incomplete (an interrupted `pyalexnet prepare`); "
                             "rerun the same prepare command to finish it") from None
        raise _damaged(path, f"meta.json: {exc}") from None
    if version != VERSION:
        raise ValueError(f"{path}: store version {version} is not {VERSION}; prepare it again")
    if not complete:
        raise ValueError(f"{path}: the store is incomplete (an interrupted `pyalexnet prepare`); "
                         "rerun the same prepare command to finish it")
    # What a damaged store raised was numpy's or the file system's: "mmap length is greater than file size".
    what = "meta.json"  # the file being read
    try:
        size = int(meta["image_size"])
        datasets = {}
        for split in SPLITS:
            info = meta["splits"][split]
            n = int(info["count"])
            what = f"{split}_images.u8"
            if n:
                # prepare leaves the file exactly this long: a longer one was read without a word
                expected, found = n * size * size * 3, os.path.getsize(path / what)
                if found != expected:
                    raise ValueError(f"{found} bytes, not the {expected} of {n} images of {size}x{size}")
                images = np.memmap(path / what, np.uint8, "r", shape=(n, size, size, 3))
            else:
                images = np.zeros((0, size, size, 3), np.uint8)
            what = f"{split}_labels.npy"
            labels = np.load(path / what)
            if labels.shape != (n,):  # (n, 1) was "n images but n labels"
                raise ValueError(f"{n} images but labels of shape {labels.shape}")
            datasets[split] = Dataset(images, labels, meta["classes"], [tuple(s) for s in info["skipped"]])
        what = "stats.npz"
        with np.load(path / what) as st:
            mean_image, eigvals, eigvecs = st["mean_image"], st["eigvals"], st["eigvecs"]
        shapes = (mean_image.shape, eigvals.shape, eigvecs.shape)
        if shapes != ((size, size, 3), (3,), (3, 3)):  # was taken, and failed later in the Loader
            raise ValueError(f"mean image, eigenvalues and eigenvectors of shapes {shapes}, not "
                             f"{((size, size, 3), (3,), (3, 3))}")
        if not all(np.isfinite(a).all() for a in (mean_image, eigvals, eigvecs)):  # else every batch NaN
            raise ValueError("the mean image, eigenvalues or eigenvectors are not finite")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise _damaged(path, f"{what}: {exc}") from None
    return Splits(datasets["train"], datasets["val"], meta["classes"], size, crop_size_for(size), mean_image,
                  eigvals, eigvecs, str(path))


def _progress_bar(total: int, initial: int, desc: str, quiet: bool):
    # Quiet in logs and CI: bars only where someone watches (a terminal, a notebook).
    show = not quiet and B.show_progress(None)
    return B.progress_bar(show, total=total, initial=initial, desc=desc, unit="img")


def _check_room(dst: Path, images: int, size: int) -> None:
    """Before anything is written: room on dst's disk for the images, and memory for the float64 mean image.
    --size 100000 failed after the listing with numpy's "Unable to allocate 224. GiB", leaving half a store;
    ImageNet at 256 px takes 250 GB, found short only when the disk filled."""
    from ._datasets import available_memory

    stats, memory = 3 * size * size * 3 * 8, available_memory()  # the sum, one batch's sum and the mean
    if memory is not None and stats > memory:
        raise ValueError(f"--size {size} needs {B.byte_size(stats)} of memory for the mean image, and "
                         f"{B.byte_size(memory)} is available: a smaller --size")
    need, where = images * size * size * 3, dst
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise ValueError(f"the store needs {B.byte_size(need)} for {images} images of {size}x{size}, and the disk "
                         f"holding {where} has {B.byte_size(free)} free: a smaller --size, or another disk")


def _refuse_unwritable(dst: Path) -> None:
    """Before the source is listed (minutes for ImageNet): /proc/x was "needs 0.0 GiB ... has 0.0 GiB free" after it,
    and a conversion resumed in a folder made read-only since found it so only after listing its source again."""
    problem = B.output_folder_problem(dst, "the store")
    if problem:
        raise ValueError(f"{problem}: choose a folder you can write")


def prepare(src, dst, *, image_size: int = 256, val_fraction: float = 0.1, seed: int = 0,
            checkpoint_every: int = 1000, workers: int | None = None, quiet: bool = False,
            overwrite: bool = False) -> Path:
    """Converts the image folder `src` (root/<class>/<image>, or root/train + root/val) into a store at
    `dst`; resumes an interrupted conversion of the same source. Returns dst."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"the store {dst} would be a folder, but a file of that name exists")
    if src.is_dir() and dst.resolve().is_relative_to(src.resolve()):
        # It would become one more class folder of src (or of its train/): "class folder .../store has no
        # images" the next time src is read.
        raise ValueError(f"the store {dst} must not be inside the image folder {src}: put it beside it")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    if not src.is_dir():
        _folder.list_folder(src)  # raises the clear error for a missing or non-folder source
    # Listed absolute: files.json's paths were src's as given, relative to the folder prepare ran in, and a
    # rerun from another folder went on by skipping every image left as unreadable.
    source = src.resolve()
    settings = {"source": str(source), "image_size": image_size, "val_fraction": val_fraction, "seed": seed}
    meta_path = dst / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except ValueError as exc:  # was "Invalid control character at: line 1 column 36"
        if not overwrite:
            raise _damaged(dst, f"meta.json: {exc}") from None
        meta = {}  # replaced below, as a store's
    if meta is not None and not overwrite:
        if meta.get("format") != FORMAT:
            raise ValueError(f"{dst} holds something other than a pyalexnet store; choose another folder")
        if meta.get("settings") != settings:
            had = meta.get("settings") or {}
            diff = [k for k in settings if had.get(k) != settings[k]]
            raise ValueError(f"{dst} is a store of " + ", ".join(f"{k}={had.get(k)}" for k in diff) + ", not of "
                             + ", ".join(f"{k}={settings[k]}" for k in diff)
                             + ": pass overwrite=True (--overwrite) to replace it, or choose another folder")
        if not meta.get("complete"):
            _refuse_unwritable(dst)  # a conversion to resume: before its source is listed again to compare
        listed = _unchanged_listing(source, dst, val_fraction, seed)
        if meta.get("complete"):
            # A kill between marking it complete and removing the resume file left that file for good.
            (dst / "progress.npz").unlink(missing_ok=True)
            return dst
    else:
        _refuse_unwritable(dst)
    if meta is None or overwrite:
        if dst.exists() and any(dst.iterdir()) and not (overwrite and (meta is not None or looks_like_store(dst))) \
                and not _only_started(dst):
            raise ValueError(f"{dst} exists and is not empty; choose a new folder for the store")
        classes, train_files, val_files = _folder.list_folder(source, val_fraction=val_fraction, seed=seed)
        listed = {"train": train_files, "val": val_files}
        _check_room(dst, len(train_files) + len(val_files), image_size)
        dst.mkdir(parents=True, exist_ok=True)
        for old in dst.glob("progress.npz"):
            old.unlink()
        _write_json(dst / "files.json", {"train": train_files, "val": val_files})
        meta = {"format": FORMAT, "version": VERSION, "settings": settings, "classes": classes,
                "image_size": image_size, "complete": False,
                "splits": {s: {"count": 0, "skipped": []} for s in SPLITS}}
        _write_json(meta_path, meta)
    files = listed or json.loads((dst / "files.json").read_text())
    progress = _load_progress(dst, image_size)
    done = sum(len(files[s]) for s in SPLITS[:progress["split"]]) + progress["next_file"]
    if done and not quiet:  # a rerun said nothing and its bar started part-full
        total = sum(len(files[s]) for s in SPLITS)
        print(f"{dst}: continuing an interrupted conversion, {done} of {total} images already done",
              file=B.message_stream())
    if workers is not None and workers < 1:  # ThreadPoolExecutor's own words named max_workers
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = workers or _folder.default_workers()
    pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="pyalexnet-prepare")
    try:
        for split in SPLITS:
            _convert_split(dst, meta, split, [tuple(f) for f in files[split]], progress, pool, image_size,
                           checkpoint_every, quiet)
    finally:  # on Ctrl-C, drop the queued decodes instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)
    mean_image, eigvals, eigvecs = progress["stats"].finalize()
    np.savez(dst / "stats.tmp.npz", mean_image=mean_image, eigvals=eigvals, eigvecs=eigvecs)
    os.replace(dst / "stats.tmp.npz", dst / "stats.npz")
    names = find_upwards(src, CLASS_NAME_FILES)
    if names is not None:  # readable names for the class IDs travel with the images
        shutil.copyfile(names, dst / names.name)
    meta["complete"] = True
    _write_json(meta_path, meta)
    (dst / "progress.npz").unlink(missing_ok=True)
    return dst


def _unchanged_listing(source: Path, dst: Path, val_fraction: float, seed: int) -> dict | None:
    """The (path, label) files of each split of `source` now, for a rerun; a ValueError where they are not those
    the store was started from (a finished store was returned as it was, the images added to src never trained
    on, and a resumed one went on with the old list). None where the store has no readable list."""
    try:
        had = json.loads((dst / "files.json").read_text())
    except (OSError, ValueError):  # a store without its list is resumed or refused further on
        return None
    if not isinstance(had, dict):
        return None
    _, train, val = _folder.list_folder(source, val_fraction=val_fraction, seed=seed)

    def relative(files_by_split):
        # Paths relative to the folder they all lie in (the source: two classes at least): a store started
        # before the paths were absolute holds them as given, relative to the folder prepare ran in.
        paths = [p for files in files_by_split.values() for p, _ in files]
        top = os.path.commonpath(paths) if paths else ""
        return {(os.path.relpath(p, top), label, split) for split, files in files_by_split.items()
                for p, label in files}

    now, before = relative({"train": train, "val": val}), relative({s: had.get(s, []) for s in SPLITS})
    if now == before:
        return {"train": train, "val": val}
    paths_now, paths_before = {f[0] for f in now}, {f[0] for f in before}
    new, gone = sorted(paths_now - paths_before), sorted(paths_before - paths_now)
    moved = len({f[0] for f in now ^ before} & paths_now & paths_before)
    example = f"e.g. {(new or gone)[0]}" if new or gone else "its classes or held-out images differ"
    raise ValueError(f"the images of {source} have changed since {dst} was started from them ({len(new)} new, "
                     f"{len(gone)} gone, {moved} with another label or split; {example}): pass overwrite=True "
                     f"(--overwrite) to prepare it again")


def _load_progress(dst: Path, size: int) -> dict:
    p = dst / "progress.npz"
    if not p.is_file():
        return {"split": 0, "next_file": 0, "written": 0, "skipped": [], "stats": RunningStats(size)}
    with np.load(p) as z:
        return {"split": int(z["split"]), "next_file": int(z["next_file"]), "written": int(z["written"]),
                "skipped": json.loads(str(z["skipped"])), "stats": RunningStats.from_state(z)}


def _save_progress(dst: Path, progress: dict) -> None:
    tmp = dst / "progress.tmp.npz"
    np.savez(tmp, split=progress["split"], next_file=progress["next_file"], written=progress["written"],
             skipped=json.dumps(progress["skipped"]), **progress["stats"].state())
    os.replace(tmp, dst / "progress.npz")


def _convert_split(dst, meta, split, files, progress, pool, size, every, quiet) -> None:
    index = SPLITS.index(split)
    if progress["split"] > index:
        return  # finished before the interruption
    if progress["split"] < index:
        progress.update(split=index, next_file=0, written=0, skipped=[])
    images_path, labels_path = dst / f"{split}_images.u8", dst / f"{split}_labels.npy"
    partial_labels = dst / f"{split}_labels.partial.npy"
    n = len(files)
    start, written = progress["next_file"], progress["written"]
    if n and (start < n or partial_labels.exists()):
        # Sized for every file; truncated to the images actually written at the end.
        if not images_path.exists() or images_path.stat().st_size < n * size * size * 3:
            with open(images_path, "ab") as f:
                f.truncate(n * size * size * 3)
        images = np.memmap(images_path, np.uint8, "r+", shape=(n, size, size, 3))
        labels = np.lib.format.open_memmap(partial_labels, "r+" if start else "w+", np.int64, (n,))
        bar = _progress_bar(n, start, f"prepare {split}", quiet)
        try:
            for lo in range(start, n, every):
                chunk = files[lo:lo + every]
                batch, batch_labels, bad = _folder.decode_many(chunk, size, pool=pool)  # warns per bad file
                images[written:written + len(batch)] = batch
                labels[written:written + len(batch)] = batch_labels
                if split == "train":
                    progress["stats"].update(batch)
                written += len(batch)
                images.flush()
                labels.flush()
                progress["skipped"] += [list(b) for b in bad]
                progress.update(next_file=lo + len(chunk), written=written)
                _save_progress(dst, progress)
                bar.update(len(chunk))
        finally:
            bar.close()
            del images, labels
        np.save(labels_path, np.load(partial_labels, mmap_mode="r")[:written])
        partial_labels.unlink()
    elif not n:
        np.save(labels_path, np.zeros(0, np.int64))
    if images_path.exists():
        os.truncate(images_path, written * size * size * 3)
    meta["splits"][split] = {"count": written, "skipped": progress["skipped"]}
    _write_json(dst / "meta.json", meta)
    progress.update(split=index + 1, next_file=0, written=0, skipped=[])
    _save_progress(dst, progress)
