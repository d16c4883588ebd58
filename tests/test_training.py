"""train(), evaluate(), checkpoints and resume, divergence, bad arguments and the train/eval commands."""
import json
import math
import re
import sys
import types

import numpy as np
import pytest

import pyalexnet
from pyalexnet import cli
from pyalexnet._backend import to_host
from pyalexnet.data import Dataset, Splits, compute_stats
from pyalexnet.training import CHECKPOINT_NAME, HISTORY_NAME, TrainingDiverged, evaluate, load_checkpoint, train

IMAGE, CROP = 18, 16  # the small preset at 16 px: milliseconds per step


def _images(n, seed):
    """Four classes a small convnet separates at once, unchanged by the loader's flips: a bright square
    at the top or the bottom, a horizontal or a vertical bar, on noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    imgs = rng.integers(0, 60, (n, IMAGE, IMAGE, 3)).astype(np.uint8)
    for i, c in enumerate(labels):
        if c == 0:
            imgs[i, 2:8, 6:12] = 220
        elif c == 1:
            imgs[i, 10:16, 6:12] = 220
        elif c == 2:
            imgs[i, 7:11, :] = 220
        else:
            imgs[i, :, 7:11] = 220
    return Dataset(imgs, labels, ["top", "bottom", "horizontal", "vertical"])


@pytest.fixture(scope="module")
def splits():
    train_ds, val_ds = _images(48, 1), _images(16, 2)
    mean, eigvals, eigvecs = compute_stats(train_ds.images)
    return Splits(train_ds, val_ds, train_ds.classes, IMAGE, CROP, mean, eigvals, eigvecs, "quadrants")


def _train(splits, **kw):
    kw.setdefault("batch_size", 8)
    kw.setdefault("device", "cpu")
    kw.setdefault("workers", 0)
    kw.setdefault("verbose", False)
    kw.setdefault("lr", 0.003)
    return train(splits, preset="small", **kw)


def _params(model):
    # load_checkpoint puts the model on a GPU where there is one, whatever device trained it
    return {k: to_host(v) for k, v in model.parameters().items()}


def test_resume_continues_exactly(splits, tmp_path):
    straight = _train(splits, epochs=2, checkpoint_dir=tmp_path / "a")
    first = _train(splits, epochs=1, checkpoint_dir=tmp_path / "b")
    assert len(first.history) == 1
    resumed = _train(splits, epochs=2, checkpoint_dir=tmp_path / "b", resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    a, b = _params(straight.model), _params(resumed.model)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # The history file holds every epoch once, the same figures as the result.
    rows = [json.loads(line) for line in open(tmp_path / "b" / HISTORY_NAME)]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] == straight.history[1]["train_loss"]
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "images_per_s"):
        assert key in rows[0]


def test_resume_mid_epoch_continues_exactly(splits, tmp_path):
    straight = _train(splits, epochs=1)
    part = _train(splits, epochs=1, checkpoint_dir=tmp_path, stop_after_steps=3)
    assert part.history == []
    resumed = _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history[0]["train_loss"] == straight.history[0]["train_loss"]
    for k, v in _params(straight.model).items():
        np.testing.assert_array_equal(v, _params(resumed.model)[k], err_msg=k)


def test_a_killed_runs_unfinished_checkpoint_is_removed_on_resume(splits, tmp_path):
    # A run killed while writing its checkpoint leaves checkpoint.npz.XXXX.tmp (half a gigabyte for the paper
    # network); nothing removed it. Other files in the folder stay.
    _train(splits, epochs=1, checkpoint_dir=tmp_path, stop_after_steps=2)
    stale = tmp_path / (CHECKPOINT_NAME + ".abc123.tmp")
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / "notes.tmp"
    mine.write_text("the user's")
    _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True, stop_after_steps=1)
    assert not stale.exists()
    assert mine.exists()


def test_resume_refuses_another_seed_batch_or_held_out_fraction(splits, tmp_path):
    _train(splits, epochs=1, checkpoint_dir=tmp_path, stop_after_steps=2)
    for kwargs in (dict(seed=1), dict(batch_size=4), dict(val_fraction=0.2)):
        with pytest.raises(ValueError, match="was written by a run with seed=0 batch_size=8 val_fraction=0.1; "
                                             "resume with the same values"):
            _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True).history[0]["epoch"] == 1


def test_a_plain_resume_is_the_run_itself(splits, tmp_path, monkeypatch):
    recipe = dict(seed=2, batch_size=4, momentum=0.8, weight_decay=1e-3, schedule="constant", epochs=2)
    straight = _train(splits, **recipe)
    _train(splits, checkpoint_dir=tmp_path, stop_after_steps=5, **recipe)
    # Nothing but the data and the checkpoint: the preset (small, where a threshold of 8 px would give these
    # 16 px crops "paper"), seed, batch, momentum, decay, schedule and epochs are the run's.
    import pyalexnet.training

    monkeypatch.setattr(pyalexnet.training, "SMALL_PRESET_BELOW", 8)
    resumed = train(splits, checkpoint_dir=tmp_path, resume=True, device="cpu", workers=0, verbose=False)
    assert resumed.model.preset == "small"
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    for k, v in _params(straight.model).items():
        np.testing.assert_array_equal(v, _params(resumed.model)[k], err_msg=k)


def test_cli_resume_finds_the_runs_data_in_its_checkpoint(tmp_path, capsys):
    from data_files import cifar_folder

    cifar_folder(tmp_path / "c", np.random.default_rng(0), per_batch=8)
    common = ["--checkpoint-dir", str(tmp_path / "run"), "--quiet", "--no-ten-crop", "--device", "cpu", "--workers", "0"]
    assert cli.main(["train", "--data", f"cifar10:{tmp_path / 'c'}", "--batch-size", "8", "--seed", "4",
                     "--steps", "2"] + common) == 0
    # Before, a plain --resume took the builtin set (and seed 0) and refused the checkpoint.
    assert cli.main(["train", "--resume", "--steps", "1"] + common) == 0
    _, meta = load_checkpoint(tmp_path / "run")
    t = meta["training"]
    assert meta["data"] == f"cifar10:{tmp_path / 'c'}" and (t["seed"], t["batch_size"], t["global_step"]) == (4, 8, 3)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings on the way to inf
def test_overwrite_replaces_the_old_runs_checkpoint_with_its_history(splits, tmp_path):
    # The old checkpoint stayed until the new run's first: a new run that diverged at once called it "the last
    # good checkpoint", beside an empty history, and --resume then continued the old run.
    _train(splits, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written") as info:
        _train(splits, epochs=1, checkpoint_dir=tmp_path, overwrite=True, lr=1e30)
    assert info.value.checkpoint is None and not (tmp_path / CHECKPOINT_NAME).exists()
    assert (tmp_path / HISTORY_NAME).read_text() == ""


def test_resume_on_other_data_is_said_and_on_other_classes_refused(splits, tmp_path):
    # --resume --data OTHER trained on OTHER without a word (and eval then tested on it).
    _train(splits, epochs=1, checkpoint_dir=tmp_path)
    moved = Splits(splits.train, splits.val, splits.classes, IMAGE, CROP, splits.mean_image, splits.eigvals,
                   splits.eigvecs, "quadrants, copied")
    with pytest.warns(RuntimeWarning, match="trained on quadrants; it goes on with quadrants, copied"):
        _train(moved, epochs=2, checkpoint_dir=tmp_path, resume=True)
    assert load_checkpoint(tmp_path)[1]["data"] == "quadrants, copied"
    renamed = Splits(splits.train, splits.val, ["up", "down", "horizontal", "vertical"], IMAGE, CROP,
                     splits.mean_image, splits.eigvals, splits.eigvecs, "quadrants, copied")
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match="with the classes top, bottom, horizontal, vertical; quadrants, copied has "
                                         "up, down, horizontal, vertical: resume it with the data it trained on"):
        _train(renamed, epochs=3, checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before


def test_data_sources_are_compared_as_the_paths_they_name(tmp_path):
    from pyalexnet.training import _same_source

    (tmp_path / "d").mkdir()
    assert _same_source(f"cifar10:{tmp_path / 'd'}", f"cifar10:{tmp_path / 'x' / '..' / 'd'}")
    assert _same_source(str(tmp_path / "d"), str(tmp_path / "d") + "/")
    assert not _same_source(f"cifar10:{tmp_path / 'd'}", f"fashion-mnist:{tmp_path / 'd'}")
    assert not _same_source(str(tmp_path / "d"), str(tmp_path / "e")) and not _same_source("builtin", "")


def test_a_call_that_stops_early_says_so_even_when_quiet(splits, tmp_path, capsys):
    # train --steps 3 --quiet printed only the final validation, which read as a finished run's.
    _train(splits, epochs=2, checkpoint_dir=tmp_path, stop_after_steps=3)
    assert "stopped after 3 steps, at step 3/6 of epoch 1 (the checkpoint continues it: --resume)" in \
        capsys.readouterr().err


def test_cli_mistakes_are_named_in_the_commands_words(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "photos"])
    assert info.value.code == 2
    assert "unrecognized arguments: photos (a data set is given with --data: pyalexnet train --data photos)" in \
        capsys.readouterr().err
    assert cli.main(["train", "--resume", "--quiet"]) == 2  # was "resume=True needs checkpoint_dir"
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["info", "--bogus"])
    assert "unrecognized arguments: --bogus\n" in capsys.readouterr().err
    # Under the command's own usage line, which lists its options (it was `usage: pyalexnet [-h] COMMAND ...`).
    with pytest.raises(SystemExit):
        cli.main(["gradcheck", "conv2d"])
    err = capsys.readouterr().err
    assert err.startswith("usage: pyalexnet gradcheck [-h]") and "--points" in err
    assert "pyalexnet gradcheck: error: unrecognized arguments: conv2d" in err


def test_resuming_a_finished_run_says_there_is_nothing_to_train(splits, tmp_path, capsys):
    _train(splits, epochs=2, checkpoint_dir=tmp_path)
    capsys.readouterr()
    assert len(_train(splits, checkpoint_dir=tmp_path, resume=True).history) == 2  # quiet, and still said
    assert "run has done its 2 epochs: nothing to train; pass epochs (--epochs) above 2 to go on" in capsys.readouterr().err
    _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True, verbose=True)
    err = capsys.readouterr().err
    assert "nothing to train (epochs=1 asks for fewer)" in err
    assert "training " not in err  # not "training AlexNet ... for 1 epoch" after it
    assert load_checkpoint(tmp_path)[1]["training"]["global_step"] == 2 * len(splits.train) // 8


def test_a_folder_holding_a_run_is_not_trained_over_by_mistake(splits, tmp_path, capsys):
    _train(splits, epochs=1, checkpoint_dir=tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in (CHECKPOINT_NAME, HISTORY_NAME)}
    with pytest.raises(ValueError, match=r"already holds a run \(after epoch 1 of 1, step 0\): --resume"):
        _train(splits, epochs=2, checkpoint_dir=tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # nothing touched
    with pytest.raises(ValueError, match="pick one"):
        _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True, overwrite=True)
    fresh = _train(splits, epochs=1, checkpoint_dir=tmp_path, overwrite=True, seed=1)
    assert len(fresh.history) == 1 and load_checkpoint(tmp_path)[1]["training"]["seed"] == 1
    assert cli.main(["train", "--data", "builtin", "--checkpoint-dir", str(tmp_path), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def _ctrl_c_at_update(monkeypatch, *at):
    """Sends this process SIGINT (Ctrl-C) from inside the listed steps' updates (1-based): inside the step's
    ops.sgd_update of the weights (one call a step; the biases', without weight decay, follows it)."""
    import os
    import signal

    import pyalexnet.ops

    real, calls = pyalexnet.ops.sgd_update, []

    def sgd_update(*args, **kwargs):
        if kwargs["weight_decay"]:
            calls.append(1)
            for _ in range(at.count(len(calls))):  # a call listed twice gets two
                os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(pyalexnet.ops, "sgd_update", sgd_update)


def test_ctrl_c_stops_at_the_steps_end_with_a_checkpoint_resume_continues(splits, tmp_path, monkeypatch):
    import signal

    straight = _train(splits, epochs=2)
    before = signal.getsignal(signal.SIGINT)
    _ctrl_c_at_update(monkeypatch, 4)  # inside the fourth step's update
    with pytest.raises(KeyboardInterrupt, match=r"stopped at epoch 1, step 4 of 6; .* --resume"):
        _train(splits, epochs=2, checkpoint_dir=tmp_path)
    assert signal.getsignal(signal.SIGINT) is before
    assert load_checkpoint(tmp_path)[1]["training"]["global_step"] == 4  # the whole fourth step, no half
    monkeypatch.undo()
    resumed = _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    for k, v in _params(straight.model).items():
        np.testing.assert_array_equal(v, _params(resumed.model)[k], err_msg=k)


def test_ctrl_c_in_an_epochs_last_step_lets_it_finish(splits, tmp_path, monkeypatch):
    _ctrl_c_at_update(monkeypatch, 6)  # the sixth and last step of epoch 1
    with pytest.raises(KeyboardInterrupt, match=r"stopped at epoch 2, step 0 of 6"):
        _train(splits, epochs=2, checkpoint_dir=tmp_path)
    rows = [json.loads(line) for line in open(tmp_path / HISTORY_NAME)]
    assert [r["epoch"] for r in rows] == [1]  # validated and written before stopping


def test_cli_says_where_ctrl_c_stopped_and_how_to_go_on(tmp_path, monkeypatch, capsys):
    _ctrl_c_at_update(monkeypatch, 1)
    assert cli.main(["train", "--checkpoint-dir", str(tmp_path), "--quiet", "--device", "cpu", "--workers", "0"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: stopped at epoch 1, step 1 of" in err and "--resume" in err


def test_a_second_ctrl_c_stops_at_once(splits, tmp_path, monkeypatch):
    _ctrl_c_at_update(monkeypatch, 2, 2)  # both in the second step
    with pytest.raises(KeyboardInterrupt) as info:
        _train(splits, epochs=1, checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    # said, as the first stop is (it was a bare "interrupted")
    assert str(info.value) == "stopped at once by a second Ctrl-C: no checkpoint had been written yet; nothing was saved"


def test_resume_keeps_the_runs_schedule(splits, tmp_path):
    with pytest.warns(RuntimeWarning, match="never comes"):  # until resumed
        _train(splits, epochs=1, checkpoint_dir=tmp_path, schedule=[1])  # lr / 10 at the start of the second epoch
    # Without a schedule, the run's goes on (not the preset's default, which would keep 0.003 here).
    assert [h["lr"] for h in _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True).history] == \
        [0.003, pytest.approx(0.0003)]
    with pytest.raises(ValueError, match="was trained with the 1 schedule, not plateau: resume without a schedule"):
        _train(splits, epochs=3, checkpoint_dir=tmp_path, resume=True, schedule="plateau")


def test_resume_with_another_lr_takes_it_from_then_on(splits, tmp_path, capsys):
    _train(splits, epochs=1, checkpoint_dir=tmp_path / "plateau", schedule="plateau")
    result = _train(splits, epochs=2, checkpoint_dir=tmp_path / "plateau", resume=True, lr=0.001, verbose=True)
    assert [h["lr"] for h in result.history] == [0.003, 0.001]
    assert "lr 0.001 from now on (it was 0.003; the run started at 0.003)" in capsys.readouterr().err
    # The same command again continues that run exactly: 0.001 is now the rate it was given.
    _train(splits, epochs=3, checkpoint_dir=tmp_path / "plateau", resume=True, lr=0.001, verbose=True)
    err = capsys.readouterr().err
    assert "resuming from" in err and "from now on" not in err
    _, meta = load_checkpoint(tmp_path / "plateau")
    assert meta["training"]["base_lr"] == 0.001
    # With milestones, a new lr is the rate they divide.
    with pytest.warns(RuntimeWarning, match="never comes"):  # until resumed
        _train(splits, epochs=1, checkpoint_dir=tmp_path / "steps", schedule=[1])
    result = _train(splits, epochs=2, checkpoint_dir=tmp_path / "steps", resume=True, lr=0.01)
    assert result.history[1]["lr"] == pytest.approx(0.001)


def test_checkpoint_contents_and_loading(splits, tmp_path):
    result = _train(splits, epochs=1, checkpoint_dir=tmp_path)
    with np.load(tmp_path / CHECKPOINT_NAME, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert {"param/conv1a.weight", "velocity/fc8.bias", "data/mean_image"} <= set(z.files)
    t = meta["training"]
    assert t["epoch"] == 1 and t["step_in_epoch"] == 0 and t["global_step"] == len(splits.train) // 8
    assert (t["seed"], t["val_fraction"]) == (0, 0.1)  # what chose a folder's held-out images
    assert result.data is splits  # evaluate(result.model, result.data) tests on the held-out images
    assert t["schedule"] == {"kind": "steps", "lr": 0.003, "milestones": [10, 13], "base": 0.003} and "random_state" in t
    assert t["base_lr"] == 0.003
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left behind
    model, meta = load_checkpoint(tmp_path)
    loaded = _params(model)
    for k, v in _params(result.model).items():
        np.testing.assert_array_equal(loaded[k], v, err_msg=k)
    assert meta["mean_image"].shape == (IMAGE, IMAGE, 3)
    # the pictures for a person: conv1's filters and the curves, refreshed every epoch
    from PIL import Image

    for name in ("conv1_filters.png", "curves.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 50 and im.size[1] > 50


def test_save_checkpoint_refuses_what_could_not_be_loaded_back(tmp_path):
    from pyalexnet.training import save_checkpoint

    model = pyalexnet.AlexNet(3, preset="tiny", devices="cpu", seed=0)
    path = tmp_path / CHECKPOINT_NAME
    # meta's "model" replaced the model's description: the file then failed in load_checkpoint with
    # "'int' object is not subscriptable".
    for key in ("model", "format"):
        with pytest.raises(ValueError, match=f"meta key '{key}' is reserved"):
            save_checkpoint(path, model, meta={key: 1})
    for mean in (np.zeros((15, 15)), np.zeros((15, 15, 4)), np.zeros((14, 20, 3))):
        with pytest.raises(ValueError, match=r"mean_image must be \(H, W, 3\) with H and W at least .* 15"):
            save_checkpoint(path, model, mean_image=mean)
    assert not path.exists()
    save_checkpoint(path, model, mean_image=np.zeros((17, 16, 3)), meta={"note": 1})
    loaded, meta = load_checkpoint(path)
    assert meta["mean_image"].shape == (17, 16, 3) and meta["note"] == 1


def test_no_validation_images_is_said_with_its_cause(tmp_path):
    # It advised "a val_fraction above 0" whatever the cause: to a run given 0.5, and for a store.
    from data_files import image_folder

    from pyalexnet.data import prepare

    image_folder(tmp_path / "one", np.random.default_rng(0), classes=("a", "b"), per_class=1)
    kw = dict(image_size=18, device="cpu", verbose=False, workers=0)
    with pytest.raises(ValueError, match=r"at val_fraction \(--val-fraction\) 0.5 each class keeps its only image"):
        train(str(tmp_path / "one"), val_fraction=0.5, **kw)
    with pytest.raises(ValueError, match=r"for an image folder without val/, a val_fraction \(--val-fraction\) above 0"):
        train(str(tmp_path / "one"), val_fraction=0, **kw)
    store = prepare(tmp_path / "one", tmp_path / "st", image_size=18, quiet=True)
    with pytest.raises(ValueError, match="st is a store prepared without any: prepare it again with --val-fraction"):
        train(str(store), device="cpu", verbose=False, workers=0)


def test_val_fraction_is_refused_where_it_would_be_ignored(tmp_path, recwarn):
    # It was ignored without a word for a store (33 train / 3 val whatever was asked) and the other sources.
    from data_files import image_folder

    from pyalexnet.data import prepare

    rng = np.random.default_rng(0)
    kw = dict(device="cpu", verbose=False, workers=0, stop_after_steps=1, batch_size=2)
    with pytest.raises(ValueError, match=r"val_fraction \(--val-fraction\) is the share an image folder without val/ "
                                         r"holds out; builtin has its own validation split$"):
        train("builtin", val_fraction=0.5, **kw)
    image_folder(tmp_path / "d", rng, classes=("a", "b"), per_class=4)
    store = prepare(tmp_path / "d", tmp_path / "st", image_size=18, quiet=True)
    with pytest.raises(ValueError, match=r"has its own validation split \(a store's is made by prepare --val-fraction\)"):
        train(str(store), val_fraction=0.5, **kw)
    image_folder(tmp_path / "tv" / "train", rng, classes=("a", "b"), per_class=4)
    image_folder(tmp_path / "tv" / "val", rng, classes=("a", "b"), per_class=1)
    import warnings

    with pytest.warns(RuntimeWarning, match=r"tv has its own val/ images: val_fraction \(--val-fraction\) 0.5 is not used") as said:
        train(str(tmp_path / "tv"), val_fraction=0.5, image_size=18, checkpoint_dir=tmp_path / "run", **kw)
    assert len([w for w in said if "val_fraction" in str(w.message)]) == 1  # said once (load_dataset), not twice
    # The run records 0.5; resuming it and evaluating it (the value comes back from the checkpoint, not from the
    # user) say nothing more.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(checkpoint_dir=tmp_path / "run", resume=True, **dict(kw, stop_after_steps=None, epochs=1))
        assert cli.main(["eval", str(tmp_path / "run"), "--center-crop", "--quiet", "--device", "cpu"]) == 0
    train(str(tmp_path / "d"), val_fraction=0.5, image_size=18, **kw)  # a folder without val/: its option


def test_overfits_a_tiny_dataset(splits):
    result = _train(splits, epochs=20, lr=0.003, weight_decay=0.0, schedule="constant")
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    on_train = evaluate(result.model, splits, split="train", ten_crop=False, return_predictions=True)
    assert on_train["top1"] <= 0.05, (on_train, result.history[-1])
    assert on_train["predictions"].shape == (len(splits.train),)
    assert (on_train["predictions"] != splits.train.labels).mean() == on_train["top1"]
    ten = evaluate(result.model, splits, ten_crop=True)
    assert set(ten) >= {"top1", "top5"} and 0 <= ten["top1"] <= 1 and ten["top5"] is None  # 4 classes


def test_plateau_schedule_divides_lr_at_most_three_times():
    from pyalexnet.training import PlateauSchedule

    s = PlateauSchedule(0.01, patience=1)
    lrs = [s.after_epoch(e, err) for e, err in enumerate([0.5, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3])]
    assert lrs[:3] == [0.01, 0.01, 0.001]
    assert s.reductions == 3 and math.isclose(lrs[-1], 1e-5)


def test_small_preset_keeps_its_rate_through_the_early_wobble():
    # The small network sits near chance for its first epochs, where the validation error goes up and
    # down; its default schedule must not cut the rate there (a plateau rule did, and the run ended at
    # 46-67% error instead of far below).
    from pyalexnet.training import _make_schedule, defaults_for

    d = defaults_for("small")
    s = _make_schedule(d["schedule"], d["lr"], d["patience"])
    s.at_epoch_start(0)
    lrs = [s.after_epoch(e, err) for e, err in enumerate([0.82, 0.89, 0.79, 0.80, 0.75] + [0.5] * (d["epochs"] - 5))]
    assert lrs[:9] == [d["lr"]] * 9
    assert math.isclose(lrs[-1], d["lr"] / 100)
    assert defaults_for("paper")["schedule"] == "plateau"  # the paper's own rule for the paper's network


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings on the way to inf
def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(splits, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"step \d+") as info:
        _train(splits, epochs=2, lr=1e6, checkpoint_dir=tmp_path, checkpoint_every=1)
    exc = info.value
    assert not math.isfinite(exc.loss) and exc.global_step >= 1
    assert exc.checkpoint is not None and "kept" in str(exc)
    model, meta = load_checkpoint(exc.checkpoint)
    assert meta["training"]["global_step"] == exc.global_step  # the last step whose loss was finite
    assert all(np.isfinite(v).all() for v in _params(model).values())


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(data="no-such-dataset"), ValueError, "unknown dataset"),
    (dict(data="/no/such/folder"), FileNotFoundError, "does not exist"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(momentum=1.5), ValueError, "momentum"),
    (dict(schedule="sometimes"), ValueError, "schedule"),
    (dict(resume=True), ValueError, "checkpoint_dir"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(batch_size=1000), ValueError, "larger than the training set"),
])
def test_bad_arguments_get_clear_errors(splits, kwargs, exc, match):
    kwargs = dict(kwargs)
    data = kwargs.pop("data", splits)
    with pytest.raises(exc, match=match):
        train(data, workers=0, verbose=False, **kwargs)


def test_a_mismatched_model_is_refused(splits):
    from pyalexnet.model import AlexNet

    with pytest.raises(ValueError, match="crops"):
        train(splits, model=AlexNet(4, preset="small", devices="cpu"), verbose=False)
    with pytest.raises(ValueError, match="classes"):
        train(splits, model=AlexNet(5, preset="small", input_size=CROP, devices="cpu"), verbose=False)


def test_cli_train_and_eval_on_builtin(tmp_path, capsys):
    rc = cli.main(["train", "--steps", "2", "--batch-size", "16", "--checkpoint-dir", str(tmp_path), "--quiet",
                   "--no-ten-crop", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "top-1 error" in out and str(tmp_path) in out
    # With a checkpoint folder, the test pictures are drawn there too (10 classes: the confusion matrix).
    for name in ("predictions.png", "neighbours.png", "confusion.png"):
        assert (tmp_path / name).exists() and str(tmp_path / name) in out, name
    assert cli.main(["eval", str(tmp_path), "--center-crop", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 1000 and 0 <= result["top1"] <= 1 and result["data"] == "builtin"


def test_progress_bars_cover_validation_and_evaluation(splits, capsys):
    result = _train(splits, epochs=1, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1:" in err and "epoch 1/1 validation:" in err and "0/16 [" in err  # cleared when done
    evaluate(result.model, splits, progress=True)
    err = capsys.readouterr().err
    assert "ten-crop test" in err and "16/16" in err
    evaluate(result.model, splits, ten_crop=False, progress=False)
    _train(splits, epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def _fake_ipython(monkeypatch, config):
    """sys.modules' IPython as a Jupyter kernel's (config with IPKernelApp) or terminal IPython's shell."""
    shell = types.SimpleNamespace(config=config)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_progress_bars_by_default_in_a_jupyter_kernel_as_on_a_terminal_not_in_logs(splits, capsys, monkeypatch):
    from pyalexnet import _backend as B
    from pyalexnet.data import _store

    # A notebook's stderr is no terminal: train() there showed no bar through an epoch's hours.
    model = _train(splits, epochs=1, progress=False).model
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not B.show_progress(None) and B.show_progress(True) and not B.show_progress(False)
    evaluate(model, splits, ten_crop=False)
    assert capsys.readouterr().err == ""
    _fake_ipython(monkeypatch, {"TerminalInteractiveShell": {}})  # terminal IPython: its stderr is the terminal
    assert not B.show_progress(None)
    _fake_ipython(monkeypatch, {"IPKernelApp": {"connection_file": "kernel-1.json"}})
    monkeypatch.setattr(B, "_said_text_bars", True)  # (the next test checks what is said without ipywidgets)
    assert B.show_progress(None) and not B.show_progress(False)
    evaluate(model, splits, ten_crop=False)
    assert "centre-crop test" in capsys.readouterr().err
    evaluate(model, splits, ten_crop=False, progress=False)
    assert capsys.readouterr().err == ""
    for quiet in (False, True):
        bar = _store._progress_bar(10, 0, "converting", quiet=quiet)  # prepare's
        assert bar.disable is quiet
        bar.close()
    # Outside any shell (a script that imported IPython), or with an IPython whose API differs: no bars.
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not B.show_progress(None)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace())
    assert not B.show_progress(None)


def test_in_a_jupyter_kernel_a_run_says_what_it_does_on_stdout_not_tinted_as_errors(splits, capsys, monkeypatch,
                                                                                      tmp_path):
    # Notebooks show stderr on a red ground: every epoch line of a healthy run read as an error. On a terminal (and
    # in logs) they stay on stderr, leaving stdout to results and pipes.
    from pyalexnet import _backend as B

    _train(splits, epochs=1, verbose=True, progress=False)
    said = capsys.readouterr()
    assert "epoch 1/1: train loss" in said.err and "training " in said.err and said.out == ""
    _fake_ipython(monkeypatch, {"IPKernelApp": {"connection_file": "kernel-1.json"}})
    monkeypatch.setattr(B, "_said_text_bars", True)
    _train(splits, epochs=1, verbose=True, progress=False, checkpoint_dir=tmp_path)
    _train(splits, epochs=2, verbose=True, progress=False, checkpoint_dir=tmp_path, resume=True)
    said = capsys.readouterr()
    for line in ("training AlexNet", "epoch 1/1: train loss", "resuming from", "epoch 2/2: train loss"):
        assert line in said.out, line
    assert said.err == ""


def test_no_widget_warning_where_no_bar_is_drawn_and_at_the_callers_line_where_one_is(splits, monkeypatch):
    """A Jupyter kernel without ipywidgets: tqdm.auto warned "IProgress not found" when imported, at its own line
    (tqdm/auto.py:21), and was imported whether a bar was drawn or not (progress=False said it too)."""
    import warnings

    from pyalexnet import _backend as B

    model = _train(splits, epochs=1, progress=False).model
    _fake_ipython(monkeypatch, {"IPKernelApp": {"connection_file": "kernel-1.json"}})
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):  # not imported yet in this kernel
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(B, "_said_text_bars", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(model, splits, ten_crop=False, progress=False)
        _train(splits, epochs=1, progress=False)
    assert [str(w.message) for w in caught] == []
    assert "tqdm.auto" not in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(model, splits, ten_crop=False)  # a bar, drawn as text
        evaluate(model, splits, ten_crop=False)
    said = [w for w in caught if "ipywidgets" in str(w.message)]
    assert len(said) == 1 and said[0].filename == __file__ and "drawn as text" in str(said[0].message)
    assert "tqdm.auto" not in sys.modules  # its own warning would follow it


def test_a_kernel_is_told_by_its_shell_class_too(monkeypatch):
    """A kernel launched without IPKernelApp in its configuration (gateway launchers) is still a kernel: its shell
    is ipykernel's ZMQInteractiveShell (Colab's shell subclasses it)."""
    from pyalexnet import _backend as B

    zmqshell = types.ModuleType("ipykernel.zmqshell")

    class ZMQInteractiveShell:
        config: dict = {}

    class ColabShell(ZMQInteractiveShell):
        pass

    zmqshell.ZMQInteractiveShell = ZMQInteractiveShell
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", zmqshell)
    for shell, kernel in ((ColabShell(), True), (ZMQInteractiveShell(), True),
                          (types.SimpleNamespace(config={}), False)):
        monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
        assert B.show_progress(None) is kernel


def test_a_train_result_and_its_data_print_on_one_short_line(splits):
    """A notebook cell ending with train(...) printed the dataclass's repr: the mean image twice, in full."""
    result = _train(splits, epochs=1)
    for text in (repr(result), repr(splits)):
        assert "\n" not in text and len(text) < 1000, text
    assert "mean_image=<float32 array (18, 18, 3)>" in repr(splits)
    assert "history=[1 epoch; last: val_top1 " in repr(result) and "model=<AlexNet preset=small" in repr(result)
    # Whatever a caller put in one, its repr says it and does not raise (it was a TypeError for history=None).
    from pyalexnet.training import TrainResult

    for history, shown in ((None, "history=None"), ([], "history=[0 epochs]"), (["row"], "history=[1 epoch]"),
                           ([{"val_top1": None, "val_loss": None}], "history=[1 epoch]"),  # an empty split's
                           ([{"val_top1": np.float32(0.25), "val_loss": 2}], "last: val_top1 0.25, val_loss 2]")):
        text = repr(TrainResult(model=result.model, history=history, checkpoint=None, history_path=None,
                                mean_image=None, classes=tuple(f"c{i}" for i in range(7)), data=None))
        assert shown in text and "classes=('c0', 'c1', 'c2', 'c3', 'c4', ... (7 in all))" in text, text
    many = Splits(splits.train, splits.val, [f"n{i:08d}" for i in range(1000)], IMAGE, CROP, splits.mean_image,
                  splits.eigvals, splits.eigvecs, "imagenet")
    assert "'n00000004', ... (1000 in all)]" in repr(many) and len(repr(many)) < 1000


def test_cli_eval_names_the_classes_it_gets_wrong_most(splits, tmp_path, capsys, monkeypatch):
    import pyalexnet

    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run")
    labels = splits.val.labels
    guesses = labels.copy()
    wrong_of = {1: 1, 2: 2}  # class 1: one image wrong, class 2: two
    for c, k in wrong_of.items():
        guesses[np.flatnonzero(labels == c)[:k]] = (c + 1) % 4
    n = len(labels)
    monkeypatch.setattr(pyalexnet, "evaluate", lambda *a, **k: {
        "top1": float((guesses != labels).mean()), "top5": 0.0, "loss": 1.0, "images": n, "predictions": guesses})
    monkeypatch.setattr(pyalexnet.data, "load_dataset", lambda *a, **k: splits)
    assert cli.main(["eval", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    per = np.bincount(labels, minlength=4)
    assert (f"hardest classes (top-1 errors): {splits.classes[2]} 2 of {per[2]}; {splits.classes[1]} 1 of {per[1]}\n"
            in out)  # most often wrong first, in counts (1 of 400 was "0%"), none for classes always right


def test_cli_eval_tests_on_the_runs_held_out_images_and_draws_figure4(splits, tmp_path, capsys, monkeypatch):
    import pyalexnet.data

    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", seed=3, val_fraction=0.25)
    asked = []

    def load_dataset(spec, **kwargs):  # stands for a folder without val/: its split follows seed and fraction
        asked.append((spec, kwargs))
        return splits

    monkeypatch.setattr(pyalexnet.data, "load_dataset", load_dataset)
    assert cli.main(["eval", str(tmp_path / "run"), "--data", "some/folder", "--json", "--pictures", "--quiet"]) == 0
    assert asked == [("some/folder", {"seed": 3, "val_fraction": 0.25, "progress": False, "train_sample": 2000,
                                      "image_size": IMAGE, "note_small_images": False})]  # the size the run's images had
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == len(splits.val) and 0 <= result["neighbour_agreement"] <= 1
    # Each class's share of wrong top-1 answers: together they make the overall error.
    per_class = result["per_class"]
    assert [c["class"] for c in per_class] == list(splits.classes)
    assert [c["images"] for c in per_class] == np.bincount(splits.val.labels, minlength=4).tolist()
    assert sum(c["images"] * c["top1_error"] for c in per_class) == pytest.approx(result["top1"] * result["images"])
    assert [c["wrong"] for c in per_class] == [round(c["images"] * c["top1_error"]) for c in per_class]
    assert result["pictures"] == [str(tmp_path / "run" / name) for name in
                                  ("predictions.png", "neighbours.png", "confusion.png")]  # 4 classes: a matrix too
    from PIL import Image

    for path in result["pictures"]:
        with Image.open(path) as im:
            assert im.size[0] > 150 and im.size[1] > 150
    # Into another folder, and said in words without --json.
    assert cli.main(["eval", str(tmp_path / "run" / CHECKPOINT_NAME), "--pictures", str(tmp_path / "pics"),
                     "--center-crop", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "predictions.png" in out and "share their test image's class" in out
    assert (tmp_path / "pics" / "neighbours.png").exists()
    # Its mistakes instead of a sample, in files of their own beside the sample's; --mistakes alone is refused.
    sample = {name: (tmp_path / "pics" / name).read_bytes() for name in ("predictions.png", "neighbours.png")}
    assert cli.main(["eval", str(tmp_path / "run"), "--pictures", str(tmp_path / "pics"), "--mistakes", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "the pictures show mistakes: " in out or "no mistakes among 16 test images" in out
    assert "mistakes_predictions.png" in out and "mistakes_neighbours.png" in out
    for name, data in sample.items():
        assert (tmp_path / "pics" / name).read_bytes() == data
        assert (tmp_path / "pics" / ("mistakes_" + name)).read_bytes() != data
    assert cli.main(["eval", str(tmp_path / "run"), "--mistakes"]) == 2
    assert "pass --pictures too" in capsys.readouterr().err
    # Readable names from a file of "ID name" lines (ImageNet's synset_words.txt); a missing one is one line.
    before = (tmp_path / "pics" / "predictions.png").read_bytes()
    (tmp_path / "names.txt").write_text("top the square on top\nbottom the square below\n")
    assert cli.main(["eval", str(tmp_path / "run"), "--pictures", str(tmp_path / "pics"), "--center-crop", "--quiet",
                     "--class-names", str(tmp_path / "names.txt")]) == 0
    assert (tmp_path / "pics" / "predictions.png").read_bytes() != before
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "run"), "--pictures", "--quiet", "--class-names", "nope.txt"]) == 2
    assert "class names file nope.txt does not exist" in capsys.readouterr().err


def test_eval_on_a_folder_decodes_its_test_images_not_its_training_set(tmp_path, rng, capsys, monkeypatch):
    """ImageNet's training folder would need 250 GB decoded: eval (and evaluate given the training mean)
    decodes the test images and only the pictures' sample of training images."""
    from data_files import image_folder

    import pyalexnet.viz
    from pyalexnet.data import _datasets, _folder
    from pyalexnet.training import save_checkpoint

    for split, n in (("train", 7), ("val", 2)):
        image_folder(tmp_path / "d" / split, rng, classes=("a", "b"), per_class=n)
    model = pyalexnet.AlexNet(2, preset="small", input_size=224, seed=0)
    mean = np.full((256, 256, 3), 120.0, np.float32)
    save_checkpoint(tmp_path / "run" / CHECKPOINT_NAME, model, mean_image=mean, meta={"data": str(tmp_path / "d")})
    decoded = []
    decode = _folder.decode_image
    monkeypatch.setattr(_folder, "decode_image", lambda path, size: decoded.append(path) or decode(path, size))
    monkeypatch.setattr(pyalexnet.viz, "NEIGHBOUR_POOL", 3)
    # Memory for the 4 test images and 3 training ones, not for all 18.
    monkeypatch.setattr(_datasets, "available_memory", lambda: int(10 * 256 * 256 * 3 / 0.8))
    assert cli.main(["eval", str(tmp_path / "run"), "--json", "--quiet", "--center-crop",
                     "--pictures", str(tmp_path / "pics")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 4 and (tmp_path / "pics" / "neighbours.png").exists()
    assert sum("/train/" in p for p in decoded) == 3 and sum("/val/" in p for p in decoded) == 4
    # evaluate() given the checkpoint's mean: the same figures from the same test images.
    decoded.clear()
    again = evaluate(model, str(tmp_path / "d"), mean_image=mean, ten_crop=False, progress=False)
    assert sum("/train/" in p for p in decoded) == 3
    assert {k: again[k] for k in ("top1", "images")} == {k: result[k] for k in ("top1", "images")}
    assert result["top5"] is None  # 2 classes: always 0, not a measurement
    np.testing.assert_allclose(again["loss"], result["loss"], rtol=1e-6)
    # Without a mean it needs the whole training set's, which does not fit here: the clear refusal.
    with pytest.raises(MemoryError, match="pyalexnet prepare"):
        evaluate(model, str(tmp_path / "d"), ten_crop=False, progress=False)


def test_cli_predict_classifies_image_files_as_evaluation_does(splits, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from pyalexnet.data import ten_crops

    result = _train(splits, epochs=3, checkpoint_dir=tmp_path / "run")
    paths = []
    for i in (0, 5):
        paths.append(str(tmp_path / f"val{i}.png"))
        Image.fromarray(splits.val.images[i]).save(paths[-1])
    (tmp_path / "broken.jpg").write_text("not an image")
    assert cli.main(["predict", str(tmp_path / "run"), *paths, "--json", "--top", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == paths
    assert cli.main(["predict", str(tmp_path / "run"), *paths, "--json", "--top", "4", "--batch-size", "1"]) == 0
    one_by_one = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The same answers a batch at a time (numpy's BLAS may round the fully connected layers differently).
    assert [[t["class"] for t in r["top"]] for r in one_by_one] == [[t["class"] for t in r["top"]] for r in rows]
    np.testing.assert_allclose([[t["probability"] for t in r["top"]] for r in one_by_one],
                               [[t["probability"] for t in r["top"]] for r in rows], rtol=1e-5)
    for i, row in zip((0, 5), rows):
        # The same numbers as the model's ten-crop softmax of that test image, most probable first.
        crops = ten_crops(splits.val.images[i:i + 1], CROP, result.mean_image)
        probs = sum(to_host(result.model.predict(c))[0].astype(np.float64) for c in crops) / 10
        order = np.argsort(-probs, kind="stable")[:4]
        assert [t["class"] for t in row["top"]] == [splits.classes[c] for c in order]
        np.testing.assert_allclose([t["probability"] for t in row["top"]], probs[order], rtol=1e-6)
    # Words, names from a file, and a broken file reported and skipped with exit status 1.
    (tmp_path / "names.txt").write_text("top square-on-top\nvertical upright-bar\n")
    assert cli.main(["predict", str(tmp_path / "run"), paths[0], str(tmp_path / "broken.jpg"), "--top", "4",
                     "--center-crop", "--class-names", str(tmp_path / "names.txt")]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{paths[0]}: ") and "square-on-top" in out and "upright-bar" in out and "%" in out
    assert "cannot read" in err and "broken.jpg" in err
    # A folder: its images (in sub-folders too, by name); one without any is said and counts as a failure.
    (tmp_path / "photos" / "more").mkdir(parents=True)
    Image.fromarray(splits.val.images[5]).save(tmp_path / "photos" / "b.png")
    Image.fromarray(splits.val.images[0]).save(tmp_path / "photos" / "more" / "a.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tmp_path / "run"), str(tmp_path / "photos"), "--json", "--top", "4"]) == 0
    in_folder = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in in_folder] == [str(tmp_path / "photos" / "b.png"), str(tmp_path / "photos" / "more" / "a.png")]
    for row, same in zip(in_folder, (rows[1], rows[0])):  # the same answers as those files by name
        assert [t["class"] for t in row["top"]] == [t["class"] for t in same["top"]]
        np.testing.assert_allclose([t["probability"] for t in row["top"]],
                                   [t["probability"] for t in same["top"]], rtol=1e-5)
    assert cli.main(["predict", str(tmp_path / "run"), str(tmp_path / "empty"), paths[0]]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{paths[0]}: ") and f"{tmp_path / 'empty'} holds no image files" in err
    for option in ("--top", "--batch-size"):  # refused by the parser, as train's counts are
        with pytest.raises(SystemExit) as exc:
            cli.main(["predict", str(tmp_path / "run"), paths[0], option, "0"])
        assert exc.value.code == 2 and f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err
    # --picture: the images with their bars, as the bars' lengths say, stdout staying JSON with --json.
    from pyalexnet.commands import predict as predict_command
    from pyalexnet.viz import predictions_image

    assert cli.main(["predict", str(tmp_path / "run"), *paths, "--top", "4", "--json", "--picture",
                     str(tmp_path / "guesses.png")]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["image"] for line in out.splitlines()] == paths and "wrote" in err
    with Image.open(tmp_path / "guesses.png") as im:
        drawn = np.asarray(im.convert("RGB"))
    title = f"{tmp_path / 'run'}: each image's 4 most probable classes (ten-crop)"
    probs = np.array([[next(t["probability"] for t in r["top"] if t["class"] == c) if c in [t["class"] for t in r["top"]]
                       else 0.0 for c in splits.classes] for r in rows])
    assert len(splits.classes) == 4  # so the top 4 printed are the whole softmax
    expected = predictions_image(np.stack([splits.val.images[i] for i in (0, 5)]), None, probs, splits.classes,
                                 top=4, title=title, captions=["val0.png", "val5.png"])
    np.testing.assert_array_equal(drawn, np.asarray(expected))  # the decoded images, their names and bars
    assert (drawn == np.array([158, 202, 225], np.uint8)).all(axis=2).sum() > 50  # the bars, light blue
    assert not (drawn == np.array([250, 140, 135], np.uint8)).all(axis=2).any()  # no true class: nothing red
    # Only the first PICTURE_MAX images are drawn, and it says so.
    monkeypatch.setattr(predict_command, "PICTURE_MAX", 1)
    assert cli.main(["predict", str(tmp_path / "run"), *paths, "--picture", str(tmp_path / "one.png")]) == 0
    assert "(the first 1 of 2 images)" in capsys.readouterr().out
    assert cli.main(["predict", str(tmp_path / "run"), paths[0], "--top", "20", "--picture",
                     str(tmp_path / "top20.png")]) == 0
    with Image.open(tmp_path / "top20.png") as im:  # as many classes as there are, as the title now says
        assert im.size == predictions_image(splits.val.images[:1], None, probs[:1], splits.classes, top=4,
                                            title=f"{tmp_path / 'run'}: each image's 4 most probable classes "
                                                  "(ten-crop)").size
    for where, said in ((tmp_path, "is a folder"), (tmp_path / "x.foo", "by the file's ending"),
                        (tmp_path / "x.psd", "a format Pillow can write"),  # Pillow reads PSD, cannot write it
                        (tmp_path / "nowhere" / "x.png", "does not exist")):
        assert cli.main(["predict", str(tmp_path / "run"), paths[0], "--picture", str(where)]) == 2
        assert said in capsys.readouterr().err


def test_cli_says_what_is_wrong_with_a_path_in_one_line(splits, tmp_path, capsys, monkeypatch):
    # Each of these ended in a Python traceback (some only after the work was done).
    (tmp_path / "afile").write_text("x")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run")
    evaluated = []
    monkeypatch.setattr(pyalexnet, "evaluate", lambda *a, **k: evaluated.append(1))
    for argv, match in [(["train", "--steps", "1", "--checkpoint-dir", str(tmp_path / "afile")], "is a file, not a folder"),
                        (["train", "--steps", "1", "--history", str(tmp_path)], "is a folder, not a file"),
                        # an existing file was emptied without a word
                        (["train", "--steps", "1", "--history", str(tmp_path / "afile")],
                         r"afile already exists: --overwrite \(overwrite=True\) replaces it"),
                        (["eval", str(tmp_path / "trunc.npz")], "is not a readable pyalexnet checkpoint"),
                        (["predict", str(tmp_path / "notes.txt"), "x.png"], r"\(not an .npz archive\): pass the"),
                        (["eval", str(tmp_path / "run"), "--pictures", str(tmp_path / "afile")], "is a file, not a folder")]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert match is not None and err.count("\n") == 1 and "Traceback" not in err and "allow_pickle" not in err
        assert __import__("re").search(match, err), err
    assert not evaluated  # --pictures was checked before the evaluation
    assert (tmp_path / "afile").read_text() == "x"  # --history refused before it was opened


def test_resume_without_a_checkpoint_says_it_starts_afresh_even_when_quiet(tmp_path, capsys):
    assert cli.main(["train", "--checkpoint-dir", str(tmp_path / "typo"), "--resume", "--steps", "1", "--quiet"]) == 0
    assert f"pyalexnet train: warning: no checkpoint in {tmp_path / 'typo'} yet: starting from scratch" in \
        capsys.readouterr().err


def test_cli_warnings_are_one_line_each(tmp_path, rng, capsys):
    import warnings

    from data_files import image_folder

    image_folder(tmp_path / "d", rng, per_class=3)
    (tmp_path / "d" / "cat" / "broken.png").write_bytes(b"not a png")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        assert cli.main(["prepare", str(tmp_path / "d"), str(tmp_path / "st"), "--size", "8", "-q"]) == 0
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if "broken.png" in l)
    assert line.startswith("pyalexnet prepare: warning: skipping unreadable image")
    assert ".py:" not in err and "decode_many(" not in err  # no Python file position or source line


def test_eval_refuses_a_data_set_with_other_classes_and_decodes_at_the_runs_size(tmp_path, rng, capsys):
    from data_files import image_folder

    for name, classes in (("d", ("bird", "cat", "dog")), ("renamed", ("ant", "cat", "zebra"))):
        image_folder(tmp_path / name, rng, classes=classes, per_class=4)
    assert cli.main(["prepare", str(tmp_path / "d"), str(tmp_path / "st"), "--size", "32", "-q"]) == 0
    assert cli.main(["train", "--data", str(tmp_path / "st"), "--steps", "2", "--batch-size", "4", "--quiet",
                     "--checkpoint-dir", str(tmp_path / "run")]) == 0
    mode = {name: (tmp_path / "run" / name).stat().st_mode & 0o777 for name in (CHECKPOINT_NAME, HISTORY_NAME)}
    assert mode[CHECKPOINT_NAME] == mode[HISTORY_NAME]  # was 0600 (mkstemp's) whatever the umask
    capsys.readouterr()
    # Its own image folder, decoded at 32 px as the store was (it was always 256 px: "the model takes 28x28
    # crops but this data set gives 224x224").
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "d"), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] > 0
    # Other class names: its labels would be scored against the wrong classes (it printed an error rate).
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "renamed"), "--quiet"]) == 2
    assert "'bird' / 'ant'" in capsys.readouterr().err


def test_a_folder_of_small_images_trains_the_small_network_at_its_own_size(tmp_path, rng, capsys):
    # Folders were always decoded at 256 px: 40 px images trained the 57M-parameter paper network at 224.
    from data_files import image_folder

    image_folder(tmp_path / "d", rng, classes=("a", "b"), per_class=6)
    argv = ["train", "--data", str(tmp_path / "d"), "--image-size", "40", "--batch-size", "4", "--quiet",
            "--checkpoint-dir", str(tmp_path / "run"), "--epochs", "2"]
    assert cli.main(argv[:-2] + ["--steps", "2"]) == 0
    meta = json.loads(str(np.load(tmp_path / "run" / CHECKPOINT_NAME)["meta"]))
    assert meta["model"]["preset"] == "small" and meta["model"]["input_size"] == 35
    assert meta["training"]["image_size"] == 40
    # A plain --resume decodes the folder at the run's size again.
    assert cli.main(["train", "--checkpoint-dir", str(tmp_path / "run"), "--resume", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "top-1 error" in out and "top-5 error" not in out  # two classes: a top-5 error is always 0
    # From Python: the checkpoint's mean image gives the size, or image_size= does.
    model, meta = load_checkpoint(tmp_path / "run")
    a = evaluate(model, str(tmp_path / "d"), mean_image=meta["mean_image"], ten_crop=False, progress=False)
    b = evaluate(model, str(tmp_path / "d"), image_size=40, ten_crop=False, progress=False)
    assert a["images"] == b["images"] > 0
    assert cli.main(["train", "--data", str(tmp_path / "d"), "--batch-size", "64", "--image-size", "40"]) == 2
    assert "pass a smaller one (--batch-size)" in capsys.readouterr().err
    # A size too small for the network is said as the size, before a folder is decoded (it was the model's
    # "input size 14 is too small for this preset" after decoding); another source's images are not resized,
    # so --image-size there is refused (it was ignored: a 64 px run trained on builtin's 40 px images).
    with pytest.raises(ValueError, match=r"image_size \(--image-size\) 17 gives 14x14 crops, too small for the small "
                                         r"network .*: at least 18"):
        train("builtin", image_size=17, progress=False, verbose=False)
    with pytest.raises(ValueError, match="builtin holds 40x40 images: image_size .* sets the side an image folder"):
        train("builtin", image_size=64, progress=False, verbose=False)
    with pytest.raises(ValueError, match="unknown preset 'Small'"):  # not "no image side ... fits"
        train("builtin", preset="Small", image_size=40, progress=False, verbose=False)
    assert cli.main(["prepare", str(tmp_path / "d"), str(tmp_path / "st12"), "--size", "12", "-q"]) == 0
    assert "--size 12 gives 10x10 crops, too small for any network" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "st12"), "--quiet"]) == 2
    assert "holds 12x12 images (10x10 crops), too small for the small network" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "st12"), "--quiet", "--image-size", "20"]) == 2
    assert "holds 12x12 images: image_size (--image-size) 20" in capsys.readouterr().err
    # Resumed on other data, the size is the run's, not an option the command was given.
    assert cli.main(["train", "--checkpoint-dir", str(tmp_path / "run"), "--resume", "--data", str(tmp_path / "st12"),
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds 12x12 images, but the run resumed from" in err and "trained on 40x40 ones" in err
    assert "--image-size" not in err and str(tmp_path / "d") in err  # the data it trained on
    # Options are named as the command line spells them (it said stop_after_steps, and "invalid _schedule value").
    for argv, said in ((["--steps", "0"], "argument --steps: must be at least 1, got 0"),
                       (["--schedule", "foo"], "argument --schedule: must be 'plateau', 'constant' or epochs")):
        with pytest.raises(SystemExit):
            cli.main(["train", *argv])
        assert said in capsys.readouterr().err


def test_cli_errors_are_one_line(capsys):
    assert cli.main(["train", "--data", "no-such-dataset"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert cli.main(["eval", "/no/such/checkpoint.npz"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--resume" in out


@pytest.mark.gpu
def test_one_step_on_gpu_equals_cpu(splits, cp):
    cpu = _train(splits, epochs=1, stop_after_steps=1, device="cpu")
    gpu = _train(splits, epochs=1, stop_after_steps=1, device="cuda")
    for k, v in _params(cpu.model).items():
        g = cp.asnumpy(gpu.model.parameters()[k])
        np.testing.assert_allclose(g, v, rtol=1e-4, atol=1e-6 + 1e-4 * np.abs(v).max(), err_msg=k)


def test_a_new_run_over_an_old_one_removes_the_old_runs_pictures(splits, tmp_path, capsys):
    # --overwrite kept the old curves and filters, and the new run's summary named them as its own.
    _train(splits, epochs=1, checkpoint_dir=tmp_path)
    (tmp_path / "predictions.png").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    assert (tmp_path / "curves.png").exists() and (tmp_path / "conv1_filters.png").exists()
    _train(splits, epochs=1, checkpoint_dir=tmp_path, overwrite=True, stop_after_steps=1)
    for name in ("curves.png", "conv1_filters.png", "predictions.png"):
        assert not (tmp_path / name).exists(), name
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files go


def test_checkpoint_every_without_a_folder_is_refused(splits, capsys):
    with pytest.raises(ValueError, match=r"checkpoint_every \(--checkpoint-every\) needs checkpoint_dir"):
        _train(splits, epochs=1, checkpoint_every=2)
    assert cli.main(["train", "--checkpoint-every", "10", "--steps", "1", "--quiet"]) == 2
    assert "needs checkpoint_dir (--checkpoint-dir)" in capsys.readouterr().err


def test_a_run_that_ignores_ctrl_c_keeps_ignoring_it(splits, tmp_path, monkeypatch):
    import signal

    # A script's background job (`pyalexnet train ... &`) starts with SIGINT ignored, so that the script's Ctrl-C
    # does not reach it; training installed its own handler over that and stopped.
    straight = _train(splits, epochs=1)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _ctrl_c_at_update(monkeypatch, 2)
        result = _train(splits, epochs=1, checkpoint_dir=tmp_path)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [h["train_loss"] for h in result.history] == [h["train_loss"] for h in straight.history]
    assert load_checkpoint(tmp_path)[1]["training"]["global_step"] == 6  # the whole epoch


def test_ctrl_c_without_a_checkpoint_folder_says_nothing_was_saved(splits, monkeypatch, capsys):
    _ctrl_c_at_update(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt, match=r"stopped at epoch 1, step 1 of 6; nothing was saved"):
        _train(splits, epochs=1)
    _ctrl_c_at_update(monkeypatch, 1)
    assert cli.main(["train", "--quiet", "--device", "cpu", "--workers", "0"]) == 130
    assert "nothing was saved (checkpoint_dir, --checkpoint-dir" in capsys.readouterr().err


def test_cli_train_without_a_checkpoint_folder_says_nothing_was_saved(capsys):
    assert cli.main(["train", "--steps", "1", "--batch-size", "16", "--quiet", "--no-ten-crop", "--device", "cpu"]) == 0
    assert "nothing was saved: --checkpoint-dir DIR keeps the model" in capsys.readouterr().err


def test_ctrl_c_while_evaluating_a_finished_run_says_it_is_saved(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyalexnet, "evaluate", interrupted)
    assert cli.main(["train", "--steps", "1", "--batch-size", "16", "--quiet", "--device", "cpu",
                     "--checkpoint-dir", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert f"while evaluating; the trained model is saved in {tmp_path / CHECKPOINT_NAME}" in err
    assert f"pyalexnet eval {tmp_path} --pictures" in err
    # while the pictures are drawn it says so (it said "while evaluating")
    monkeypatch.undo()
    monkeypatch.setattr(pyalexnet.viz, "save_test_pictures", interrupted)
    assert cli.main(["train", "--steps", "1", "--batch-size", "16", "--quiet", "--device", "cpu", "--no-ten-crop",
                     "--checkpoint-dir", str(tmp_path / "b")]) == 130
    assert "while drawing the test pictures; the trained model is saved in" in capsys.readouterr().err


def test_top5_is_not_reported_with_five_classes_or_fewer(splits, tmp_path, capsys, monkeypatch):
    result = _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", verbose=True)
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("epoch 1/1:")][0]
    assert "top-1 error" in line and "top-5" not in line  # 4 classes: every label is among the top 5
    # Nor from Python, nor in the history: 0.0 there read as a measurement.
    assert evaluate(result.model, splits, ten_crop=False)["top5"] is None
    row = json.loads(open(tmp_path / "run" / HISTORY_NAME).readline())
    assert row["val_top5"] is None and row["train_top5"] is None and result.history[0]["val_top5"] is None
    six = _images(12, 3)
    six = Dataset(six.images, np.arange(12) % 6, [f"c{i}" for i in range(6)])
    model6 = pyalexnet.AlexNet(6, preset="small", input_size=CROP, devices="cpu")
    got = evaluate(model6, Splits(six, six, six.classes, IMAGE, CROP, splits.mean_image, splits.eigvals,
                                  splits.eigvecs, "six"), ten_crop=False)
    assert isinstance(got["top5"], float) and 0 <= got["top5"] <= got["top1"]
    monkeypatch.setattr("pyalexnet.data.load_dataset", lambda *a, **k: splits)
    assert cli.main(["eval", str(tmp_path / "run"), "--json", "--quiet", "--center-crop"]) == 0
    assert json.loads(capsys.readouterr().out)["top5"] is None


def test_eval_says_the_checkpoints_data_may_have_moved(tmp_path, rng, capsys):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "photos" / c / f"{i}.png")
    assert cli.main(["train", "--data", str(tmp_path / "photos"), "--image-size", "40", "--steps", "1", "--batch-size",
                     "4", "--quiet", "--no-ten-crop", "--device", "cpu", "--workers", "0",
                     "--checkpoint-dir", str(tmp_path / "run")]) == 0
    (tmp_path / "photos").rename(tmp_path / "moved")
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"dataset folder {tmp_path / 'photos'} does not exist" in err
    assert "as its checkpoint records; --data PATH evaluates it where the data is now" in err
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "gone"), "--quiet"]) == 2
    assert "as its checkpoint records" not in capsys.readouterr().err  # the user's own --data path: said as it is
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "moved"), "--quiet"]) == 0


def test_warnings_name_the_callers_line_not_the_librarys(tmp_path, rng):
    import warnings

    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    from pyalexnet.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset(str(tmp_path), image_size=16, progress=False)
    assert caught and all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)) for w in caught]


def test_hidden_folders_inside_a_class_are_left_out_everywhere(tmp_path, rng, capsys):
    from PIL import Image

    from pyalexnet.commands.predict import _image_files
    from pyalexnet.data import load_dataset

    def image(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)

    for c in ("a", "b"):
        for i in range(3):
            image(tmp_path / c / f"{i}.png")
    image(tmp_path / "a" / ".thumbnails" / "t.png")  # a viewer's cache: trained on before
    image(tmp_path / ".hidden_class" / "h.png")  # predict classified it before
    splits = load_dataset(str(tmp_path), image_size=16, val_fraction=0.0, progress=False)
    assert len(splits.train) == 6
    files, empty = _image_files([str(tmp_path)])
    assert len(files) == 6 and not any("/." in f for f in files) and empty == 0


def test_a_schedule_epoch_of_0_is_refused_with_why():
    with pytest.raises(ValueError, match="epoch 0 is the first; to start lower, give a smaller lr"):
        pyalexnet.training._make_schedule([0, 3], 0.01, 2)


def test_a_file_that_is_no_pyalexnet_checkpoint_is_said_so(tmp_path, capsys):
    # A .npy said "'numpy.ndarray' object does not support the context manager protocol"; an archive whose
    # metadata lacks the model ended in KeyError: 'model' (the Python API and the CLI alike).
    from pyalexnet.training import save_checkpoint

    np.save(tmp_path / "weights.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    np.savez(tmp_path / "nomodel.npz", meta=np.array(json.dumps({"format": 1})))
    np.savez(tmp_path / "halfmodel.npz", meta=np.array(json.dumps({"format": 1, "model": {"num_classes": 3}})))
    np.savez(tmp_path / "list.npz", meta=np.array("[1, 2]"))
    save_checkpoint(tmp_path / "ok.npz", pyalexnet.AlexNet(3, preset="tiny", devices="cpu", seed=0))
    for name, said in [("weights.npy", r"single NumPy array \(.npy\), not a pyalexnet checkpoint"),
                       ("other.npz", "without pyalexnet's metadata, not a pyalexnet checkpoint"),
                       ("nomodel.npz", "has no model description: the file is damaged or not a pyalexnet"),
                       ("halfmodel.npz", "without init, input_size, preset, seed, step: the file is damaged"),
                       ("list.npz", "metadata is not pyalexnet's")]:
        with pytest.raises(ValueError, match=said):
            load_checkpoint(tmp_path / name)
        assert cli.main(["predict", str(tmp_path / name), "x.png"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and __import__("re").search(said, err), err
    assert load_checkpoint(tmp_path / "ok.npz")[0].num_classes == 3


def test_cli_predict_names_a_folder_given_as_class_names_and_a_huge_images_file(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from pyalexnet.training import save_checkpoint

    save_checkpoint(tmp_path / "ckpt.npz", pyalexnet.AlexNet(3, preset="tiny", devices="cpu", seed=0),
                    mean_image=np.full((17, 17, 3), 100, np.float32))
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "big.png")
    assert cli.main(["predict", str(tmp_path / "ckpt.npz"), str(tmp_path / "big.png"), "--class-names",
                     str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder: give the names file itself" in err and err.count("\n") == 1
    # Pillow's "Image size (1200 pixels) exceeds limit of 1000 pixels ..." named no file.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert cli.main(["predict", str(tmp_path / "ckpt.npz"), str(tmp_path / "big.png"), "--top", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{tmp_path / 'big.png'}: ")
    assert f"warning: {tmp_path / 'big.png'} has 1200 pixels, over Pillow's limit of 1000" in err, err
    assert "Image size (1200 pixels) exceeds limit" not in err  # Pillow's own, nameless, left out


def test_eval_pictures_that_cannot_be_written_lose_no_results(splits, tmp_path, capsys, monkeypatch):
    # A read-only --pictures folder failed after the whole evaluation, printing no top-1/top-5 (nor JSON).
    import os

    import PIL.Image

    import pyalexnet.data

    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run")
    monkeypatch.setattr(pyalexnet.data, "load_dataset", lambda *a, **k: splits)
    evaluated = []
    real_evaluate = pyalexnet.evaluate
    monkeypatch.setattr(pyalexnet, "evaluate", lambda *a, **k: evaluated.append(1) or real_evaluate(*a, **k))
    # Checked up front (root is not stopped by chmod: os.access stands for the folder's permissions).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).startswith(str(tmp_path / "ro"))
                        else real_access(p, mode, **k))
    (tmp_path / "ro").mkdir()
    for target in (tmp_path / "ro", tmp_path / "ro" / "new"):
        assert cli.main(["eval", str(tmp_path / "run"), "--pictures", str(target), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "cannot be written" in err and "--pictures" in err and err.count("\n") == 1
    assert not evaluated
    # A folder that fails only while the pictures are written: the results are printed all the same.

    def read_only(self, fp, *a, **k):
        raise OSError(30, "Read-only file system", str(fp))

    monkeypatch.setattr(PIL.Image.Image, "save", read_only)
    assert cli.main(["eval", str(tmp_path / "run"), "--pictures", "--quiet", "--center-crop"]) == 2
    captured = capsys.readouterr()
    assert "top-1 error" in captured.out
    assert "Read-only file system" in captured.err and captured.err.count("\n") == 1
    assert cli.main(["eval", str(tmp_path / "run"), "--pictures", "--quiet", "--center-crop", "--json"]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "top1" in result and "Read-only file system" in result["pictures_error"]


def test_eval_of_a_checkpoint_without_training_metadata(tmp_path, rng, capsys):
    # save_checkpoint(path, model) alone: eval fell back to the builtin set ("takes 21x21 crops but this data
    # set gives 32x32"), and with --data FOLDER decoded at 256 px whatever the model's input size.
    from data_files import image_folder
    from pyalexnet.training import save_checkpoint

    image_folder(tmp_path / "d", rng, per_class=4)
    model = pyalexnet.AlexNet(3, preset="small", input_size=21, devices="cpu", seed=0)
    save_checkpoint(tmp_path / "bare" / CHECKPOINT_NAME, model)
    assert cli.main(["eval", str(tmp_path / "bare"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "names no data set" in err and "--data" in err and err.count("\n") == 1
    assert cli.main(["eval", str(tmp_path / "bare"), "--data", str(tmp_path / "d"), "--json", "--quiet",
                     "--center-crop"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] > 0  # decoded at 24 px: 21x21 crops


def test_evaluate_names_its_allowed_splits_and_how_to_fit_a_folder_to_the_model(tmp_path, rng):
    from data_files import image_folder

    model = pyalexnet.AlexNet(3, preset="small", input_size=21, devices="cpu", seed=0)
    with pytest.raises(ValueError, match=r"split must be 'val' \(the test split\) or 'train', got 'test'"):
        evaluate(model, "builtin", split="test")  # was AttributeError: 'Splits' object has no attribute 'test'
    image_folder(tmp_path / "d", rng, per_class=4)
    with pytest.raises(ValueError, match=r"21x21 crops but this data set gives 224x224 .*pass image_size= .*24"
                                         r".*mean_image="):
        evaluate(model, str(tmp_path / "d"), image_size=256, ten_crop=False, progress=False)
    assert evaluate(model, str(tmp_path / "d"), image_size=24, ten_crop=False, progress=False)["images"] > 0
    # a model train() never trained: decoded at the smallest size whose crops it takes, as pyalexnet eval does (at
    # 256 it was the error above)
    assert evaluate(model, str(tmp_path / "d"), ten_crop=False, progress=False)["images"] > 0


def test_evaluate_without_data_tests_the_runs_own_data_as_the_run_held_it_out(splits, tmp_path, rng, monkeypatch):
    # evaluate(model) tested any model on the built-in set, and evaluate(model, folder) held out the images of
    # seed 0 and val_fraction 0.1 whatever the run's: images the model had trained on, scored as test images.
    from data_files import image_folder
    from pyalexnet.data import load_dataset

    image_folder(tmp_path / "d", rng, per_class=8)  # no val/: the held-out images are the seed's and fraction's
    kw = dict(preset="small", image_size=24, epochs=1, seed=3, val_fraction=0.25, batch_size=8, device="cpu",
              workers=0, verbose=False, progress=False)
    result = train(str(tmp_path / "d"), checkpoint_dir=tmp_path / "run", **kw)
    run = result.model.trained_on
    assert (run["data"], run["seed"], run["val_fraction"], run["image_size"], run["classes"]) == (
        str(tmp_path / "d"), 3, 0.25, 24, ["cat", "dog", "eel"])
    held_out = load_dataset(str(tmp_path / "d"), seed=3, val_fraction=0.25, image_size=24, progress=False)
    # The run's mean image is used, so a folder's training images are not all decoded again (hours for ImageNet):
    # only the sample the pictures draw from.
    from pyalexnet import training as T
    from pyalexnet.viz import NEIGHBOUR_POOL

    samples, load = [], T._load_data
    monkeypatch.setattr(T, "_load_data", lambda *a, **k: (samples.append(k.get("train_sample")), load(*a, **k))[1])
    want = evaluate(result.model, held_out, progress=False, return_predictions=True)
    assert want["images"] == 6
    for got in (evaluate(result.model, progress=False, return_predictions=True),
                evaluate(result.model, str(tmp_path / "d"), progress=False, return_predictions=True),
                evaluate(load_checkpoint(tmp_path / "run")[0], progress=False, return_predictions=True)):
        np.testing.assert_array_equal(got.pop("predictions"), want["predictions"])
        assert got == {k: v for k, v in want.items() if k != "predictions"}
    assert samples[1:] == [NEIGHBOUR_POOL] * 3  # after the Splits passed whole
    assert load_checkpoint(tmp_path / "run")[0].trained_on["seed"] == 3
    # other class names under the same count: its labels would be read as the model's classes
    image_folder(tmp_path / "e", rng, classes=("ant", "bee", "cow"), per_class=2)
    with pytest.raises(ValueError, match=r"has classes other than the ones the model was trained on \('cat' / 'ant'"):
        evaluate(result.model, str(tmp_path / "e"), image_size=24, progress=False)
    # a Splits load_dataset did not make is not loaded again by its name, or at all without one
    model = _train(splits, epochs=1).model
    with pytest.raises(ValueError, match=r"trained on a Splits that load_dataset did not make, so which images it "
                                         r"held out is not recorded: pass it again"):
        evaluate(model, progress=False)
    assert evaluate(model, splits, progress=False)["images"] == len(splits.val)
    unnamed = Splits(*[getattr(splits, f) for f in ("train", "val", "classes", "image_size", "crop_size", "mean_image",
                                                     "eigvals", "eigvecs")], "")
    model = _train(unnamed, epochs=1).model
    with pytest.raises(ValueError, match=r"trained on a Splits that load_dataset did not make"):
        evaluate(model, progress=False)
    # a model train() never trained: the built-in set, as before
    fresh = pyalexnet.AlexNet(10, preset="small", input_size=32, devices="cpu")
    assert fresh.trained_on is None
    assert evaluate(fresh, ten_crop=False, progress=False)["images"] == 1000


def test_evaluate_on_the_runs_folder_moved_holds_out_the_runs_images(tmp_path, rng):
    # The data moved, or copied to a faster disk (pyalexnet eval --data PATH takes the checkpoint's seed and fraction
    # for it): evaluate(model, copy) held out seed 0's tenth instead, most of them images the model trained on.
    import shutil

    from data_files import image_folder
    from pyalexnet.data import load_dataset

    image_folder(tmp_path / "d", rng, per_class=8)
    result = train(str(tmp_path / "d"), preset="small", image_size=24, epochs=1, seed=3, val_fraction=0.25,
                   batch_size=8, device="cpu", workers=0, verbose=False, progress=False)
    shutil.copytree(tmp_path / "d", tmp_path / "copy")
    held_out = load_dataset(str(tmp_path / "copy"), seed=3, val_fraction=0.25, image_size=24, progress=False)
    want = evaluate(result.model, held_out, progress=False, return_predictions=True)
    got = evaluate(result.model, str(tmp_path / "copy"), image_size=24, progress=False, return_predictions=True)
    assert got["images"] == want["images"] == 6
    np.testing.assert_array_equal(got["predictions"], want["predictions"])
    # told otherwise, as told
    assert evaluate(result.model, str(tmp_path / "copy"), image_size=24, seed=0, val_fraction=0.1,
                    progress=False)["images"] == 3


def test_a_splits_passed_to_train_is_tested_on_the_images_it_held_out(tmp_path, rng, capsys):
    # A Splits passed to train() was split when it was made, by load_dataset's seed and fraction, not train()'s:
    # reloading its source folder with train()'s seed held out other images, most of them trained on, scored as
    # test images (evaluate(model), and pyalexnet eval of the run's checkpoint).
    from data_files import image_folder
    from pyalexnet.data import load_dataset

    image_folder(tmp_path / "d", rng, per_class=8)
    data = load_dataset(str(tmp_path / "d"), seed=5, val_fraction=0.25, image_size=24, progress=False)
    assert data.held_out == {"seed": 5, "val_fraction": 0.25}
    result = train(data, preset="small", epochs=1, seed=0, batch_size=8, device="cpu", workers=0, verbose=False,
                   progress=False, checkpoint_dir=tmp_path / "run")
    run = result.model.trained_on
    assert (run["data"], run["seed"], run["val_fraction"]) == (str(tmp_path / "d"), 5, 0.25)
    want = evaluate(result.model, data, progress=False)
    assert want["images"] == 6
    assert evaluate(result.model, progress=False) == want
    assert evaluate(load_checkpoint(tmp_path / "run")[0], progress=False) == want
    assert cli.main(["eval", str(tmp_path / "run"), "--json", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["images"], got["top1"], got["loss"]) == (6, want["top1"], pytest.approx(want["loss"]))
    # a Splits of the folder made otherwise: which images it held out is not known, and testing the folder says so
    hand_made = Splits(data.train, data.val, data.classes, data.image_size, data.crop_size, data.mean_image,
                       data.eigvals, data.eigvecs, data.source)
    model = train(hand_made, preset="small", epochs=1, batch_size=8, device="cpu", workers=0, verbose=False,
                  progress=False).model
    with pytest.raises(ValueError, match="trained on a Splits that load_dataset did not make"):
        evaluate(model, progress=False)
    with pytest.warns(RuntimeWarning, match=r"which of .*/d's images the model's run held out is not recorded"):
        evaluate(model, str(tmp_path / "d"), progress=False)


def test_save_checkpoint_into_a_folder_and_its_argument_errors(tmp_path):
    from pyalexnet.training import save_checkpoint

    model = pyalexnet.AlexNet(3, preset="tiny", devices="cpu", seed=0)
    # An existing folder: IsADirectoryError naming a temporary file; now the layout train's checkpoint_dir
    # writes and load_checkpoint(folder) reads.
    assert save_checkpoint(tmp_path, model) == str(tmp_path / CHECKPOINT_NAME)
    assert load_checkpoint(tmp_path)[0].num_classes == 3
    (tmp_path / "sub" / CHECKPOINT_NAME).mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=r"checkpoint.npz is a folder, not a checkpoint file"):
        save_checkpoint(tmp_path / "sub", model)
    with pytest.raises(TypeError, match="model must be a pyalexnet.AlexNet, got str"):
        save_checkpoint(tmp_path / "m.npz", "model")  # was AttributeError
    params = model.parameters()
    name = next(iter(params))
    with pytest.raises(ValueError, match=r"velocities has names the model has no parameters for: 'nope'"):
        save_checkpoint(tmp_path / "v.npz", model, velocities={"nope": np.zeros(3)})
    with pytest.raises(ValueError, match=rf"velocities\['{name}'\] has shape \(3,\)"):
        save_checkpoint(tmp_path / "v.npz", model, velocities={name: np.zeros(3)})
    assert not (tmp_path / "v.npz").exists() and not (tmp_path / "m.npz").exists()
    save_checkpoint(tmp_path / "v.npz", model, velocities={k: np.zeros_like(to_host(v)) for k, v in params.items()})


def test_a_checkpoint_keeps_the_init_it_was_written_with(tmp_path):
    # AlexNet's default init now follows the preset (He for the small ones): a checkpoint of a model made with
    # the paper's init loads with it, as before.
    from pyalexnet.training import save_checkpoint

    save_checkpoint(tmp_path / "c.npz", pyalexnet.AlexNet(3, preset="tiny", devices="cpu", init="paper"))
    assert load_checkpoint(tmp_path / "c.npz")[0].init == {"std": 0.01, "bias": 1.0}


def test_two_runs_never_train_into_one_folder(splits, tmp_path, monkeypatch, capsys):
    import os

    from pyalexnet.training import LOCK_NAME, _RunLock

    _train(splits, epochs=1, checkpoint_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != LOCK_NAME}
    other = _RunLock()  # another run holding the folder (flock: another open file conflicts in one process too)
    other.acquire(tmp_path)
    try:
        with pytest.raises(BlockingIOError, match=rf"{tmp_path} is in use by another run \(pid {os.getpid()}\)"):
            _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True)
        with pytest.raises(BlockingIOError, match="in use by another run"):
            _train(splits, epochs=1, checkpoint_dir=tmp_path, overwrite=True)
        assert cli.main(["train", "--checkpoint-dir", str(tmp_path), "--resume", "--epochs", "2", "--quiet"]) == 2
        assert f"is in use by another run (pid {os.getpid()})" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != LOCK_NAME} == before  # nothing touched
    finally:
        other.release()
    # Released however a run ends: after an interrupted one, the next goes on in the folder.
    _ctrl_c_at_update(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True)
    monkeypatch.undo()
    assert len(_train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True).history) == 2
    # The lock file is no run: a folder holding only it is a new run's, and --overwrite is not asked for.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / LOCK_NAME).write_text("12345\n")
    assert len(_train(splits, epochs=1, checkpoint_dir=fresh).history) == 1


def test_a_closed_stderr_at_an_epochs_line_loses_nothing(splits, tmp_path, monkeypatch):
    import io
    import sys

    from pyalexnet.viz import CURVES_NAME

    class ClosedAtEpochLines(io.StringIO):  # `train 2>&1 | head -1`: the reader gone after the first line
        def write(self, text):
            if text.startswith("epoch "):
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    straight = _train(splits, epochs=2)
    monkeypatch.setattr(sys, "stderr", ClosedAtEpochLines())
    with pytest.raises(BrokenPipeError):
        _train(splits, epochs=2, checkpoint_dir=tmp_path, verbose=True, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)[1]["training"]["epoch"] == 1  # the finished epoch is saved, pictures too
    assert (tmp_path / CURVES_NAME).exists()
    resumed = _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert [json.loads(line)["epoch"] for line in open(tmp_path / HISTORY_NAME)] == [1, 2]


def test_a_checkpoint_folder_that_cannot_be_written_is_refused_before_training(splits, tmp_path, capsys, monkeypatch):
    import pyalexnet.training as T

    (tmp_path / "file").write_text("")
    loaded = []
    monkeypatch.setattr(T, "_load_data", lambda *a, **k: loaded.append(1) or splits)
    with pytest.raises(OSError, match=r"checkpoint_dir \(--checkpoint-dir\) .*/file/run: cannot make that folder "
                       r"\(.*/file is a file, not a folder\); choose a folder this user can write to"):
        _train(splits, epochs=1, checkpoint_dir=tmp_path / "file" / "run")
    assert cli.main(["train", "--checkpoint-dir", "/proc/pyalexnet-run", "--quiet", "--device", "cpu"]) == 2
    assert "/proc/pyalexnet-run: cannot make that folder" in capsys.readouterr().err
    assert loaded == []  # before the data set is loaded, not after an epoch
    assert _train(splits, epochs=1, checkpoint_dir=tmp_path / "new" / "run").checkpoint  # parents are made
    assert sorted(p.name for p in (tmp_path / "new" / "run").iterdir() if "probe" in p.name) == []


def test_output_folder_problem_names_the_folder_and_what_is_wrong(tmp_path, monkeypatch):
    # One check for every command's output folder (train, eval --pictures, bench, data bench, seeds).
    import os

    from pyalexnet._backend import output_folder_problem as problem

    (tmp_path / "afile").write_text("x")
    (tmp_path / "d" / "r.json").mkdir(parents=True)
    assert problem(tmp_path / "afile", "--out") == f"--out {tmp_path / 'afile'} is a file, not a folder"
    assert problem(tmp_path / "afile" / "sub", "--out", create=True) == \
        f"--out {tmp_path / 'afile' / 'sub'}: cannot make that folder ({tmp_path / 'afile'} is a file, not a folder)"
    assert problem(tmp_path / "d", "--out", files=("r.txt", "r.json")) == \
        f"--out {tmp_path / 'd'}: {tmp_path / 'd' / 'r.json'} is a folder, so the results cannot be written there"
    assert problem(tmp_path / "new" / "a", "--out") is None and not (tmp_path / "new").exists()  # made later
    assert problem(tmp_path / "new" / "a", "--out", create=True) is None and (tmp_path / "new" / "a").is_dir()
    # Mocked: root may write anywhere (but on a read-only file system).
    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).startswith(str(tmp_path / "ro")))
    (tmp_path / "ro").mkdir()
    assert problem(tmp_path / "ro", "x") == f"x {tmp_path / 'ro'}: the folder cannot be written"
    assert problem(tmp_path / "ro" / "a" / "b", "x") == \
        f"x {tmp_path / 'ro' / 'a' / 'b'}: its parent folder {tmp_path / 'ro'} cannot be written"
    # os.access says yes where the write fails (root on an NFS share that squashes it): a file is made to be sure.
    import tempfile

    def refused(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    assert problem(tmp_path / "d", "--out") == f"--out {tmp_path / 'd'}: the folder cannot be written (Permission denied)"
    monkeypatch.undo()
    assert problem(tmp_path / "d", "--out") is None and sorted(p.name for p in (tmp_path / "d").iterdir()) == ["r.json"]

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    assert problem(tmp_path / "d", "--out") == \
        f"--out {tmp_path / 'd'}: the folder cannot be written (No space left on device)"
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["r.json"]  # the probe is gone all the same


def test_resume_refuses_another_init_and_says_another_momentum_or_weight_decay(splits, tmp_path, capsys):
    train(splits, preset="small", init="paper", epochs=1, batch_size=8, device="cpu", workers=0, verbose=False,
          checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match="initialised with init 'paper', not 'caffe': resume without init"):
        _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True, init="caffe")
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
    _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True, init="paper", momentum=0.8, weight_decay=0.001,
           verbose=True)
    err = capsys.readouterr().err
    assert "momentum 0.8 from now on (it was 0.9)" in err and "weight decay 0.001 from now on (it was 0.0005)" in err
    _, meta = load_checkpoint(tmp_path)
    assert meta["model"]["init"] == dict(std=0.01, bias=1.0) and meta["training"]["momentum"] == 0.8
    _train(splits, epochs=3, checkpoint_dir=tmp_path, resume=True, momentum=0.8, verbose=True)  # the same: not said
    assert "from now on" not in capsys.readouterr().err


def test_schedule_mistakes_are_refused_or_said(splits, tmp_path, capsys):
    from pyalexnet.training import _make_schedule

    for schedule, match in (([1, 1], "epoch 1 more than once"), ([], "empty list of epochs: give 'constant'"),
                            ([1.7], "whole numbers, got 1.7"), (["2"], "whole numbers, got '2'")):
        with pytest.raises(ValueError, match=match):
            _make_schedule(schedule, 0.01, 1)
    for text, match in (("1,1", "epoch 1 is listed more than once"), ("", "no epochs in ''"),
                        (",", "no epochs in ','")):
        with pytest.raises(SystemExit):
            cli.main(["train", "--schedule", text, "--steps", "1", "--quiet"])
        assert f"argument --schedule: {match}" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning, match=r"schedule epochs 2, 5 never come: the run has 2 epochs"):
        _train(splits, epochs=2, schedule=[1, 2, 5])
    with pytest.raises(ValueError, match=r"patience \(--patience\) is for the plateau schedule; this run's is 1"):
        _train(splits, epochs=1, schedule=[1], patience=3)
    _train(splits, epochs=1, checkpoint_dir=tmp_path, schedule="constant")
    with pytest.raises(ValueError, match="patience .* this run's is constant"):
        _train(splits, epochs=2, checkpoint_dir=tmp_path, resume=True, patience=3)


def test_train_api_mistakes_are_named(splits, tmp_path):
    import io

    from pyalexnet.data import load_dataset
    from pyalexnet.model import AlexNet

    model = AlexNet(4, preset="small", input_size=CROP, devices="cpu")
    for kwargs, match in ((dict(preset="paper"), "preset is for the model train"),
                          (dict(preset="small", init="caffe"), "preset and init are for the model train"),
                          (dict(device="cuda:0"), "device 'cuda:0'")):  # not the model's (or no GPU)
        with pytest.raises(ValueError, match=match):
            train(splits, model=model, workers=0, verbose=False, epochs=1, **kwargs)
    assert train(splits, model=model, device="cpu", workers=0, verbose=False, epochs=1, batch_size=8).history
    with pytest.raises(TypeError, match="history must be a file path, got StringIO"):
        train(splits, history=io.StringIO(), workers=0, verbose=False)
    with pytest.raises(TypeError, match="data must be a data set's name or path .* got int"):
        train(5, verbose=False)
    assert _train(splits, epochs=1, workers=None).history  # the default
    builtin = load_dataset("builtin", progress=False)
    with pytest.raises(ValueError, match="val_fraction .* builtin has its own validation split"):
        train(builtin, val_fraction=0.2, workers=0, verbose=False, epochs=1)


# ----- sgd_step: the one training step train() and the benchmark take -----------------------------------------
def _small_model(seed=4):
    return pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices="cpu", seed=seed)


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, CROP, CROP)).astype(np.float32), (np.arange(n) % 4).astype(np.int64)


def test_sgd_step_is_forward_loss_backward_update_in_that_order():
    # Written out plainly, the order the paper's step has; sgd_step queues backward before reading the loss,
    # which must change no bit of anything.
    x, y = _batch()
    plain, stepped = _small_model(), _small_model()
    v_plain = {k: np.zeros_like(p) for k, p in plain.parameters().items()}
    v_step = {k: np.zeros_like(p) for k, p in stepped.parameters().items()}
    for step in range(2):
        logits = plain.forward(x, train=True, step=step)
        loss, d = pyalexnet.ops.softmax_cross_entropy(logits, y)
        top1 = int((logits.argmax(axis=1) != y).sum())
        plain.backward(d)
        params, grads = plain.parameters(), plain.gradients()
        for names, decay in (([k for k in params if not k.endswith(".bias")], 1e-3),
                             ([k for k in params if k.endswith(".bias")], 0.0)):  # cuda-convnet: biases undecayed
            pyalexnet.ops.sgd_update([params[k] for k in names], [grads[k] for k in names],
                                     [v_plain[k] for k in names], lr=0.01, momentum=0.8, weight_decay=decay)
        got = pyalexnet.sgd_step(stepped, x, y, v_step, lr=0.01, momentum=0.8, weight_decay=1e-3, step=step)
        assert got.loss == loss and got.top1_errors == top1 and got.top5_errors == 0  # 4 classes: all in the top 5
    for k, p in plain.parameters().items():
        np.testing.assert_array_equal(stepped.parameters()[k], p, err_msg=k)
        np.testing.assert_array_equal(v_step[k], v_plain[k], err_msg=k)
        assert np.abs(v_step[k]).max() > 0, k  # the update happened


def test_sgd_step_with_a_loss_that_is_not_finite_changes_nothing():
    m = _small_model()
    x, y = _batch()
    x[0, 0, 0, 0] = np.inf
    before = {k: p.copy() for k, p in m.parameters().items()}
    vel = {k: np.full_like(p, 0.5) for k, p in m.parameters().items()}
    got = pyalexnet.sgd_step(m, x, y, vel, lr=0.01)
    assert not math.isfinite(got.loss)
    for k, p in m.parameters().items():
        np.testing.assert_array_equal(p, before[k], err_msg=k)
        assert (vel[k] == 0.5).all(), k


def test_sgd_step_bad_arguments_are_named():
    m = _small_model()
    x, y = _batch()
    vel = {k: np.zeros_like(p) for k, p in m.parameters().items()}
    with pytest.raises(ValueError, match=r"velocities must map .*missing conv1a\.weight"):
        pyalexnet.sgd_step(m, x, y, {k: v for k, v in vel.items() if k != "conv1a.weight"}, lr=0.01)
    with pytest.raises(ValueError, match=r"velocities must map .*got list"):
        pyalexnet.sgd_step(m, x, y, list(vel.values()), lr=0.01)
    with pytest.raises(TypeError, match="model must be a pyalexnet.AlexNet"):
        pyalexnet.sgd_step("model", x, y, vel, lr=0.01)
    before = {k: p.copy() for k, p in m.parameters().items()}
    with pytest.raises(ValueError, match=r"label 9 is out of range for 4 classes"):
        pyalexnet.sgd_step(m, x, np.array([0, 1, 2, 3, 9, 0]), vel, lr=0.01)
    for k, p in m.parameters().items():  # the bad label is found before the update
        np.testing.assert_array_equal(p, before[k], err_msg=k)


def test_sgd_step_updates_each_devices_parameters_in_its_own_call(monkeypatch):
    # One ops.sgd_update of all parameters refuses arrays on two GPUs: towers on cuda:0 and cuda:1 stopped at
    # the first step. Here the towers' places are told apart by name (both are the CPU).
    import types

    x, y = _batch()
    split, whole = _small_model(), _small_model()
    v_split = {k: np.zeros_like(p) for k, p in split.parameters().items()}
    v_whole = {k: np.zeros_like(p) for k, p in whole.parameters().items()}
    real_place = split.place_of
    tower_b = {k for k in split.parameters() if k[k.index(".") - 1] == "b"}
    monkeypatch.setattr(split, "place_of", lambda k: types.SimpleNamespace(
        **{**vars(real_place(k)), "device": "cpu:b" if k in tower_b else "cpu:a"}))
    calls = []
    real_update = pyalexnet.ops.sgd_update
    monkeypatch.setattr(pyalexnet.ops, "sgd_update", lambda w, *a, **k: (calls.append(len(w)), real_update(w, *a, **k)))
    pyalexnet.sgd_step(split, x, y, v_split, lr=0.01)
    monkeypatch.undo()
    pyalexnet.sgd_step(whole, x, y, v_whole, lr=0.01)
    # per tower, the weights and the biases (these without weight decay)
    tower_a = set(v_split) - tower_b
    assert len(tower_b) > 0 and sorted(calls) == sorted(
        len([k for k in tower if k.endswith(".bias") == bias]) for tower in (tower_a, tower_b) for bias in (False, True))
    for k, p in whole.parameters().items():
        np.testing.assert_array_equal(split.parameters()[k], p, err_msg=k)


def test_sgd_velocities_are_zeros_beside_each_parameter_and_two_gpus_need_them_there(monkeypatch):
    import types

    m = _small_model()
    vel = pyalexnet.sgd_velocities(m)
    assert list(vel) == list(m.parameters())
    for k, p in m.parameters().items():
        assert vel[k].shape == p.shape and vel[k].dtype == np.float32 and not vel[k].any() and vel[k] is not p
    # Towers on two GPUs (pretended: both are the CPU): velocities that are not on their parameter's GPU are
    # refused before anything is queued; tower a's update, then a refusal at tower b's, was half a step.
    x, y = _batch()
    before = {k: p.copy() for k, p in m.parameters().items()}
    monkeypatch.setattr(m, "devices", ("cuda:0", "cuda:1"))
    real_place = m.place_of
    monkeypatch.setattr(m, "place_of", lambda k: types.SimpleNamespace(**{**vars(real_place(k)), "gpu": 1}))
    with pytest.raises(ValueError, match=r"velocities\['conv1a.weight'\] is not where its parameter is \(cpu\): "
                                         r"make them with pyalexnet.sgd_velocities\(model\)"):
        pyalexnet.sgd_step(m, x, y, vel, lr=0.01)
    monkeypatch.undo()
    # On one device too: a bias velocity of the wrong shape was refused at the biases' call, after the weights'.
    with pytest.raises(ValueError, match=r"velocities\['fc8.bias'\] has shape \(3,\), its parameter \(4,\)"):
        pyalexnet.sgd_step(m, x, y, {**vel, "fc8.bias": np.zeros(3, np.float32)}, lr=0.01)
    for k, p in m.parameters().items():
        np.testing.assert_array_equal(p, before[k], err_msg=k)


def test_weight_decay_is_for_the_weights_and_for_the_biases_only_when_asked():
    # cuda-convnet made each layer's biases with weight cost 0 (Caffe's AlexNet: decay_mult 0); the paper writes
    # its rule for "weight w". A decay as large as 0.5 makes any difference plain.
    x, y = _batch()
    models = {}
    for name, kw in (("default", {}), ("all", dict(decay_biases=True)), ("none", dict(weight_decay=0.0))):
        m = _small_model()
        m.load_parameters({k: np.full_like(p, 0.5) if k.endswith(".bias") else p for k, p in m.parameters().items()})
        vel = {k: np.zeros_like(p) for k, p in m.parameters().items()}
        pyalexnet.sgd_step(m, x, y, vel, lr=0.01, **{"weight_decay": 0.5, **kw}, step=0)
        models[name] = m.parameters()
    for k, p in models["default"].items():
        if k.endswith(".bias"):  # as with no decay at all, not as with decay
            np.testing.assert_array_equal(p, models["none"][k], err_msg=k)
            assert np.abs(p - models["all"][k]).max() == pytest.approx(0.01 * 0.5 * 0.5, rel=1e-3), k
        else:
            np.testing.assert_array_equal(p, models["all"][k], err_msg=k)


def test_a_run_records_whether_it_decays_biases_and_a_resumed_one_keeps_it(splits, tmp_path, capsys):
    _train(splits, epochs=1, checkpoint_dir=tmp_path / "new")
    assert load_checkpoint(tmp_path / "new")[1]["training"]["decay_biases"] is False
    # A checkpoint from before the option: its run decayed every parameter, and goes on doing so.
    with np.load(tmp_path / "new" / CHECKPOINT_NAME) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["training"]["decay_biases"]
    arrays["meta"] = np.array(json.dumps(meta))
    (tmp_path / "old").mkdir()
    np.savez(tmp_path / "old" / CHECKPOINT_NAME, **arrays)
    _train(splits, epochs=2, checkpoint_dir=tmp_path / "old", resume=True, verbose=True)
    assert load_checkpoint(tmp_path / "old")[1]["training"]["decay_biases"] is True
    assert "biases" not in capsys.readouterr().err  # kept: nothing to say
    _train(splits, epochs=3, checkpoint_dir=tmp_path / "old", resume=True, decay_biases=False, verbose=True)
    assert "no weight decay on the biases from now on (the run had it)" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "old")[1]["training"]["decay_biases"] is False
    with pytest.raises(TypeError, match="decay_biases must be True or False, got 'yes'"):
        _train(splits, epochs=1, decay_biases="yes")


def test_the_command_line_takes_decay_biases_both_ways():
    from pyalexnet.commands import train as train_command

    import argparse

    p = argparse.ArgumentParser()
    train_command.add_arguments(p)
    assert p.parse_args([]).decay_biases is None  # a resumed run's own, else no
    assert p.parse_args(["--decay-biases"]).decay_biases is True
    assert p.parse_args(["--no-decay-biases"]).decay_biases is False


@pytest.mark.gpu
def test_sgd_step_on_two_gpus(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x, y = _batch(8)
    two = pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices=("cuda:0", "cuda:1"), seed=4)
    one = pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices="cpu", seed=4)
    vel = pyalexnet.sgd_velocities(two)  # zeros_like outside each GPU's context put tower b's on cuda:0
    v1 = {k: np.zeros_like(p) for k, p in one.parameters().items()}
    got, want = pyalexnet.sgd_step(two, x, y, vel, lr=0.01, step=0), pyalexnet.sgd_step(one, x, y, v1, lr=0.01, step=0)
    assert got.loss == pytest.approx(want.loss, rel=1e-4)
    for k, p in one.parameters().items():
        np.testing.assert_allclose(cp.asnumpy(two.parameters()[k]), p, rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.gpu
def test_sgd_step_on_gpu_equals_the_plain_order_on_gpu(cp):
    # The GPU's own check of the queued order: the loss and logits copied back while backward is queued
    # (B.start_host_copy) must be the values the plain, synchronous sequence reads, and the update the same.
    x, y = _batch(8)
    plain = pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices="cuda", seed=4)
    stepped = pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices="cuda", seed=4)
    v_plain = {k: cp.zeros_like(p) for k, p in plain.parameters().items()}
    v_step = {k: cp.zeros_like(p) for k, p in stepped.parameters().items()}
    for step in range(3):
        logits = plain.forward(x, train=True, step=step)
        loss, d = pyalexnet.ops.softmax_cross_entropy(logits, cp.asarray(y))
        top1 = int((cp.asnumpy(logits).argmax(axis=1) != y).sum())
        plain.backward(d)
        params, grads = plain.parameters(), plain.gradients()
        for names, decay in (([k for k in params if not k.endswith(".bias")], 5e-4),
                             ([k for k in params if k.endswith(".bias")], 0.0)):
            pyalexnet.ops.sgd_update([params[k] for k in names], [grads[k] for k in names],
                                     [v_plain[k] for k in names], lr=0.01, weight_decay=decay)
        got = pyalexnet.sgd_step(stepped, x, cp.asarray(y) if step % 2 else y, v_step, lr=0.01, step=step)
        assert got.loss == loss and got.top1_errors == top1
    for k, p in plain.parameters().items():
        np.testing.assert_array_equal(cp.asnumpy(stepped.parameters()[k]), cp.asnumpy(p), err_msg=k)


def test_arguments_a_resumed_run_refuses_are_refused_before_the_data_loads(splits, tmp_path, monkeypatch):
    # An image folder can take long to load: a mistyped option was refused only after it had.
    _train(splits, epochs=2, checkpoint_dir=tmp_path, stop_after_steps=1, schedule=[1])
    import pyalexnet.training as T

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the arguments were checked")
    monkeypatch.setattr(T, "_load_data", no_data)
    for kw, match in [(dict(seed=3), "was written by a run with seed=0"),
                      (dict(batch_size=4), "batch_size=8"),
                      (dict(schedule="plateau"), "was trained with the 1 schedule, not plateau"),
                      (dict(patience=2), r"patience \(--patience\) is for the plateau schedule; this run's is 1"),
                      (dict(schedule=[1, 1]), "lists epoch 1 more than once")]:
        with pytest.raises(ValueError, match=match):
            _train(splits, epochs=3, checkpoint_dir=tmp_path, resume=True, **kw)
    # A new run whose network is known (preset given) has its default schedule checked up front as well.
    with pytest.raises(ValueError, match=r"patience \(--patience\) is for the plateau schedule; this run's is 10,13"):
        _train(splits, checkpoint_dir=tmp_path / "new", patience=2)
    with pytest.warns(RuntimeWarning, match="schedule epoch 7 never comes"):
        with pytest.raises(AssertionError, match="the data was loaded"):
            _train(splits, epochs=3, schedule=[7], checkpoint_dir=tmp_path / "new2")


def test_the_readmes_python_example_runs(tmp_path, monkeypatch):
    # The README's "From Python" block, as written but for its 10 epochs (1 here): a renamed argument or
    # function there would otherwise go unseen until a user pasted it.
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("\nFrom Python:\n", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(line[4:] for line in block.splitlines() if line.startswith("    "))
    assert 'epochs=10' in code and "sgd_step" in code and "figure4_pictures" in code
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code.replace("epochs=10", "epochs=1"), "README.md", "exec"), scope)
    assert scope["feats"].shape == (2, 4096) and math.isfinite(scope["step"].loss)
    assert (tmp_path / "runs" / "a" / CHECKPOINT_NAME).exists() and 0 <= scope["pics"]["agreement"] <= 1


def test_ctrl_c_after_the_last_epochs_last_step_stops_before_the_final_evaluation(tmp_path, monkeypatch, capsys):
    # Pressed during the last epoch's validation (minutes on ImageNet): it was said ("stopping at the end of this
    # step"), then swallowed, and the command went on to the ten-crop evaluation and pictures, exit status 0.
    import os
    import signal

    import pyalexnet.training as T

    real, calls = T._validate, []

    def validate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "_validate", validate)
    evaluated = []
    monkeypatch.setattr(pyalexnet, "evaluate", lambda *a, **k: evaluated.append(1))
    assert cli.main(["train", "--preset", "tiny", "--epochs", "2", "--batch-size", "256", "--quiet", "--device", "cpu",
                     "--workers", "0", "--checkpoint-dir", str(tmp_path)]) == 130
    assert not evaluated
    err = capsys.readouterr().err
    assert "interrupted: stopped after the run's last epoch (2 of 2)" in err and f"pyalexnet eval {tmp_path}" in err
    assert load_checkpoint(tmp_path)[1]["training"]["epoch"] == 2  # the finished run, saved


def test_resuming_a_checkpoint_without_a_runs_state_is_refused_with_why(splits, tmp_path, capsys):
    # save_checkpoint(folder, model) writes the layout train's checkpoint_dir does, without the run's state:
    # --resume on it was a KeyError traceback.
    model = pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices="cpu")
    pyalexnet.save_checkpoint(tmp_path, model, mean_image=splits.mean_image)
    with pytest.raises(ValueError, match="holds no training run's state to continue .*--overwrite"):
        _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True)
    assert cli.main(["train", "--checkpoint-dir", str(tmp_path), "--resume", "--quiet", "--device", "cpu"]) == 2
    assert "a model save_checkpoint wrote alone" in capsys.readouterr().err
    # a run's checkpoint without some momentum buffers would go on from zeros, not as the run would have
    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", stop_after_steps=2)
    path = tmp_path / "run" / CHECKPOINT_NAME
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "velocity/fc8.bias"}
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="lacks momentum buffers .* for fc8.bias"):
        _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", resume=True)


