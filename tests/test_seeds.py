"""benchmarks/seeds.py: one `pyalexnet train` per seed, a table, the histories and a picture."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_files import cifar_folder

ROOT = Path(__file__).resolve().parents[1]


def _seeds(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks.seeds", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_runs_every_seed_and_writes_the_table_the_histories_and_the_picture(tmp_path):
    cifar_folder(tmp_path / "c", np.random.default_rng(0), per_batch=8)
    out = tmp_path / "out"
    p = _seeds("--seeds", "0,1", "--jobs", "2", "--out", str(out), "--",
               "--data", f"cifar10:{tmp_path / 'c'}", "--epochs", "2", "--batch-size", "8", "--workers", "0")
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "seeds.json").read_text())
    assert [r["seed"] for r in report["runs"]] == [0, 1] and report["threads_per_run"] >= 1
    for r in report["runs"]:
        assert r["error"] is None and 0 <= r["top1"] <= 1 and [h["epoch"] for h in r["history"]] == [1, 2]
    # different seeds, different runs (weights, order, augmentation)
    assert report["runs"][0]["history"][0]["train_loss"] != report["runs"][1]["history"][0]["train_loss"]
    table = (out / "seeds.md").read_text()
    assert "| 0 |" in table and "| 1 |" in table and "--epochs 2" in table
    assert Image.open(out / "seeds.png").size == (700, 440)


def test_resume_keeps_the_finished_runs_and_runs_the_rest(tmp_path):
    cifar_folder(tmp_path / "c", np.random.default_rng(0), per_batch=8)
    out, train = tmp_path / "out", ["--data", f"cifar10:{tmp_path / 'c'}", "--epochs", "1", "--batch-size", "8"]
    assert _seeds("--seeds", "0", "--out", str(out), "--", *train).returncode == 0
    first = json.loads((out / "seeds.json").read_text())["runs"][0]
    p = _seeds("--seeds", "0-1", "--resume", "--out", str(out), "--", *train)
    assert p.returncode == 0, p.stderr
    assert "kept from" in p.stdout and "[1/1] seed 1" in p.stdout
    runs = json.loads((out / "seeds.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0]["history"] == first["history"]
    p = _seeds("--seeds", "0-1", "--resume", "--out", str(out), "--", *train, "--lr", "0.1")
    assert p.returncode != 0 and "was made with train_args" in p.stderr
    # Runs of an older default recipe are not mixed with this one's. A file from before the key: its commit says.
    report = json.loads((out / "seeds.json").read_text())
    assert report["recipe_version"] == 2
    del report["recipe_version"]
    for commit, refused in (("73d7bf5", "trained with pyalexnet's recipe 1, this version's is 2"),  # before f6ead08
                            ("nosuchcommit", "trained with a recipe its commit 'nosuchcommit' cannot tell")):
        (out / "seeds.json").write_text(json.dumps(dict(report, commit=commit)))
        p = _seeds("--seeds", "0-2", "--resume", "--out", str(out), "--", *train)
        assert p.returncode != 0 and refused in p.stderr, p.stderr


def test_a_study_from_before_recipes_were_recorded_is_placed_by_its_commit():
    # The committed study (made at f6ead08, recipe 2, before seeds.json said so) can be resumed; one made earlier not.
    from benchmarks.seeds import _recipe_of_commit

    if _recipe_of_commit("HEAD") is None:
        pytest.skip("not a git checkout with its history")
    assert _recipe_of_commit("f6ead08") == 2 and _recipe_of_commit("a2e57fa+modified") == 2
    assert _recipe_of_commit("73d7bf5") == 1 and _recipe_of_commit("") is None


def test_a_failed_run_is_reported_and_sets_the_exit_status(tmp_path):
    p = _seeds("--seeds", "3", "--out", str(tmp_path / "out"), "--", "--data", str(tmp_path / "no-such-folder"))
    assert p.returncode == 1
    report = json.loads((tmp_path / "out" / "seeds.json").read_text())
    assert report["runs"][0]["error"] and report["runs"][0]["top1"] is None
    assert "failed" in (tmp_path / "out" / "seeds.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--seeds", "x"], "seeds must be like"),
    (["--seeds", "0", "--", "--seed", "4"], "--seed is set by this script"),
    (["--seeds", "0", "--jobs", "0"], "argument --jobs: must be at least 1, got 0"),
    (["--seeds", "7-0"], "the range '7-0' is reversed: write 0-7"),  # was "seeds must be non-negative integers"
])
def test_bad_arguments_are_refused(tmp_path, args, message):
    p = _seeds("--out", str(tmp_path), *args)
    assert p.returncode == 2 and message in p.stderr


_FAKE_TRAIN = r'''
import sys, time
from pathlib import Path
seed, marks = int(sys.argv[1]), Path(sys.argv[2])
(marks / f"started{seed}").write_text("")
if seed == 0:
    print("ten-crop (10 crops) top-1 error 0.5000, top-5 error 0.1000")
else:
    time.sleep(60)
'''


def test_ctrl_c_stops_at_once_and_writes_what_finished(tmp_path):
    # Ctrl-C ended the running seed, then the queued seeds each trained in turn, then a traceback and nothing
    # written. Here: seed 0 finishes, seed 1 is running (a stand-in that sleeps), 2 and 3 are queued.
    import os
    import signal
    import time

    marks, out = tmp_path / "marks", tmp_path / "out"
    marks.mkdir()
    (tmp_path / "fake_train.py").write_text(_FAKE_TRAIN)
    wrapper = (f"import sys; import benchmarks.seeds as s; s._command = lambda seed, history, args: "
               f"[sys.executable, {str(tmp_path / 'fake_train.py')!r}, str(seed), {str(marks)!r}]; "
               f"sys.exit(s.main(sys.argv[1:]))")
    p = subprocess.Popen([sys.executable, "-c", wrapper, "--seeds", "0-3", "--out", str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (marks / "started1").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (marks / "started1").exists()
    os.kill(p.pid, signal.SIGINT)  # to the script only: its running child must be ended by it
    try:
        stdout, stderr = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("the script went on after Ctrl-C") from None
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted: seeds 1, 2, 3 not finished" in stderr
    assert sorted(f.name for f in marks.iterdir()) == ["started0", "started1"]  # 2 and 3 never started
    report = json.loads((out / "seeds.json").read_text())
    assert [r["seed"] for r in report["runs"]] == [0] and "seeds 1, 2, 3 not finished" in report["interrupted"]
    assert "Interrupted (stopped by Ctrl-C" in (out / "seeds.md").read_text()


def test_the_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two(tmp_path):
    # It took the upper middle one: seeds at 88.7% and 90.4% reported a median of 90.4%.
    from benchmarks.seeds import write_report

    runs = [dict(seed=s, top1=e, top5=0.5, seconds=6.0, history=[], error=None) for s, e in enumerate([0.88, 0.90])]
    meta = dict(train_args=[], commit="c", date="d", machine="m", jobs=1, threads_per_run=None)
    write_report(runs, meta, tmp_path)
    assert "median 89.0%, worst 90.0%, best 88.0%" in (tmp_path / "seeds.md").read_text()


def test_an_out_that_is_a_file_is_refused_before_any_run(tmp_path):
    # It trained every seed, then failed with a FileExistsError traceback.
    (tmp_path / "afile").write_text("x")
    for out, message in [(tmp_path / "afile", "is a file, not a folder"),
                         (tmp_path / "afile" / "sub", "cannot make that folder")]:
        p = _seeds("--seeds", "0", "--out", str(out), "--", "--data", str(tmp_path / "no-such-folder"))
        assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_an_out_that_cannot_be_written_is_refused_before_any_run(tmp_path, capsys, monkeypatch):
    # It was found when the first report was written, after a whole training run. (Mocked: root may write anywhere.)
    import os

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import seeds
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.setattr(seeds, "run_one", lambda *a, **k: pytest.fail("trained before checking --out"))
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path / "ro"))
    (tmp_path / "d" / "seeds.json").mkdir(parents=True)
    for out, message in [(tmp_path / "ro", f"--out {tmp_path / 'ro'}: the folder cannot be written"),
                         (tmp_path / "d", f"{tmp_path / 'd' / 'seeds.json'} is a folder")]:
        with pytest.raises(SystemExit) as exc:
            seeds.main(["--seeds", "0", "--out", str(out)])
        assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{cut", "[]", '{"runs": [1]}', '{"train_args": []}'])
def test_resume_from_a_damaged_seeds_json_is_one_clear_line(tmp_path, text):
    (tmp_path / "seeds.json").write_text(text)
    p = _seeds("--seeds", "0", "--resume", "--out", str(tmp_path), "--", "--data", str(tmp_path / "nothing"))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"--resume: cannot read {tmp_path / 'seeds.json'}" in p.stderr


@pytest.mark.parametrize("line, want", [
    ("validation (ten-crop, 1,000 images): top-1 error 0.887, top-5 error 0.492 (chance: top-1 error 0.900)",
     (0.887, 0.492)),
    # 5 classes or fewer: no top-5; --no-ten-crop: the centre crop. Both finished runs read as having no result.
    ("validation (ten-crop, 50 images): top-1 error 0.300 (chance: top-1 error 0.800)", (0.3, None)),
    ("validation (centre crop, 50 images): top-1 error 0.250, top-5 error 0.010 (chance: top-1 error 0.900)",
     (0.25, 0.01)),
    ("Traceback ...\nValueError: no such folder", (None, None)),
])
def test_the_final_errors_are_read_from_each_form_train_prints(line, want):
    from benchmarks.seeds import final_errors

    assert final_errors("some line\n" + line + "\n") == want


def test_a_centre_crop_study_has_its_results(tmp_path):
    out = tmp_path / "out"
    p = _seeds("--seeds", "0", "--out", str(out), "--", "--preset", "tiny", "--epochs", "1", "--steps", "2",
               "--workers", "0", "--no-ten-crop")
    assert p.returncode == 0, p.stderr
    run = json.loads((out / "seeds.json").read_text())["runs"][0]
    assert run["error"] is None and 0 <= run["top1"] <= 1, run
    assert "centre-crop top-1 error" in p.stdout and "| seed | centre-crop top-1 |" in (out / "seeds.md").read_text()


def test_the_share_above_5_percent_is_of_the_runs_with_a_result(tmp_path):
    # "1 of 3 runs above 5%" counted two failed runs as below it.
    from benchmarks.seeds import write_report

    runs = [dict(seed=0, top1=0.08, top5=0.01, seconds=6.0, history=[], error=None)] + \
        [dict(seed=s, top1=None, top5=None, seconds=1.0, history=[], error="boom") for s in (1, 2)]
    write_report(runs, dict(train_args=[], commit="c", date="d", machine="m", jobs=1, threads_per_run=None), tmp_path)
    assert "1 of 1 runs above 5% (2 more without a result)." in (tmp_path / "seeds.md").read_text()
