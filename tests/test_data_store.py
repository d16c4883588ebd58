"""`pyalexnet prepare`: the round trip, its statistics against numpy, resume after an interruption."""
import json
import os

import numpy as np
import pytest

from pyalexnet import cli
from pyalexnet.data import _folder, _store, is_store, load_dataset, open_store, prepare

from data_files import image_folder, write_image


@pytest.fixture
def folder(tmp_path, rng):
    return image_folder(tmp_path / "src", rng, classes=("ant", "bee", "cow"), per_class=7, ext=".png")


def test_round_trip_equals_decoding_directly(folder, tmp_path):
    dst = prepare(folder, tmp_path / "store", image_size=16, val_fraction=0.3, checkpoint_every=4, quiet=True)
    assert is_store(dst) and not (dst / "progress.npz").exists()
    stored = load_dataset(str(dst))
    direct = load_dataset(str(folder), image_size=16, val_fraction=0.3)
    assert stored.classes == direct.classes == ["ant", "bee", "cow"]
    assert isinstance(stored.train.images, np.memmap)  # read without decoding again
    # Read-only ("r", not "r+": a stray write would change the store on disk), labels int64 as the layout says.
    assert not stored.train.images.flags.writeable and not stored.val.images.flags.writeable
    assert np.load(dst / "train_labels.npy").dtype == np.load(dst / "val_labels.npy").dtype == np.int64
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(stored, split).images, getattr(direct, split).images)
        np.testing.assert_array_equal(getattr(stored, split).labels, getattr(direct, split).labels)
    # Streaming statistics equal numpy's on the whole training set.
    x = direct.train.images.astype(np.float64)
    np.testing.assert_allclose(stored.mean_image, x.mean(0), rtol=1e-6)
    cov = np.cov((x / 255).reshape(-1, 3).T, bias=True)
    np.testing.assert_allclose(stored.eigvecs @ np.diag(stored.eigvals) @ stored.eigvecs.T, cov, atol=1e-10)
    assert stored.image_size == 16 and stored.crop_size == 14
    # The file holds exactly the images written.
    assert (dst / "train_images.u8").stat().st_size == len(stored.train) * 16 * 16 * 3


def test_a_class_names_file_travels_into_the_store(folder, tmp_path):
    from pyalexnet.data import find_class_names

    (folder / "synset_words.txt").write_text("ant formica, the ant\nbee apis\n")
    dst = prepare(folder, tmp_path / "store", image_size=16, quiet=True)
    stored = load_dataset(str(dst))
    assert stored.classes == ["ant", "bee", "cow"]  # the file is not a class
    assert find_class_names(dst, stored.classes) == ["formica", "apis", "cow"]


def test_a_kaggle_imagenet_folder_prepares_with_its_labels_and_names(tmp_path, rng):
    from test_data_formats import _kaggle_imagenet

    from pyalexnet.data import find_class_names

    root, truth = _kaggle_imagenet(tmp_path / "kaggle", rng)
    dst = prepare(root, tmp_path / "store", image_size=16, quiet=True)
    stored = load_dataset(str(dst))
    assert [stored.classes[label] for label in stored.val.labels] == list(truth.values())
    assert (dst / "LOC_synset_mapping.txt").exists()  # found three levels above the source
    assert find_class_names(tmp_path / "store", stored.classes) == ["tench", "goldfish"]


def test_train_val_layout_and_corrupt_files(tmp_path, rng):
    image_folder(tmp_path / "src" / "train", rng, classes=("a", "b"), per_class=4)
    image_folder(tmp_path / "src" / "val", rng, classes=("a", "b"), per_class=2, ext=".jpg")
    (tmp_path / "src" / "train" / "b" / "zzz.jpg").write_bytes(b"not an image")
    with pytest.warns(RuntimeWarning, match="zzz.jpg"):
        s = open_store(prepare(tmp_path / "src", tmp_path / "st", image_size=8, quiet=True))
    assert len(s.train) == 8 and len(s.val) == 4 and s.num_skipped == 1
    assert s.val.labels.tolist() == [0, 0, 1, 1]