def test_a_checkpoint_holding_nan_is_refused_naming_the_file(splits, tmp_path, capsys):
    # Loaded as it was, the model predicted NaN for every image (eval: 100% error), and a resumed run's first
    # step "diverged" and blamed the learning rate.
    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", stop_after_steps=2)
    path = tmp_path / "run" / CHECKPOINT_NAME
    with np.load(path) as z:
        good = {k: z[k] for k in z.files}
    for key, match in [("param/fc8.weight", "parameter fc8.weight has 1 NaN or infinite value in float32"),
                       ("velocity/conv1a.bias", r"velocities\) of conv1a.bias hold NaN")]:
        assert key in good, sorted(good)
        bad = dict(good, **{key: good[key].copy()})
        bad[key].flat[0] = np.nan
        np.savez(path, **bad)
        with pytest.raises(ValueError, match=f"{re.escape(str(path))}: .*{match}"):
            _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", resume=True)
        if key.startswith("param/"):
            with pytest.raises(ValueError, match=f"{re.escape(str(path))}: {match}.*damaged or its run had diverged"):
                load_checkpoint(path)
            assert cli.main(["eval", str(path), "--quiet"]) == 2
            assert "NaN or infinite value" in capsys.readouterr().err
    np.savez(path, **good)
    load_checkpoint(path)


