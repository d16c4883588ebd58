"""The pictures: conv1's filters (tower a above tower b) and the training curves."""
import numpy as np
import pytest

from pyalexnet import AlexNet
from pyalexnet.viz import curves_image, filters_image, runs_image


@pytest.fixture
def model():
    return AlexNet(4, preset="tiny", devices="cpu")


def test_filters_show_each_tower_in_its_own_block_with_its_colours(model):
    params = model.parameters()
    wa, wb = params["conv1a.weight"], params["conv1b.weight"]
    wa[...] = 0
    wa[:, 0] = 1.0      # tower a: pure red filters
    wb[...] = 0
    wb[:, 2] = 1.0      # tower b: pure blue filters
    img = np.asarray(filters_image(model, zoom=2, per_row=4))
    k, _, r, s = wa.shape
    # The first tile of tower a starts at (gap, gap) = (2, 2); tower b's block is below tower a's.
    tile_a = img[2:2 + 2 * r, 2:2 + 2 * s]
    assert (tile_a[..., 0] == 255).all() and (tile_a[..., 1:] == 0).all()
    rows_a = -(-k // 4)
    yb = 2 + rows_a * (2 * r + 2) + 4 * 2 + 2 - 2  # tower a's rows, its bottom gap, the tower gap, then b's gap
    tile_b = img[yb + 2:yb + 2 + 2 * r, 2:2 + 2 * s]
    assert (tile_b[..., 2] == 255).all() and (tile_b[..., :2] == 0).all()


def test_filters_are_each_stretched_to_the_full_range(model):
    img = np.asarray(filters_image(model, zoom=1, per_row=8))
    r, s = model.parameters()["conv1a.weight"].shape[2:]
    tile = img[1:1 + r, 1:1 + s]
    assert tile.min() == 0 and tile.max() == 255


def test_curves_draw_both_series_and_mark_lr_cuts():
    history = [dict(epoch=e, lr=0.01 if e < 3 else 0.001, train_top1=1 - 0.2 * e, val_top1=1 - 0.15 * e,
                    train_loss=2.0 / e, val_loss=2.2 / e) for e in range(1, 5)]
    img = np.asarray(curves_image(history, size=(600, 300)))
    assert img.shape == (300, 600, 3)
    blue = ((img[..., 0] < 60) & (img[..., 1] > 100) & (img[..., 2] > 160)).sum()
    red = ((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum()
    grey = ((img[..., 0] == 150) & (img[..., 1] == 150) & (img[..., 2] == 150)).sum()
    assert blue > 50 and red > 50 and grey > 50


def test_curves_need_a_history():
    with pytest.raises(ValueError, match="history is empty"):
        curves_image([])


def test_runs_draw_one_line_per_run_and_mark_every_runs_lr_cuts():
    def history(cut, slope):
        return [dict(epoch=e, lr=0.01 if e < cut else 0.001, val_top1=1 - slope * e) for e in range(1, 6)]

    img = np.asarray(runs_image({"seed 0": history(3, 0.15), "seed 1": history(4, 0.1)}, size=(500, 300)))
    assert img.shape == (300, 500, 3)
    blue = ((img[..., 0] == 31) & (img[..., 1] == 119) & (img[..., 2] == 180)).sum()  # first run's colour
    orange = ((img[..., 0] == 255) & (img[..., 1] == 127) & (img[..., 2] == 14)).sum()  # second run's
    assert blue > 50 and orange > 50
    grey_columns = np.flatnonzero(((img[..., 0] == 150) & (img[..., 1] == 150) & (img[..., 2] == 150)).sum(0) > 100)
    assert len(grey_columns) == 2  # cuts at epochs 3 and 4
    with pytest.raises(ValueError, match="no histories"):
        runs_image({})