def test_resume_after_an_interruption(folder, tmp_path, monkeypatch, capsys):
    real = _folder.decode_image
    calls = {"n": 0}

    def flaky(path, size):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the training split
        return real(path, size)

    monkeypatch.setattr(_folder, "decode_image", flaky)
    dst = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, dst, image_size=16, checkpoint_every=5, workers=1, quiet=True)
    assert (dst / "progress.npz").exists()
    with pytest.raises(ValueError, match="incomplete"):
        open_store(dst)
    with np.load(dst / "progress.npz") as p:
        assert int(p["next_file"]) == 10  # two checkpoints of 5 were saved before the interruption
    monkeypatch.setattr(_folder, "decode_image", lambda p, s: (calls.__setitem__("n", calls["n"] + 1), real(p, s))[1])
    before = calls["n"]
    capsys.readouterr()
    prepare(folder, dst, image_size=16, checkpoint_every=5, workers=1)
    n_files = 21
    # the rerun says it continues (it said nothing, and its bar started part-full)
    assert f"{dst}: continuing an interrupted conversion, 10 of {n_files} images already done" in \
        capsys.readouterr().err
    assert calls["n"] - before == n_files - 10  # only what was not checkpointed is decoded again
    fresh = open_store(prepare(folder, tmp_path / "fresh", image_size=16, quiet=True))
    resumed = open_store(dst)
    np.testing.assert_array_equal(resumed.train.images, fresh.train.images)
    # The labels checkpointed before the interruption too: reopening the partial labels file "w+" (not "r+")
    # zeroed them, and only the images were compared.
    np.testing.assert_array_equal(resumed.train.labels, fresh.train.labels)
    np.testing.assert_array_equal(resumed.val.images, fresh.val.images)
    np.testing.assert_array_equal(resumed.val.labels, fresh.val.labels)
    np.testing.assert_allclose(resumed.mean_image, fresh.mean_image, rtol=1e-6)
    np.testing.assert_allclose(resumed.eigvals, fresh.eigvals, rtol=1e-9)


def test_a_finished_store_is_not_redone_and_another_source_is_refused(folder, tmp_path, rng):
    dst = prepare(folder, tmp_path / "store", image_size=8, quiet=True)
    stamp = (dst / "train_images.u8").stat().st_mtime_ns
    prepare(folder, dst, image_size=8, quiet=True)
    assert (dst / "train_images.u8").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="overwrite"):
        prepare(folder, dst, image_size=12, quiet=True)
    prepare(folder, dst, image_size=12, quiet=True, overwrite=True)
    assert open_store(dst).image_size == 12
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        prepare(folder, tmp_path / "busy", image_size=8, quiet=True)



def test_a_rerun_over_a_changed_source_is_refused(folder, tmp_path, rng):
    # A finished store was returned as it was when images had been added to its source since: they were never
    # trained on, and `pyalexnet prepare` printed the old counts.
    dst = prepare(folder, tmp_path / "store", image_size=8, quiet=True)
    write_image(folder / "bee" / "new", rng)
    with pytest.raises(ValueError, match=r"changed since .*1 new, 0 gone.*bee/new\.png.*overwrite"):
        prepare(folder, dst, image_size=8, quiet=True)
    assert len(open_store(prepare(folder, dst, image_size=8, quiet=True, overwrite=True)).train) + \
        len(open_store(dst).val) == 22
    stamp = (dst / "train_images.u8").stat().st_mtime_ns
    prepare(folder, dst, image_size=8, quiet=True)  # unchanged since: the store as it is
    assert (dst / "train_images.u8").stat().st_mtime_ns == stamp


def test_a_conversion_resumed_from_another_folder_finds_its_images(folder, tmp_path, monkeypatch):
    # The file list held the source's paths as given: `prepare src st` interrupted, then resumed as
    # `prepare ../src ../st` from a sub-folder, skipped every image left as unreadable and finished a store of 5.
    real, calls = _folder.decode_image, {"n": 0}

    def interrupted(path, size):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(path, size)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_folder, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare("src", "st", image_size=8, checkpoint_every=5, workers=1, quiet=True)
    monkeypatch.setattr(_folder, "decode_image", real)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    s = open_store(prepare("../src", "../st", image_size=8, workers=1, quiet=True))
    assert len(s.train) + len(s.val) == 21 and s.num_skipped == 0