def test_a_checkpoint_missing_a_parameter_is_not_said_to_have_diverged(tmp_path):
    from pyalexnet.training import save_checkpoint

    path = save_checkpoint(tmp_path / "c.npz", pyalexnet.AlexNet(3, preset="small", input_size=21, devices="cpu"))
    with np.load(path) as z:
        np.savez(path, **{k: z[k] for k in z.files if k != "param/fc8.bias"})
    with pytest.raises(ValueError, match=r"c.npz: parameters do not match .*missing \['fc8.bias'\].*: the file is "
                                         r"damaged or not this model's\Z"):
        load_checkpoint(path)


def test_a_resume_refused_for_nan_velocities_leaves_the_callers_model_as_it_was(splits, tmp_path):
    # The parameters were copied into train(model=...)'s model, then the velocities were found NaN and refused.
    _train(splits, epochs=1, checkpoint_dir=tmp_path / "run", stop_after_steps=2)
    path = tmp_path / "run" / CHECKPOINT_NAME
    with np.load(path) as z:
        saved = {k: z[k] for k in z.files}
    saved["velocity/fc8.bias"] = np.full_like(saved["velocity/fc8.bias"], np.nan)
    np.savez(path, **saved)
    model = _train(splits, epochs=1).model
    before = {k: np.array(to_host(v)) for k, v in model.parameters().items()}
    with pytest.raises(ValueError, match=r"velocities\) of fc8.bias hold NaN"):
        train(splits, model=model, epochs=1, batch_size=8, workers=0, verbose=False, lr=0.003,
              checkpoint_dir=tmp_path / "run", resume=True)
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(to_host(v), before[k], err_msg=k)


