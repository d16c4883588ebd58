"""What the command line prints, checked against what it does."""
import numpy as np

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