def test_command_line(folder, tmp_path, capsys):
    assert cli.main(["prepare", str(folder), str(tmp_path / "st"), "--size", "8", "-q"]) == 0
    assert "21" not in capsys.readouterr().err
    meta = json.loads((tmp_path / "st" / "meta.json").read_text())
    assert meta["complete"] and meta["format"] == _store.FORMAT
    assert cli.main(["prepare", str(tmp_path / "nope"), str(tmp_path / "st2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A store inside its source became one more (empty) class of it; a file where the store goes, a traceback.
    assert cli.main(["prepare", str(folder), str(folder / "store"), "-q"]) == 2
    assert "must not be inside the image folder" in capsys.readouterr().err and not (folder / "store").exists()
    (tmp_path / "afile").write_text("x")
    assert cli.main(["prepare", str(folder), str(tmp_path / "afile"), "-q"]) == 2
    assert "a file of that name exists" in capsys.readouterr().err


def test_prepare_checks_the_room_it_needs_before_writing(tmp_path, rng, monkeypatch):
    # --size 100000 failed with numpy's "Unable to allocate 224. GiB" after a half store was made.
    import collections

    from pyalexnet.data import _datasets

    image_folder(tmp_path / "src", rng, classes=("a", "b"), per_class=2)
    monkeypatch.setattr(_datasets, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(ValueError, match=r"--size 100000 needs 670.6 GiB of memory for the mean image, and 8.0 GiB"):
        prepare(tmp_path / "src", tmp_path / "st", image_size=100000, quiet=True)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(_store.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5000, 5000))
    with pytest.raises(ValueError, match=r"the store needs 12.0 KiB for 4 images of 32x32, and the disk holding "
                                         r".* has 4.9 KiB free"):  # was 0.0 GiB against 0.0 GiB
        prepare(tmp_path / "src", tmp_path / "st", image_size=32, quiet=True)
    assert not (tmp_path / "st").exists()


def test_prepare_into_a_folder_that_cannot_be_made_says_so_before_listing(tmp_path, rng, monkeypatch):
    # /proc/x listed the source, then said the store "needs 0.0 GiB" and the disk "has 0.0 GiB free".
    image_folder(tmp_path / "src", rng, classes=("a", "b"), per_class=2)
    listed = []
    monkeypatch.setattr(_store._folder, "list_folder", lambda *a, **k: listed.append(a) or pytest.fail("listed"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"the store .*file/st: cannot make that folder \(.*file is a file, not a "
                                         "folder\\): choose a folder you can write"):
        prepare(tmp_path / "src", tmp_path / "file" / "st", quiet=True)
    if os.path.isdir("/proc/self"):
        with pytest.raises(ValueError, match=r"the store /proc/x: its parent folder /proc cannot be written"):
            prepare(tmp_path / "src", "/proc/x", quiet=True)
    assert listed == []


def test_resuming_a_conversion_in_a_folder_now_read_only_says_so_before_listing(folder, tmp_path, monkeypatch):
    # A resumed conversion listed the source again (minutes for ImageNet) to compare it with the store's list, and
    # only then found that the store's folder could not be written.
    _die_at(monkeypatch, _folder, "decode_image", 5)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, tmp_path / "st", image_size=8, checkpoint_every=2, workers=1, quiet=True)
    monkeypatch.undo()
    access = os.access  # as a user without root is told of a folder made read-only
    monkeypatch.setattr(os, "access", lambda p, mode, **k: (str(p) != str(tmp_path / "st") or not mode & os.W_OK)
                        and access(p, mode, **k))
    monkeypatch.setattr(_store._folder, "list_folder", lambda *a, **k: pytest.fail("listed"))
    with pytest.raises(ValueError, match=r"the store .*st: the folder cannot be written"):
        prepare(folder, tmp_path / "st", image_size=8, quiet=True)


@pytest.mark.parametrize("damage", ["cut images", "bad meta.json", "no stats.npz", "no labels", "labels cut",
                                    "bad stats.npz", "no meta.json", "mean of another size"])
def test_a_damaged_store_is_said_to_be_one(folder, tmp_path, damage):
    # It was numpy's "mmap length is greater than file size", a raw "[Errno 2]", or, for a broken meta.json,
    # "dataset folder ... is empty: expected one sub-folder per class" (and prepare: "Invalid control character").
    dst = prepare(folder, tmp_path / "st", image_size=8, quiet=True)
    file = {"cut images": "train_images.u8", "bad meta.json": "meta.json", "no stats.npz": "stats.npz",
            "no labels": "train_labels.npy", "labels cut": "val_labels.npy", "bad stats.npz": "stats.npz",
            "no meta.json": "meta.json", "mean of another size": "stats.npz"}[damage]
    if damage == "mean of another size":  # was taken, and failed later in the Loader
        with np.load(dst / file) as st:
            np.savez(dst / file, mean_image=st["mean_image"][:4], eigvals=st["eigvals"], eigvecs=st["eigvecs"])
    elif damage.startswith("no "):
        (dst / file).unlink()
    elif damage == "labels cut":
        np.save(dst / file, np.zeros(1, np.int64))
    else:
        data = (dst / file).read_bytes()
        (dst / file).write_bytes(data[: len(data) // 2] if damage != "bad meta.json" else b'{"format": "py\x01')
    with pytest.raises(ValueError, match=f"the store {dst} is damaged \\({file}: .*\\): prepare it again with --overwrite"):
        load_dataset(str(dst))
    if damage == "bad meta.json":
        with pytest.raises(ValueError, match="is damaged \\(meta.json"):
            prepare(folder, dst, image_size=8, quiet=True)
    prepare(folder, dst, image_size=8, quiet=True, overwrite=True)  # and the way out works
    assert len(load_dataset(str(dst)).train) == 18


def test_cli_prepare_says_how_to_go_on_and_what_differs(folder, tmp_path, monkeypatch, capsys):
    real = _folder.decode_image
    calls = []

    def interrupted(path, size):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, size)
    monkeypatch.setattr(_folder, "decode_image", interrupted)
    dst = str(tmp_path / "st")
    assert cli.main(["prepare", str(folder), dst, "--size", "16", "--quiet", "--workers", "1"]) == 130
    assert f"interrupted: the same command again goes on where {dst} stopped" in capsys.readouterr().err
    monkeypatch.undo()
    # Settings said as name=value, only those that differ (was two Python dicts).
    assert cli.main(["prepare", str(folder), dst, "--size", "24", "--quiet"]) == 2
    assert f"{dst} is a store of image_size=16, not of image_size=24: pass overwrite=True (--overwrite)" in \
        capsys.readouterr().err


def test_cli_prepare_workers_zero_is_the_default_and_negative_is_refused(folder, tmp_path, capsys):
    assert cli.main(["prepare", str(folder), str(tmp_path / "st"), "--size", "8", "--workers", "-2", "--quiet"]) == 2
    assert "--workers must be >= 0 (0: the CPU count, at most 8), got -2" in capsys.readouterr().err
    assert cli.main(["prepare", str(folder), str(tmp_path / "st"), "--size", "8", "--workers", "0", "--quiet"]) == 0


def _die_at(monkeypatch, module, name, when):
    """Makes module.name raise KeyboardInterrupt at its `when`-th call (a kill at that moment: nothing after it
    runs), counting calls from now."""
    real, calls = getattr(module, name), {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == when:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, dying)


@pytest.mark.parametrize("killed", ["files.json written", "files.json.tmp written"])
def test_a_conversion_killed_before_its_meta_json_is_resumed(folder, tmp_path, monkeypatch, killed):
    # Killed between writing files.json and meta.json (the second _write_json), or in files.json's own write
    # (before its os.replace), the rerun of the same command said "exists and is not empty; choose a new folder
    # for the store", and open_store called it damaged.
    dst = tmp_path / "store"
    if killed == "files.json written":
        _die_at(monkeypatch, _store, "_write_json", 2)
    else:
        _die_at(monkeypatch, _store.os, "replace", 1)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, dst, image_size=8, quiet=True)
    monkeypatch.undo()
    assert not (dst / "meta.json").exists() and any(dst.iterdir())
    with pytest.raises(ValueError, match="incomplete"):
        open_store(dst)
    resumed = open_store(prepare(folder, dst, image_size=8, quiet=True))
    fresh = open_store(prepare(folder, tmp_path / "fresh", image_size=8, quiet=True))
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(resumed, split).images, getattr(fresh, split).images)
        np.testing.assert_array_equal(getattr(resumed, split).labels, getattr(fresh, split).labels)


def test_a_conversion_killed_after_it_completed_leaves_no_progress_file(folder, tmp_path, monkeypatch):
    # Killed between marking the store complete and removing progress.npz: every rerun returned the finished
    # store and left the resume file (the running sums: 1.5 MB at 256 px) in it for good.
    dst = tmp_path / "store"
    _die_at(monkeypatch, _store, "_write_json", 5)  # files, meta, train done, val done, complete
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, dst, image_size=8, quiet=True)
    monkeypatch.undo()
    meta = json.loads((dst / "meta.json").read_text())
    assert not meta["complete"]
    _store._write_json(dst / "meta.json", dict(meta, complete=True))  # the write that was cut
    assert (dst / "progress.npz").exists()
    prepare(folder, dst, image_size=8, quiet=True)
    assert not (dst / "progress.npz").exists()
    assert len(open_store(dst).train) == 18


@pytest.mark.parametrize("damage", ["images longer", "labels of two dimensions", "eigenvalues not finite",
                                    "meta.json a list"])
def test_more_damage_is_said_to_be_damage(folder, tmp_path, damage):
    dst = prepare(folder, tmp_path / "st", image_size=8, quiet=True)
    if damage == "images longer":  # was read without a word (the first count images of whatever the file holds)
        with open(dst / "train_images.u8", "ab") as f:
            f.write(bytes(8 * 8 * 3))
        match = r"train_images.u8: 3648 bytes, not the 3456 of 18 images of 8x8"
    elif damage == "labels of two dimensions":  # was "18 images but 18 labels"
        np.save(dst / "train_labels.npy", np.load(dst / "train_labels.npy")[:, None])
        match = r"train_labels.npy: 18 images but labels of shape \(18, 1\)"
    elif damage == "eigenvalues not finite":  # was taken: every training batch NaN
        with np.load(dst / "stats.npz") as st:
            np.savez(dst / "stats.npz", mean_image=st["mean_image"], eigvals=st["eigvals"] * np.nan,
                     eigvecs=st["eigvecs"])
        match = r"stats.npz: .*not finite"
    else:  # was AttributeError: 'list' object has no attribute 'get' (from is_store)
        (dst / "meta.json").write_text("[1]")
        match = r"meta.json: "
    with pytest.raises(ValueError, match=f"the store {dst} is damaged \\({match}.*\\): prepare it again"):
        load_dataset(str(dst))


def test_sizes_in_messages_are_in_the_unit_they_fit():
    from pyalexnet._backend import byte_size

    assert [byte_size(b) for b in (5000, 12 * 2**10, 3 * 2**20, 2**30 - 1, 2**30 - 60 * 2**20, 670.6 * 2**30)] == [
        "4.9 KiB", "12.0 KiB", "3.0 MiB", "1.0 GiB", "964.0 MiB", "670.6 GiB"]


# ----- mutation-testing additions: resuming around skipped files and split boundaries ----------------------
def _split_folder(root, rng):
    """root/train/{a,b} (3 images each) and root/val/{a,b} (1 each), with an unreadable train/a/00.png sorted
    first of all: every image after it is written one place before its file's position."""
    image_folder(root / "train", rng, classes=("a", "b"), per_class=3)
    image_folder(root / "val", rng, classes=("a", "b"), per_class=1)
    (root / "train" / "a" / "00.png").write_bytes(b"not an image")
    return root


def test_an_unreadable_file_then_an_interruption_resumes_to_the_right_store(tmp_path, rng, monkeypatch):
    # With a file skipped, a chunk's images go at `written`, not at the chunk's file position `lo`; the resume
    # point is the next file (lo + the chunk's files, not + the images kept from it); the skipped list is kept
    # in progress.npz. Each mistake left the tests passing: the only unreadable file was the last of its split.
    # The rerun's checkpoint_every=1 is allowed (the bound is < 1, not <= 1).
    src = _split_folder(tmp_path / "src", rng)
    _die_at(monkeypatch, _folder, "decode_image", 5)  # 00.png (skipped), 000, 001 checkpointed; killed after
    with pytest.warns(RuntimeWarning, match="00.png"), pytest.raises(KeyboardInterrupt):
        prepare(src, tmp_path / "st", image_size=8, checkpoint_every=3, workers=1, quiet=True)
    monkeypatch.undo()
    with np.load(tmp_path / "st" / "progress.npz") as p:
        assert (int(p["next_file"]), int(p["written"])) == (3, 2)
    stored = open_store(prepare(src, tmp_path / "st", image_size=8, checkpoint_every=1, workers=1, quiet=True))
    with pytest.warns(RuntimeWarning, match="00.png"):
        direct = load_dataset(str(src), image_size=8)
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(stored, split).images, getattr(direct, split).images)
        np.testing.assert_array_equal(getattr(stored, split).labels, getattr(direct, split).labels)
    assert len(stored.train) == 6 and stored.num_skipped == 1
    assert stored.train.skipped[0][0] == str(src / "train" / "a" / "00.png")