def test_cli_eval_refuses_a_bad_batch_size_before_loading_anything(tmp_path, capsys):
    # It was refused by evaluate(), in its own argument's name, after the data set had loaded (hours for a folder).
    with pytest.raises(SystemExit):
        cli.main(["eval", str(tmp_path / "nothing-here"), "--batch-size", "0"])
    assert "argument --batch-size: must be at least 1" in capsys.readouterr().err


def test_a_checkpoint_that_cannot_be_written_says_the_last_one_is_kept(splits, tmp_path, monkeypatch):
    # A full disk mid-run said only "[Errno 28] No space left on device".
    import errno

    real, calls = np.savez, []

    def savez(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(OSError, match=r"checkpoint .* could not be written \(.*No space left on device\); the one "
                                      r"written before is kept: --resume"):
        _train(splits, epochs=3, checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path)[1]["training"]["epoch"] == 1  # whole, as the first epoch left it
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_resume_with_another_preset_is_refused_as_such(tmp_path, capsys):
    # On the built-in set it said "image_size (--image-size) 40 gives 35x35 crops, too small for the paper network".
    assert cli.main(["train", "--preset", "tiny", "--steps", "1", "--quiet", "--no-ten-crop", "--device", "cpu",
                     "--workers", "0", "--checkpoint-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    for preset in ("paper", "small"):
        assert cli.main(["train", "--checkpoint-dir", str(tmp_path), "--resume", "--preset", preset, "--quiet",
                         "--device", "cpu"]) == 2
        assert f"holds a tiny network, not a {preset} one: resume without preset" in capsys.readouterr().err


def test_resuming_mid_epoch_with_fewer_epochs_says_the_steps_beyond_them(splits, tmp_path, capsys):
    # Stopped at epoch 2, step 2, resumed with epochs=1: it said "has done its 1 epoch" (no "asks for fewer"),
    # and the final evaluation tested weights with the 2 steps beyond it.
    _train(splits, epochs=3, checkpoint_dir=tmp_path, stop_after_steps=8)
    capsys.readouterr()
    _train(splits, epochs=1, checkpoint_dir=tmp_path, resume=True)
    assert ("run has done 1 epoch and 2 of epoch 2's 6 steps: nothing to train (epochs=1 asks for fewer)"
            in capsys.readouterr().err)


def test_plateau_patience_counts_bad_epochs_since_the_best_or_the_last_cut():
    # patience 2: the rate is cut after two epochs in a row that did not improve on the best, the count starting
    # again after an improvement and after each cut (errors by hand: cuts after epochs 4 and 6).
    from pyalexnet.training import PlateauSchedule

    s = PlateauSchedule(1.0, patience=2)
    lrs = [s.after_epoch(e, err) for e, err in enumerate([0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3])]
    assert lrs == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_a_run_steps_with_the_papers_sgd_settings_and_global_step_numbers(splits, monkeypatch):
    # Defaults: momentum 0.9, weight decay 5e-4 on the weights only; the dropout masks' step counts on across
    # epochs (a step number that began again each epoch repeated the first epoch's masks in every epoch).
    from pyalexnet import training

    calls = []
    real = training.sgd_step
    monkeypatch.setattr(training, "sgd_step", lambda *a, **k: (calls.append(k), real(*a, **k))[1])
    result = _train(splits, epochs=2, schedule="constant")
    per_epoch = len(splits.train) // 8
    assert [k["step"] for k in calls] == list(range(2 * per_epoch))
    assert result.model.step == 2 * per_epoch
    for k in calls:
        assert (k["momentum"], k["weight_decay"], k["decay_biases"], k["lr"]) == (0.9, 5e-4, False, 0.003)


def test_the_plateau_rule_reads_the_validation_error(splits, monkeypatch):
    # The paper cuts the rate when the validation error stops improving, not the training error.
    from pyalexnet.training import PlateauSchedule

    seen = []
    real = PlateauSchedule.after_epoch
    monkeypatch.setattr(PlateauSchedule, "after_epoch", lambda self, e, err: (seen.append((e, err)), real(self, e, err))[1])
    result = _train(splits, epochs=2, schedule="plateau")
    assert seen == [(e, row["val_top1"]) for e, row in enumerate(result.history)]
    assert [row["val_top1"] for row in result.history] != [row["train_top1"] for row in result.history]


def test_sgd_step_defaults_are_the_papers():
    # momentum 0.9 and weight decay 5e-4 (on the weights): two steps, so that the momentum term counts.
    x, y = _batch()
    default, explicit = _small_model(), _small_model()
    v_default, v_explicit = pyalexnet.sgd_velocities(default), pyalexnet.sgd_velocities(explicit)
    for step in range(2):
        pyalexnet.sgd_step(default, x, y, v_default, lr=0.01, step=step)
        pyalexnet.sgd_step(explicit, x, y, v_explicit, lr=0.01, momentum=0.9, weight_decay=5e-4, decay_biases=False,
                           step=step)
    for k, p in explicit.parameters().items():
        np.testing.assert_array_equal(default.parameters()[k], p, err_msg=k)


def test_paper_recipe_defaults():
    # PAPER.md: batch 128, lr 0.01 divided by 10 when the validation error stops improving, about 90 epochs,
    # weights N(0, 0.01).
    from pyalexnet.training import defaults_for

    d = defaults_for("paper")
    assert (d["epochs"], d["lr"], d["batch_size"], d["schedule"], d["init"]) == (90, 0.01, 128, "plateau", "paper")


def test_ten_crop_probabilities_average_the_ten_patches(splits):
    # The paper's test: the softmax averaged over the four corner crops, the centre crop and their horizontal
    # reflections; cut here with numpy slicing.
    from pyalexnet.training import ten_crop_probabilities

    model = pyalexnet.AlexNet(4, preset="small", input_size=CROP, devices="cpu", seed=1)
    images, mean, c = splits.val.images[:5], splits.mean_image, CROP
    edge = IMAGE - c
    want = 0
    for top, left in [(0, 0), (0, edge), (edge, 0), (edge, edge), (edge // 2, edge // 2)]:
        patch = images[:, top:top + c, left:left + c].astype(np.float32) - mean[top:top + c, left:left + c]
        for p in (patch, patch[:, :, ::-1]):
            want = want + model.predict(np.ascontiguousarray(p.transpose(0, 3, 1, 2))).astype(np.float64)
    got = ten_crop_probabilities(model, images, mean)
    np.testing.assert_allclose(got, want / 10, rtol=1e-5, atol=1e-7)
    centre = images[:, edge // 2:edge // 2 + c, edge // 2:edge // 2 + c].astype(np.float32) - mean[edge // 2:edge // 2 + c, edge // 2:edge // 2 + c]
    np.testing.assert_allclose(ten_crop_probabilities(model, images, mean, ten_crop=False),
                               model.predict(np.ascontiguousarray(centre.transpose(0, 3, 1, 2))), rtol=1e-5, atol=1e-7)


def test_top1_and_top5_mistakes_count_the_labels_rank():
    # Eight classes; the label is ranked 1st, 4th, 6th and 8th in the four rows: one top-1 hit, two top-5 hits.
    from pyalexnet.training import _errors

    scores = np.array([[8, 7, 6, 5, 4, 3, 2, 1]] * 4, np.float32)
    labels = np.array([0, 3, 5, 7])
    assert _errors(scores, labels) == (3, 2)
    assert _errors(-scores, labels) == (3, 1)  # reversed: 7, 6, 5, 4, 3 the top five, only label 0 out


def test_a_resumed_plateau_schedule_remembers_its_best_error(splits, tmp_path, monkeypatch):
    # The validation error held at 0.5: patience 1 cuts the rate after the second epoch. A run resumed after its
    # first epoch must cut at the same point, which it can only if the checkpoint's best error (0.5) comes back.
    from pyalexnet import training

    monkeypatch.setattr(training, "_validate", lambda model, loader, bar: (
        bar.close(), {"val_loss": 1.0, "val_top1": 0.5, "val_top5": None})[1])
    straight = _train(splits, epochs=3, schedule="plateau", patience=1)
    assert [h["lr"] for h in straight.history] == pytest.approx([0.003, 0.003, 0.0003])
    _train(splits, epochs=1, schedule="plateau", patience=1, checkpoint_dir=tmp_path)
    resumed = _train(splits, epochs=3, checkpoint_dir=tmp_path, resume=True)
    assert [h["lr"] for h in resumed.history] == pytest.approx([0.003, 0.003, 0.0003])
