"""What the command line prints, checked against what it does."""
import numpy as np
import pytest

from pyalexnet import cli


def test_train_names_as_many_guesses_as_the_pictures_draw(tmp_path, capsys):
    # With 3 classes predictions.png draws 3 bars an image ("the model's 3 most probable"); the closing
    # line said "top-5 guesses" whatever the class count.
    from data_files import image_folder

    image_folder(tmp_path / "imgs", np.random.default_rng(0), classes=("cat", "dog", "eel"), per_class=6)
    rc = cli.main(["train", "--data", str(tmp_path / "imgs"), "--image-size", "24", "--batch-size", "4",
                   "--steps", "1", "--checkpoint-dir", str(tmp_path / "run"), "--quiet", "--no-ten-crop",
                   "--device", "cpu", "--workers", "0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "test images, top-3 guesses" in out and "top-5 guesses" not in out
    assert (tmp_path / "run" / "predictions.png").exists()


def _checkpoint(folder, classes=3):
    """A tiny model's checkpoint, as train writes it (with a mean image), in `folder`."""
    import pyalexnet
    from pyalexnet.training import CHECKPOINT_NAME, save_checkpoint

    model = pyalexnet.AlexNet(classes, preset="tiny", devices="cpu", seed=0)
    side = model.input_size + model.input_size // 8  # the image size whose crops the model takes
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / CHECKPOINT_NAME, model, mean_image=np.full((side, side, 3), 120.0, np.float32))
    return folder


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_a_fifo_is_refused_not_waited_on(tmp_path, capsys):
    # Each open() of a FIFO without a writer (reader) blocked for ever: the checkpoint, an image, --history.
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run = _checkpoint(tmp_path / "run")
    assert cli.main(["eval", str(fifo)]) == 2
    assert "not a regular file" in _error_line(capsys)
    assert cli.main(["predict", str(fifo), str(fifo)]) == 2
    assert "not a regular file" in _error_line(capsys)
    assert cli.main(["predict", str(run), str(fifo), "--device", "cpu"]) == 1
    assert f"cannot read {fifo}: not a regular file" in _error_line(capsys)
    assert cli.main(["train", "--history", str(fifo), "--steps", "1", "--preset", "tiny"]) == 2
    assert "--history" in _error_line(capsys)
    assert cli.main(["eval", str(run), "--class-names", str(fifo)]) == 2
    assert "is not a regular file" in _error_line(capsys)  # was "does not exist"


def test_empty_strings_are_refused_not_taken_for_the_current_folder(tmp_path, capsys, monkeypatch):
    # '' is Path('.'): train wrote its checkpoint into the current folder, predict classified every image under
    # it, eval took --data '' and --class-names '' for "not given".
    monkeypatch.chdir(tmp_path)
    run = _checkpoint(tmp_path / "run")
    assert cli.main(["train", "--checkpoint-dir", "", "--steps", "1", "--preset", "tiny"]) == 2
    assert "--checkpoint-dir needs a folder" in _error_line(capsys)
    assert cli.main(["train", "--history", "", "--steps", "1", "--preset", "tiny"]) == 2
    assert "--history needs a file name" in _error_line(capsys)
    assert cli.main(["predict", str(run), ""]) == 2
    assert "an IMAGE argument is empty" in _error_line(capsys)
    for command in (["predict", str(run), "x.png"], ["eval", str(run)]):
        assert cli.main([*command, "--class-names", ""]) == 2
        assert "--class-names needs a file name" in _error_line(capsys)
    assert cli.main(["eval", str(run), "--data", ""]) == 2
    assert "--data needs a data set" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_output_paths_that_cannot_be_written_are_named_before_the_work(tmp_path, capsys):
    # /proc/x.png failed after the classifying with "[Errno 2] No such file or directory", naming no option.
    run = _checkpoint(tmp_path / "run")
    assert cli.main(["predict", str(run), "x.png", "--picture", "/proc/x.png"]) == 2
    assert "--picture's folder /proc" in (line := _error_line(capsys))
    assert line.endswith("give --picture a file in a folder you can write")
    assert cli.main(["train", "--history", "/proc/h.jsonl", "--steps", "1", "--preset", "tiny"]) == 2
    assert "--history's folder /proc" in (line := _error_line(capsys))
    assert line.endswith("give --history a file in a folder you can write")


def test_prepare_names_a_negative_seed(tmp_path, capsys):
    # numpy's "expected non-negative integer" named no option.
    assert cli.main(["prepare", str(tmp_path / "src"), str(tmp_path / "dst"), "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in _error_line(capsys)


def test_bench_counts_beyond_int32_are_named(tmp_path, capsys):
    # --batch 10**20 ended in the kernels' bindings: a screen of argument types naming no option.
    assert cli.main(["bench", "--quick", "--only", "relu", "--out", str(tmp_path), "--batch", str(10 ** 20)]) == 2
    assert "--batch must be < 2^31" in _error_line(capsys)


def test_bench_stopped_before_any_row_keeps_the_earlier_results(tmp_path, capsys, monkeypatch):
    # A Ctrl-C before the first row replaced an earlier run's complete files with empty ones.
    from pyalexnet.bench import cli as bench_cli

    earlier = tmp_path / "bench_cpu_quick.json"
    earlier.write_text('{"earlier": true}')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_cli, "time_row", interrupted)
    args = ["bench", "--quick", "--no-chart", "--device", "cpu", "--only", "relu", "--out", str(tmp_path)]
    assert cli.main(args) == 130
    assert "nothing was timed" in capsys.readouterr().err
    assert earlier.read_text() == '{"earlier": true}'


def _run_cli(args, **kwargs):
    import os
    import subprocess
    import sys

    env = dict(os.environ, **kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "pyalexnet", *args], capture_output=True, timeout=120, env=env,
                          **kwargs)


def test_a_closed_stdout_is_one_line_not_a_traceback():
    # With fd 1 closed sys.stdout is None: print() dropped the results and the final flush() was an AttributeError.
    result = _run_cli(["info"], stdout=None, pass_fds=(), preexec_fn=lambda: __import__("os").close(1))
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert b"standard output is closed" in result.stderr


def test_class_names_print_where_stdout_is_ascii(tmp_path):
    # LC_ALL=C without Python's UTF-8 mode: 'ñeel' was a UnicodeEncodeError after the classifying, results lost.
    import os

    from data_files import write_image

    import pyalexnet
    from pyalexnet.training import CHECKPOINT_NAME, save_checkpoint

    model = pyalexnet.AlexNet(2, preset="tiny", devices="cpu", seed=0)
    side = model.input_size + model.input_size // 8
    save_checkpoint(tmp_path / CHECKPOINT_NAME, model, mean_image=np.full((side, side, 3), 120.0, np.float32),
                    meta={"classes": ["cat", "ñeel"]})
    write_image(tmp_path / "a.png", np.random.default_rng(0))
    # A file name's undecodable byte prints as that byte, the name a shell can be given back, not as an escape.
    odd = write_image(tmp_path / os.fsdecode(b"\xff"), np.random.default_rng(1))
    result = _run_cli(["predict", str(tmp_path), str(tmp_path / "a.png"), str(odd), "--device", "cpu", "--top", "2"],
                      env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert b"\\xf1eel" in result.stdout
    assert os.fsencode(tmp_path) + b"/\xff.png: " in result.stdout


def test_history_written_in_place_needs_no_writable_folder(tmp_path, monkeypatch):
    # --history /dev/null was refused for every user but root: /dev cannot take new files, though /dev/null is
    # written in place (as is an existing writable file in a read-only folder).
    from pyalexnet import _backend
    from pyalexnet.commands.train import _check_history

    monkeypatch.setattr(_backend, "output_folder_problem", lambda folder, name, **k: f"{name} {folder}: cannot be written")
    _check_history("/dev/null")
    existing = tmp_path / "history.jsonl"
    existing.write_text("")
    _check_history(str(existing))
    with pytest.raises(ValueError, match="cannot be written"):
        _check_history(str(tmp_path / "new.jsonl"))


def test_train_hands_every_option_to_train_and_leaves_the_rest_to_its_defaults(tmp_path, monkeypatch, capsys):
    # --momentum and --weight-decay swapped, or an option dropped on its way to train(), trained another recipe
    # without a word; and the command's own defaults (--device auto: "every GPU it finds") must be the function's.
    import inspect

    import pyalexnet

    real_train = pyalexnet.train
    calls = []

    def diverging(data=None, **kwargs):
        calls.append(dict(kwargs, data=data))
        raise pyalexnet.TrainingDiverged("the loss is nan at step 2 of epoch 1", epoch=0, step=1, global_step=1,
                                         loss=float("nan"), checkpoint=None)

    monkeypatch.setattr(pyalexnet, "train", diverging)
    history = tmp_path / "h.jsonl"
    assert cli.main(["train", "--data", "some/folder", "--epochs", "7", "--batch-size", "9", "--lr", "0.03",
                     "--momentum", "0.8", "--weight-decay", "0.002", "--no-decay-biases", "--schedule", "4,6",
                     "--patience", "5", "--preset", "tiny", "--init", "caffe", "--device", "cpu", "--seed", "11",
                     "--checkpoint-dir", str(tmp_path / "run"), "--resume", "--overwrite", "--checkpoint-every", "13",
                     "--history", str(history), "--steps", "17", "--workers", "3", "--val-fraction", "0.2",
                     "--image-size", "50", "--quiet"]) == 3  # its own status: a diverged run is no usage mistake
    assert "pyalexnet train: training diverged: the loss is nan" in _error_line(capsys)
    assert calls.pop() == dict(
        data="some/folder", epochs=7, batch_size=9, lr=0.03, momentum=0.8, weight_decay=0.002, decay_biases=False,
        schedule=[4, 6], patience=5, preset="tiny", init="caffe", device="cpu", seed=11,
        checkpoint_dir=str(tmp_path / "run"), resume=True, overwrite=True, checkpoint_every=13, history=str(history),
        stop_after_steps=17, workers=3, val_fraction=0.2, image_size=50, progress=False, verbose=False)
    assert cli.main(["train", "--schedule", "constant"]) == 3
    assert calls.pop()["schedule"] == "constant"
    assert cli.main(["train"]) == 3
    defaults = {name: p.default for name, p in inspect.signature(real_train).parameters.items()}
    given = calls.pop()
    assert given.pop("verbose") is True and given.pop("progress") is None  # a bar where a terminal shows one
    assert given == {name: defaults[name] for name in given}


def test_train_says_how_it_evaluated_and_where_everything_is(tmp_path, monkeypatch, capsys):
    # The closing lines are all a user sees of a finished run: the crop the final evaluation used (it must also be
    # the one used), chance for the class count, the checkpoint, and the confusion matrix exactly when drawn (up to
    # CONFUSION_MAX_CLASSES classes: 3 here, by monkeypatch, to keep the run tiny).
    from data_files import image_folder

    import pyalexnet
    from pyalexnet import viz

    image_folder(tmp_path / "imgs", np.random.default_rng(0), classes=("cat", "dog", "eel"), per_class=6)
    crops = []
    real_evaluate = pyalexnet.evaluate

    def recording(*args, **kwargs):
        crops.append(kwargs["ten_crop"])
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(pyalexnet, "evaluate", recording)

    def train(folder, *more):
        return cli.main(["train", "--data", str(tmp_path / "imgs"), "--image-size", "24", "--batch-size", "4",
                         "--steps", "1", "--checkpoint-dir", str(folder), "--quiet", "--device", "cpu",
                         "--workers", "0", *more])

    monkeypatch.setattr(viz, "CONFUSION_MAX_CLASSES", 3)
    run = tmp_path / "a run"  # a space: the commands it suggests quote the folder
    assert train(run, "--no-ten-crop") == 0
    out = capsys.readouterr().out
    assert crops == [False]
    assert "validation (centre crop, " in out and "(chance: top-1 error 0.667)" in out
    assert f"checkpoint: {run / 'checkpoint.npz'}\n" in out
    assert (run / "confusion.png").exists() and "and the confusion matrix" in out
    assert f"pyalexnet eval '{run}' --pictures --mistakes" in out
    monkeypatch.setattr(viz, "CONFUSION_MAX_CLASSES", 2)
    assert train(tmp_path / "b") == 0
    out = capsys.readouterr().out
    assert crops == [False, True] and "validation (ten-crop, " in out
    assert not (tmp_path / "b" / "confusion.png").exists() and "confusion" not in out

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Stopped while evaluating: the command to go on with names the folder as a shell reads it.

    monkeypatch.setattr(pyalexnet, "evaluate", interrupted)
    assert train(tmp_path / "c d") == 130
    assert f"`pyalexnet eval '{tmp_path / 'c d'}' --pictures` evaluates it" in _error_line(capsys)


def test_prepare_hands_every_option_to_prepare_and_says_what_it_wrote(tmp_path, monkeypatch, capsys):
    # An option dropped on its way (--seed, --val-fraction, --overwrite: another store without a word), the counts
    # swapped in its one line, a default other than the function's, the small-size warning at the wrong size, or
    # a Ctrl-C's note of how much work the next run redoes.
    import inspect
    from types import SimpleNamespace

    import pyalexnet.data
    from pyalexnet.data import smallest_image_size

    real_prepare = pyalexnet.data.prepare
    calls = []

    def recording(src, dst, **kwargs):
        calls.append(dict(kwargs, src=src, dst=dst))
        return dst

    store = SimpleNamespace(train=[0] * 7, val=[0] * 2, image_size=40, num_classes=3, num_skipped=1)
    monkeypatch.setattr(pyalexnet.data, "prepare", recording)
    monkeypatch.setattr(pyalexnet.data, "open_store", lambda dst: store)
    assert cli.main(["prepare", "src", "dst", "--size", "40", "--val-fraction", "0.3", "--seed", "5", "--workers", "3",
                     "--checkpoint-every", "9", "--overwrite", "-q"]) == 0
    assert capsys.readouterr().out == ("dst: 7 training and 2 validation images of 40x40, 3 classes, "
                                       "1 unreadable skipped\n")
    assert calls.pop() == dict(src="src", dst="dst", image_size=40, val_fraction=0.3, seed=5, checkpoint_every=9,
                               workers=3, quiet=True, overwrite=True)
    assert cli.main(["prepare", "src", "dst"]) == 0
    defaults = {name: p.default for name, p in inspect.signature(real_prepare).parameters.items()}
    given = calls.pop()
    assert given.pop("src") == "src" and given.pop("dst") == "dst"
    assert given == {name: defaults[name] for name in given}  # --workers 0: the function's None, the CPU count
    # Sizes too small for any network train builds are warned of, from the smallest that trains up.
    smallest = min(smallest_image_size(p) for p in ("small", "tiny", "paper"))
    capsys.readouterr()
    assert cli.main(["prepare", "src", "dst", "--size", str(smallest)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["prepare", "src", "dst", "--size", str(smallest - 1)]) == 0
    assert f"warning: --size {smallest - 1} gives" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # the option named, not prepare()'s "checkpoint_every"
        cli.main(["prepare", "src", "dst", "--checkpoint-every", "0"])
    assert exc.value.code == 2 and "argument --checkpoint-every: must be at least 1, got 0" in capsys.readouterr().err
    assert cli.main(["prepare", "src", "dst", "--size", "0"]) == 2
    assert "--size must be positive, got 0" in _error_line(capsys)
    assert len(calls) == 2

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyalexnet.data, "prepare", interrupted)
    assert cli.main(["prepare", "src", "dst", "--checkpoint-every", "9"]) == 130
    assert _error_line(capsys) == ("interrupted: the same command again goes on where dst stopped (its progress is "
                                   "saved every 9 images)")


def test_no_command_prints_the_help_and_fails(capsys):
    # `pyalexnet` alone did nothing a script could tell from success if it exited 0.
    assert cli.main([]) == 2
    assert capsys.readouterr().out.startswith("usage: pyalexnet")


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    # Importing every command's module takes a moment: a Ctrl-C there was a traceback.
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["info"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_reader_gone_away_stops_quietly_whether_or_not_output_is_buffered(unbuffered):
    # Buffered (a pipe, as a user's `| head` is), the broken pipe shows at main's flush, or, left there, at exit:
    # "Exception ignored ... BrokenPipeError" and status 120. Unbuffered (PYTHONUNBUFFERED=1), at the first print.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    p = subprocess.Popen([sys.executable, "-m", "pyalexnet", "info", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # before the command has written anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


def test_a_count_that_is_no_number_is_named_with_what_was_given(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "run", "x.png", "--top", "five"])
    assert exc.value.code == 2 and "argument --top: must be a whole number, got 'five'" in capsys.readouterr().err


def test_info_says_what_each_backend_has():
    # OpenMP on/off, the GPU's sm_XY and whether the GPU backend is used, as backend_info() gives them.
    from pyalexnet.commands.info import format_info

    gpu = dict(index=0, name="NVIDIA H100", compute_capability="9.0", memory_gib=79.1, multiprocessors=132)
    info = dict(version="9.9", built_with_cuda=True, cuda_build_version="12.4", cuda_architectures="80;90",
                cpu_threads=4, openmp=True, cpu_simd="avx2", cuda_driver_version="12.6", cupy="13.0", gpus=[gpu],
                reason=None)
    text = format_info(info)
    assert "OpenMP on, 4 threads" in text and "GPU 0              : NVIDIA H100 (sm_90, 79.1 GiB, 132 SMs)" in text
    assert text.endswith("\n  GPU backend        : usable")
    text = format_info(dict(info, openmp=False, gpus=[], reason="no GPU found"))
    assert "OpenMP off, 4 threads" in text and text.endswith("\n  GPU backend        : not used: no GPU found")


def test_gradcheck_hands_its_options_to_the_checks(monkeypatch, capsys):
    # --points or --seed dropped on the way checked other points than asked; --tol 0 was refused in run_all's
    # words ("tol"), not the option's; a check that failed was also listed as a zeros-only pass.
    import inspect

    import pyalexnet.gradcheck as gc

    defaults = {name: p.default for name, p in inspect.signature(gc.run_all).parameters.items()}
    fine = gc.CheckResult(check="relu", tensor="dx", max_rel_error=0.0, worst_ratio=0.1, points=4, skipped=0,
                          tol=0.05, nonzero=4)
    nan = gc.CheckResult(check="lrn", tensor="dx", max_rel_error=0.0, worst_ratio=0.0, points=4, skipped=0, tol=0.05,
                         nonfinite=1)
    calls = []

    def run_all(device, **kwargs):
        calls.append(dict(kwargs, device=device))
        return [fine, nan]

    monkeypatch.setattr(gc, "run_all", run_all)
    assert cli.main(["gradcheck", "--points", "7", "--seed", "3", "--tol", "0.05", "--layers-only"]) == 1
    assert calls.pop() == dict(device="cpu", points=7, seed=3, tol=0.05, network=False)
    out = capsys.readouterr().out
    assert "FAILED: lrn dx" in out and "only zero gradients" not in out
    assert cli.main(["gradcheck"]) == 1
    assert calls.pop() == dict(device=defaults["device"], points=defaults["points"], seed=defaults["seed"],
                               tol=defaults["tol"], network=True)
    capsys.readouterr()
    for tol in ("0", "nan"):
        assert cli.main(["gradcheck", "--tol", tol]) == 2
        assert f"--tol must be positive, got {float(tol)}" in _error_line(capsys)
    assert not calls


def test_eval_reports_what_it_measured_as_it_measured_it(tmp_path, monkeypatch, capsys):
    # The crop and batch size asked for, the five classes most often wrong, the confusion matrix up to
    # CONFUSION_MAX_CLASSES classes (6 here, by monkeypatch), what --mistakes found, and the results kept when the
    # pictures fail. The evaluation and the pictures are stood in for: their numbers are what is checked.
    import json

    from data_files import image_folder

    import pyalexnet
    from pyalexnet import viz

    classes = tuple(f"c{i}" for i in range(6))
    image_folder(tmp_path / "d" / "train", np.random.default_rng(0), classes=classes, per_class=1)
    image_folder(tmp_path / "d" / "val", np.random.default_rng(1), classes=classes, per_class=5)
    for extra in ("003.png", "004.png"):  # c5: 3 test images, all wrong, before c4's 4 of 5
        (tmp_path / "d" / "val" / "c5" / extra).unlink()
    run = _checkpoint(tmp_path / "run", classes=6)
    asked, drawn = [], []

    def evaluate(model, splits, **kwargs):  # class k: its first k test images wrong (c5 has 3)
        asked.append(kwargs)
        labels = splits.val.labels
        guesses = labels.copy()
        for c in range(6):
            guesses[np.flatnonzero(labels == c)[:c]] = (c + 1) % 6
        return {"top1": float((guesses != labels).mean()), "top5": 0.0, "loss": 1.0, "images": len(labels),
                "predictions": guesses}

    def save_test_pictures(model, splits, where, **kwargs):
        drawn.append(kwargs)
        return {"paths": [str(where / "predictions.png"), str(where / "neighbours.png")], "agreement": 0.25,
                "mistakes": 3, "searched": 30}

    monkeypatch.setattr(pyalexnet, "evaluate", evaluate)
    monkeypatch.setattr(viz, "save_test_pictures", save_test_pictures)
    monkeypatch.setattr(viz, "CONFUSION_MAX_CLASSES", 6)
    data = str(tmp_path / "d")
    assert cli.main(["eval", str(run), "--data", data, "--center-crop", "--batch-size", "7", "--quiet",
                     "--pictures", "--mistakes"]) == 0
    out = capsys.readouterr().out
    assert asked.pop()["batch_size"] == 7
    assert f"{data} (centre crop, 28 images): top-1 error 0.4643" in out
    assert "hardest classes (top-1 errors): c5 3 of 3; c4 4 of 5; c3 3 of 5; c2 2 of 5; c1 1 of 5\n" in out
    assert drawn[-1]["predictions"] is not None  # for confusion.png
    assert "the pictures show mistakes: 3 among 30 test images (centre crop)" in out
    assert "25% of the nearest training images share their test image's class" in out
    assert cli.main(["eval", str(run), "--data", data, "--center-crop", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ten_crop"] is False and [c["wrong"] for c in result["per_class"]] == [0, 1, 2, 3, 4, 3]

    def full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(viz, "save_test_pictures", full)
    assert cli.main(["eval", str(run), "--data", data, "--quiet", "--pictures"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"{data} (ten-crop, 28 images)") and "{" not in out  # JSON only with --json
    assert "Traceback" not in err
    assert ("the pictures could not be drawn (No space left on device); the results above were printed"
            in err.strip().splitlines()[-1])


def test_eval_per_class_counts_a_class_without_test_images():
    # A last class with no test images (a short val/ folder) was an IndexError after the whole evaluation.
    from pyalexnet.commands.eval import _per_class

    rows = _per_class([0, 0, 1], [0, 1, 1], ["a", "b", "c"], ["A", "B", "C"])
    assert rows == [{"class": "a", "name": "A", "images": 2, "wrong": 1, "top1_error": 0.5},
                    {"class": "b", "name": "B", "images": 1, "wrong": 0, "top1_error": 0.0},
                    {"class": "c", "name": "C", "images": 0, "wrong": 0, "top1_error": None}]


def test_predict_shows_what_was_asked_for_each_image(tmp_path, monkeypatch, capsys):
    # --top's count and default (5), --center-crop and --device reaching the model, a batch of only unreadable
    # files skipped rather than the end of the run, and --picture's first PICTURE_MAX images (2 here), its title's
    # class count and captions that tell a/0.png from b/0.png.
    import json

    from data_files import write_image

    import pyalexnet.training
    import pyalexnet.viz
    from pyalexnet.commands import predict as predict_command

    run = _checkpoint(tmp_path / "run", classes=6)
    rng = np.random.default_rng(0)
    images = [str(write_image(tmp_path / name, rng)) for name in ("a/0.png", "b/0.png", "b/1.png")]
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    devices, crops = [], []
    resolve, probabilities = pyalexnet.training._resolve_devices, pyalexnet.training.ten_crop_probabilities
    monkeypatch.setattr(pyalexnet.training, "_resolve_devices", lambda d: devices.append(d) or resolve("cpu"))
    monkeypatch.setattr(pyalexnet.training, "ten_crop_probabilities",
                        lambda *a, **k: crops.append(k["ten_crop"]) or probabilities(*a, **k))
    assert cli.main(["predict", str(run), images[0]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{images[0]}: ") and out.count("%") == 5
    assert devices == ["auto"] and crops == [True]
    assert cli.main(["predict", str(run), images[0], "--top", "2", "--json", "--center-crop",
                     "--device", "cuda:1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["top"]) == 2
    assert devices[-1] == "cuda:1" and crops[-1] is False
    assert cli.main(["predict", str(run), str(broken), images[0], "--batch-size", "1"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{images[0]}: ") and f"cannot read {broken}: " in err
    pictures = []

    class Picture:
        def save(self, path):
            pictures[-1]["saved"] = path

    def predictions_image(images, labels, probabilities, names, **kwargs):
        pictures.append(dict(kwargs, count=len(images)))
        return Picture()

    monkeypatch.setattr(pyalexnet.viz, "predictions_image", predictions_image)
    monkeypatch.setattr(predict_command, "PICTURE_MAX", 2)
    monkeypatch.setenv("HOME", str(tmp_path))
    picture = tmp_path / "P.PNG"  # as --picture=~/P.PNG, which no shell expands: ~ and a capital ending taken
    assert cli.main(["predict", str(run), *images, "--batch-size", "2", "--top", "8", "--picture=~/P.PNG"]) == 0
    assert f"wrote {picture} (the first 2 of 3 images)" in capsys.readouterr().out
    drawn = pictures.pop()
    assert drawn["count"] == 2 and drawn["captions"] == ["a/0.png", "b/0.png"] and drawn["saved"] == picture
    assert drawn["top"] == 6 and "each image's 6 most probable classes" in drawn["title"]


def test_predict_refuses_what_it_cannot_use_in_one_line(tmp_path, monkeypatch, capsys):
    # A checkpoint without the training mean image (save_checkpoint's default) was an AttributeError traceback;
    # a --picture that is a socket was found only after the classifying.
    import socket

    import pyalexnet
    from pyalexnet.training import CHECKPOINT_NAME, save_checkpoint

    model = pyalexnet.AlexNet(3, preset="tiny", devices="cpu", seed=0)
    save_checkpoint(tmp_path / CHECKPOINT_NAME, model)
    assert cli.main(["predict", str(tmp_path), "x.png"]) == 2
    assert "has no training mean image to subtract" in _error_line(capsys)
    monkeypatch.chdir(tmp_path)  # a short path: a socket's is limited to about 100 bytes
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind("p.png")
        assert cli.main(["predict", str(tmp_path / "nothing-here"), "x.png", "--picture", "p.png"]) == 2
    assert "--picture p.png is not a regular file" in _error_line(capsys)