def test_an_interruption_in_the_validation_split_does_not_redo_training(folder, tmp_path, monkeypatch, capsys):
    # The training split's end is saved (split=1): saving split=0 there made a kill in val's first chunk decode the
    # whole training split again; and the rerun's count of what is done adds the finished splits (it said 0 of 21
    # and printed nothing).
    calls = []
    real = _folder.decode_image

    def counted(path, size):
        calls.append(path)
        if len(calls) == 20:  # the second of the 3 validation images (18 train)
            raise KeyboardInterrupt
        return real(path, size)

    monkeypatch.setattr(_folder, "decode_image", counted)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, tmp_path / "st", image_size=8, checkpoint_every=5, workers=1, quiet=True)
    calls.clear()
    monkeypatch.setattr(_folder, "decode_image", lambda path, size: (calls.append(path), real(path, size))[1])
    capsys.readouterr()
    stored = open_store(prepare(folder, tmp_path / "st", image_size=8, checkpoint_every=5, workers=1))
    assert "continuing an interrupted conversion, 18 of 21 images already done" in capsys.readouterr().err
    assert len(calls) == 3  # the validation images alone
    monkeypatch.undo()
    fresh = open_store(prepare(folder, tmp_path / "fresh", image_size=8, quiet=True))
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(stored, split).images, getattr(fresh, split).images)
        np.testing.assert_array_equal(getattr(stored, split).labels, getattr(fresh, split).labels)


