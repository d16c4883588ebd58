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
    assert "--picture's folder /proc" in _error_line(capsys)
    assert cli.main(["train", "--history", "/proc/h.jsonl", "--steps", "1", "--preset", "tiny"]) == 2
    assert "--history's folder /proc" in _error_line(capsys)


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
    from data_files import write_image

    import pyalexnet
    from pyalexnet.training import CHECKPOINT_NAME, save_checkpoint

    model = pyalexnet.AlexNet(2, preset="tiny", devices="cpu", seed=0)
    side = model.input_size + model.input_size // 8
    save_checkpoint(tmp_path / CHECKPOINT_NAME, model, mean_image=np.full((side, side, 3), 120.0, np.float32),
                    meta={"classes": ["cat", "ñeel"]})
    write_image(tmp_path / "a.png", np.random.default_rng(0))
    result = _run_cli(["predict", str(tmp_path), str(tmp_path / "a.png"), "--device", "cpu", "--top", "2"],
                      env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert b"\\xf1eel" in result.stdout


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