def test_a_kill_after_a_splits_last_checkpoint_is_finished_on_rerun(folder, tmp_path, monkeypatch):
    # Killed after the training split's last chunk was checkpointed (next_file == its count) but before its labels
    # file was written: the rerun must still turn the partial labels into train_labels.npy (the check for the
    # partial file, not only `start < n`), or the store is "damaged" for want of it.
    _die_at(monkeypatch, _store.np, "save", 1)  # the first np.save: train_labels.npy
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, tmp_path / "st", image_size=8, checkpoint_every=4, quiet=True)
    monkeypatch.undo()
    assert (tmp_path / "st" / "train_labels.partial.npy").exists()
    with np.load(tmp_path / "st" / "progress.npz") as p:
        assert int(p["split"]) == 0 and int(p["next_file"]) == 18
    stored = open_store(prepare(folder, tmp_path / "st", image_size=8, quiet=True))
    fresh = open_store(prepare(folder, tmp_path / "fresh", image_size=8, quiet=True))
    np.testing.assert_array_equal(stored.train.labels, fresh.train.labels)
    np.testing.assert_array_equal(stored.train.images, fresh.train.images)
    assert not (tmp_path / "st" / "train_labels.partial.npy").exists()


def test_a_store_of_another_seed_is_refused_naming_the_seed(folder, tmp_path):
    # The seed chooses the held-out images, so it is one of the store's settings: left out of them, a rerun with
    # another seed was told the images "have changed", not that the store is of seed=0.
    dst = prepare(folder, tmp_path / "st", image_size=8, quiet=True)
    with pytest.raises(ValueError, match=r"is a store of seed=0, not of seed=1: pass overwrite=True"):
        prepare(folder, dst, image_size=8, seed=1, quiet=True)


def test_the_memory_check_for_the_mean_image_is_exact(tmp_path, rng, monkeypatch):
    # 3 float64 images of 8x8x3 need 4608 bytes: one byte less is refused (a check against twice the memory
    # passed what cannot be allocated), exactly that much is enough.
    from pyalexnet.data import _datasets

    image_folder(tmp_path / "src", rng, classes=("a", "b"), per_class=2)
    monkeypatch.setattr(_datasets, "available_memory", lambda: 3 * 8 * 8 * 3 * 8 - 1)
    with pytest.raises(ValueError, match="of memory for the mean image"):
        prepare(tmp_path / "src", tmp_path / "st", image_size=8, quiet=True)
    monkeypatch.setattr(_datasets, "available_memory", lambda: 3 * 8 * 8 * 3 * 8)
    assert len(open_store(prepare(tmp_path / "src", tmp_path / "st", image_size=8, quiet=True)).train) == 2


def test_prepare_over_an_interrupted_store_with_overwrite_starts_afresh(folder, tmp_path, monkeypatch):
    # overwrite=True removes the old conversion's progress.npz: left there, the new conversion (here of another
    # val_fraction, so another file list) resumed from the old one's checkpoint and its running sums.
    _die_at(monkeypatch, _folder, "decode_image", 12)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, tmp_path / "st", image_size=8, checkpoint_every=5, workers=1, quiet=True)
    monkeypatch.undo()
    assert (tmp_path / "st" / "progress.npz").exists()
    redone = open_store(prepare(folder, tmp_path / "st", image_size=8, val_fraction=0.3, overwrite=True, quiet=True))
    fresh = open_store(prepare(folder, tmp_path / "fresh", image_size=8, val_fraction=0.3, quiet=True))
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(redone, split).images, getattr(fresh, split).images)
        np.testing.assert_array_equal(getattr(redone, split).labels, getattr(fresh, split).labels)
    np.testing.assert_allclose(redone.mean_image, fresh.mean_image, rtol=1e-6)


def test_damaged_store_leftovers_are_still_said_to_be_a_store(folder, tmp_path):
    # Images and a broken meta.json without files.json are what is left of a store (looks_like_store checks the
    # images too), said to be damaged, not read as an image folder with no class folders; an empty folder is not
    # an interrupted conversion; a files.json that is not a dict is no list to compare with (was AttributeError).
    dst = prepare(folder, tmp_path / "st", image_size=8, quiet=True)
    (dst / "files.json").write_text("[]")
    assert prepare(folder, dst, image_size=8, quiet=True) == dst  # the finished store, as it is
    (dst / "files.json").unlink()
    (dst / "meta.json").write_text("{cut")
    with pytest.raises(ValueError, match=r"is damaged \(meta.json"):
        load_dataset(str(dst))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"is damaged \(meta.json"):
        open_store(tmp_path / "empty")


def test_the_disk_room_check_is_exact(tmp_path, rng, monkeypatch):
    # 4 images of 8x8x3 need 768 bytes: a byte less free is refused, exactly that much is enough.
    import collections

    image_folder(tmp_path / "src", rng, classes=("a", "b"), per_class=2)
    usage = collections.namedtuple("usage", "total used free")
    for free in (767, 768):
        monkeypatch.setattr(_store.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - free, free))
        if free < 768:
            with pytest.raises(ValueError, match=r"the store needs 0.8 KiB for 4 images of 8x8"):
                prepare(tmp_path / "src", tmp_path / "st", image_size=8, quiet=True)
        else:
            assert open_store(prepare(tmp_path / "src", tmp_path / "st", image_size=8, quiet=True)).image_size == 8
