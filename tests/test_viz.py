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
    # Each tower: a 16-pixel line naming it, then its tiles from (gap, gap) = (2, 2) below that line.
    label = 16
    tile_a = img[label + 2:label + 2 + 2 * r, 2:2 + 2 * s]
    assert (tile_a[..., 0] == 255).all() and (tile_a[..., 1:] == 0).all()
    rows_a = -(-k // 4)
    yb = label + rows_a * (2 * r + 2) + 2 + 2 * 2  # tower a's label, rows and bottom gap, the gap between towers
    tile_b = img[yb + label + 2:yb + label + 2 + 2 * r, 2:2 + 2 * s]
    assert (tile_b[..., 2] == 255).all() and (tile_b[..., :2] == 0).all()
    # The names are written in dark text on the white lines above the blocks (34 pixels wide: "a" and "b").
    line_a, line_b = img[:label], img[yb:yb + label]
    assert (line_a.max(axis=2) < 100).sum() > 5 and (line_b.max(axis=2) < 100).sum() > 5
    assert not np.array_equal(line_a, line_b)


def test_filters_are_each_stretched_to_the_full_range(model):
    img = np.asarray(filters_image(model, zoom=1, per_row=8))
    r, s = model.parameters()["conv1a.weight"].shape[2:]
    tile = img[16 + 1:16 + 1 + r, 1:1 + s]  # under the tower's name
    assert tile.min() == 0 and tile.max() == 255


def test_filters_image_refuses_what_it_cannot_draw(model):
    for kwargs, exc, match in [(dict(zoom=-1), ValueError, "zoom must be >= 0"),  # "negative dimensions"
                               (dict(zoom=1.5), TypeError, "zoom must be an integer"),
                               (dict(per_row=0), ValueError, "per_row must be >= 1")]:
        with pytest.raises(exc, match=match):
            filters_image(model, **kwargs)
    with pytest.raises(TypeError, match="model must be a pyalexnet.AlexNet, got NoneType"):
        filters_image(None)


def test_curves_draw_both_series_and_mark_lr_cuts():
    history = [dict(epoch=e, lr=0.01 if e < 3 else 0.001, train_top1=1 - 0.2 * e, val_top1=1 - 0.15 * e,
                    train_loss=2.0 / e, val_loss=2.2 / e) for e in range(1, 5)]
    img = np.asarray(curves_image(history, size=(600, 300)))
    assert img.shape == (300, 600, 3)
    blue = ((img[..., 0] < 60) & (img[..., 1] > 100) & (img[..., 2] > 160)).sum()
    red = ((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum()
    grey = ((img[..., 0] == 150) & (img[..., 1] == 150) & (img[..., 2] == 150)).sum()
    assert blue > 50 and red > 50 and grey > 50
    # "lr/10" is written at the top of each panel (the frame's top is y=30), where late curves seldom run:
    # beside the cut's grey line, the picture differs from an uncut run's only there.
    uncut = np.asarray(curves_image([dict(h, lr=0.01) for h in history], size=(600, 300)))
    differ = (img != uncut).any(axis=2) & ~(img == 150).all(axis=2)
    ys, xs = np.nonzero(differ)
    assert len(ys) > 20 and 30 < ys.min() and ys.max() < 30 + 16


def test_curves_without_validation_name_no_validation_line():
    # A run without validation images (val_* None) drew a legend entry "validation" for a line that was not there.
    history = [dict(epoch=e, lr=0.01, train_top1=1 - 0.2 * e, val_top1=None, train_loss=2.0 / e, val_loss=None)
               for e in range(1, 4)]
    img = np.asarray(curves_image(history, size=(600, 300)))
    red = ((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60))
    assert not red.any()  # neither a line nor a legend swatch
    with_val = np.asarray(curves_image([dict(h, val_top1=0.5, val_loss=1.0) for h in history], size=(600, 300)))
    legend = (slice(0, 28), slice(150, 300))  # the first panel's legend, right of its title
    assert (img[legend] != with_val[legend]).any()
    assert (img[legend] < 100).all(axis=2).sum() < (with_val[legend] < 100).all(axis=2).sum()  # one word less


def test_a_long_legend_goes_in_rows_under_the_title():
    # 8 runs' labels on the title's line ran over the title and off the picture's left edge (seeds 0 and 1 lost).
    from pyalexnet.viz import _RUN_COLOURS

    hist = [dict(epoch=e, lr=0.01, val_top1=1 - 0.1 * e) for e in range(1, 6)]
    runs = {f"seed {i}: 0.{i}% ten-crop top-1": hist for i in range(8)}
    img = np.asarray(runs_image(runs, title="validation top-1 error, 8 seeds", size=(700, 440)))
    frame_top = next(y for y in range(img.shape[0]) if (img[y, 60:600] == 0).all())  # the frame's black top line
    above = img[:frame_top]
    for colour in _RUN_COLOURS[:8]:  # every run's legend swatch, above the frame
        assert ((above == colour).all(axis=2)).sum() > 20, colour
    swatch = np.zeros(above.shape[:2], bool)
    for colour in _RUN_COLOURS[:8]:
        swatch |= (above == colour).all(axis=2)
    dark = (above < 100).all(axis=2)
    title_rows = np.flatnonzero(dark.any(axis=1))
    first_swatch = np.flatnonzero(swatch.any(axis=1)).min()
    assert title_rows.min() + 12 < first_swatch  # the title on a line of its own, above the rows
    assert not dark[: first_swatch - 4, 300:].any()  # nothing beside the title (the legend ran over it)


def test_percentages_that_would_read_the_same_get_a_decimal():
    from pyalexnet.viz import _percent_labels

    assert _percent_labels([0.62, 0.2, 0.1]) == ["62%", "20%", "10%"]
    assert _percent_labels([0.114, 0.112, 0.05]) == ["11.4%", "11.2%", "5.0%"]  # were "11%" twice


def test_epoch_numbers_fall_on_round_epochs():
    from pyalexnet.viz import _epoch_label_step

    assert [_epoch_label_step(n) for n in (1, 15, 21, 22, 50, 90, 200, 1000)] == [1, 1, 1, 5, 5, 10, 20, 100]


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


# ----- the paper's Figure 4 ---------------------------------------------------------------------------
from pyalexnet.data import Dataset, Splits, compute_stats  # noqa: E402
from pyalexnet.viz import figure4_pictures, nearest_neighbours, neighbours_image, predictions_image  # noqa: E402

RED, BLUE, GREEN = (214, 39, 40), (158, 202, 225), (44, 160, 44)  # neighbours' frames; prediction bars:
BAR_RED = (250, 140, 135)


def _count(img, colour):
    return int((img == np.array(colour, np.uint8)).all(axis=2).sum())


def _columns(img, colour):
    return int((img == np.array(colour, np.uint8)).all(axis=2).any(axis=0).sum())


def test_predictions_draw_the_true_class_red_as_long_as_its_probability():
    classes = [f"class {c}" for c in range(10)]
    images = np.zeros((2, 8, 8, 3), np.uint8)
    probs = np.full((2, 10), 0.0)
    probs[0, 3], probs[0, 1], probs[0, 7] = 0.6, 0.3, 0.1  # the true class (3) first
    probs[1, :5] = 0.2                                       # the true class (9) not among the top 5
    img = np.asarray(predictions_image(images, np.array([3, 9]), probs, classes, tile=32, per_row=2))
    panel_w = 150 + 16
    assert img.shape[1] == 2 * panel_w
    first, second = img[:, :panel_w], img[:, panel_w:]
    # 60% of the 150-pixel bar is red; text over the bar leaves some red in every column it covers.
    assert 88 <= _columns(first, BAR_RED) <= 90
    assert 44 <= _columns(first, BLUE) <= 45  # the longest blue bar: class 1 at 30%
    assert _count(second, BAR_RED) == 0 and 29 <= _columns(second, BLUE) <= 30
    # A title goes above, wrapped to the picture's width; the panels move down under it, unchanged.
    long_title = "a title long enough that it cannot fit on one line of a picture three hundred pixels wide"
    titled = np.asarray(predictions_image(images, np.array([3, 9]), probs, classes, tile=32, per_row=2,
                                          title=long_title))
    extra = titled.shape[0] - img.shape[0]
    assert titled.shape[1] == img.shape[1] and extra == 8 + 14 * 2  # two lines
    np.testing.assert_array_equal(titled[extra:], img)
    assert (titled[:extra].max(axis=2) < 100).sum() > 100  # the text


def test_predictions_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="probs has 3 classes, the class list 2"):
        predictions_image(np.zeros((1, 4, 4, 3), np.uint8), np.array([0]), np.full((1, 3), 1 / 3), ["a", "b"])
    with pytest.raises(ValueError, match="images must be"):
        predictions_image(np.zeros((4, 4, 3), np.uint8), np.array([0]), np.ones((1, 1)), ["a"])
    with pytest.raises(ValueError, match="need labels"):
        predictions_image(np.zeros((2, 4, 4, 3), np.uint8), np.array([0]), np.ones((2, 1)), ["a"])


def test_nearest_neighbours_match_a_direct_search(rng):
    q, p = rng.standard_normal((5, 7)), rng.standard_normal((40, 7))
    p[11] = p[3]  # a tie: the lower index comes first
    q[2] = p[3] + 1e-9
    got = nearest_neighbours(q, p, 4)
    d = ((q[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(got[[0, 1, 3, 4]], np.argsort(d, axis=1, kind="stable")[[0, 1, 3, 4], :4])
    assert list(got[2, :2]) == [3, 11]
    with pytest.raises(ValueError, match="k must be between 1 and the pool's 40"):
        nearest_neighbours(q, p, 41)
    with pytest.raises(ValueError, match="query features have 7 values, pool features 6"):
        nearest_neighbours(q, p[:, :6], 1)


def test_neighbours_are_framed_green_for_the_query_class_and_red_otherwise():
    queries = np.full((1, 6, 6, 3), 255, np.uint8)
    found = np.full((1, 2, 6, 6, 3), 255, np.uint8)
    img = np.asarray(neighbours_image(queries, found, same_class=[[True, False]], tile=12))
    frame = (12 + 6) ** 2 - 12 ** 2
    # The other class's frame is dashed: white gaps, so it differs without its colour (for colour-blind readers).
    assert _count(img, GREEN) == frame and frame / 3 < _count(img, RED) < frame
    green_x = np.nonzero((img == np.array(GREEN, np.uint8)).all(axis=2).any(axis=0))[0]
    red_x = np.nonzero((img == np.array(RED, np.uint8)).all(axis=2).any(axis=0))[0]
    assert green_x.max() < red_x.min()  # nearest first, left to right
    with pytest.raises(ValueError, match="same_class must have shape"):
        neighbours_image(queries, found, same_class=[[True]])
    # Captions under the test images (their class; a mistake's guess on a second line) make the rows taller.
    captioned = neighbours_image(queries, found, same_class=[[True, False]], tile=12, captions=["ring\nguess: dot"])
    assert captioned.size[1] == img.shape[0] + 24
    with pytest.raises(ValueError, match="1 query images need as many captions, got 2"):
        neighbours_image(queries, found, captions=["a", "b"])


def test_the_neighbours_heading_is_written_whole_over_few_columns():
    # With fewer than 6 neighbours the heading (and its colour key) was cut to the columns' width.
    def heading_ink(k):
        img = np.asarray(neighbours_image(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, k, 8, 8, 3), np.uint8),
                                          same_class=np.ones((1, k), bool), tile=40))
        first_frame = np.flatnonzero((img == np.array(GREEN, np.uint8)).all(axis=2).any(axis=1)).min()
        return ((img[:first_frame, 60:] < 100).all(axis=2)).sum()  # dark pixels above the frames, right of "test"

    whole = heading_ink(8)
    for k in (1, 2, 3):
        assert abs(heading_ink(k) - whole) < 0.05 * whole, k  # the same words, in more lines


def _figure4_splits():
    rng = np.random.default_rng(5)
    labels = np.arange(40) % 4
    images = rng.integers(0, 256, (40, 18, 18, 3)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 4:14, 4:14, c % 3] = 255
    train_ds = Dataset(images, labels, ["r", "g", "b", "r2"])
    # The test images are copies of training images 7, 20, 33, 38: each is its own nearest neighbour.
    copies = np.array([7, 20, 33, 38])
    val_ds = Dataset(images[copies], labels[copies], train_ds.classes)
    mean, eigvals, eigvecs = compute_stats(images)
    return Splits(train_ds, val_ds, train_ds.classes, 18, 16, mean, eigvals, eigvecs, "copies"), copies


def test_figure4_finds_a_test_images_copy_among_the_training_images():
    splits, copies = _figure4_splits()
    model = AlexNet(4, preset="small", input_size=16, devices="cpu", seed=1)
    out = figure4_pictures(model, splits, count=8, neighbours=3)
    np.testing.assert_array_equal(out["test_index"], np.arange(4))  # all four, in order
    assert out["neighbour_index"].shape == (4, 3)
    np.testing.assert_array_equal(out["neighbour_index"][:, 0], copies)
    assert 0.25 <= out["agreement"] <= 1.0
    pred, near = np.asarray(out["predictions"]), np.asarray(out["neighbours"])
    assert pred.shape[1] == 4 * (150 + 16) and near.shape[0] > 4 * 64
    # A pool smaller than the training set is a fixed sample of it, found again with the same seed.
    a = figure4_pictures(model, splits, neighbours=2, pool=10, seed=3)["neighbour_index"]
    b = figure4_pictures(model, splits, neighbours=2, pool=10, seed=3)["neighbour_index"]
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) <= 10


def test_figure4_can_show_the_models_mistakes():
    from pyalexnet.data import center_crop

    splits, _ = _figure4_splits()
    model = AlexNet(4, preset="small", input_size=16, devices="cpu", seed=1)
    guess = model.predict(center_crop(splits.val.images, 16, splits.mean_image)).argmax(1)
    wrong = np.nonzero(guess != splits.val.labels)[0]
    assert 0 < len(wrong) < 4  # an untrained model: some right, some wrong
    sample = figure4_pictures(model, splits, neighbours=1)
    out = figure4_pictures(model, splits, neighbours=1, mistakes=True)
    assert (out["mistakes"], out["searched"]) == (len(wrong), 4)
    np.testing.assert_array_equal(out["test_index"], wrong)
    # Their titles say which they are (the panels below differ too: other images).
    for key in ("predictions", "neighbours"):
        a, b = np.asarray(sample[key]), np.asarray(out[key])
        assert not np.array_equal(a[:22], b[:22])
    # A test set it gets all right (labels set to its own guesses): nothing to show but a sample.
    right = Splits(splits.train, Dataset(splits.val.images, guess, splits.classes), splits.classes, 18, 16,
                   splits.mean_image, splits.eigvals, splits.eigvecs, "guessed")
    out = figure4_pictures(model, right, neighbours=1, mistakes=True)
    assert out["mistakes"] == 0 and len(out["test_index"]) == 4


def test_figure4_refuses_a_model_for_other_data():
    splits, _ = _figure4_splits()
    with pytest.raises(ValueError, match="does not fit the data set"):
        figure4_pictures(AlexNet(5, preset="small", input_size=16, devices="cpu"), splits)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        figure4_pictures(AlexNet(4, preset="small", input_size=16, devices="cpu"), splits, count=0)


@pytest.mark.gpu
def test_figure4_on_a_gpu_finds_the_same_copies(cp):
    splits, copies = _figure4_splits()
    cpu = figure4_pictures(AlexNet(4, preset="small", input_size=16, devices="cpu", seed=1), splits, neighbours=3)
    gpu = figure4_pictures(AlexNet(4, preset="small", input_size=16, devices="cuda:0", seed=1), splits, neighbours=3)
    np.testing.assert_array_equal(gpu["test_index"], cpu["test_index"])
    np.testing.assert_array_equal(gpu["neighbour_index"][:, 0], copies)
    assert np.asarray(gpu["predictions"]).shape == np.asarray(cpu["predictions"]).shape


def test_class_names_come_from_imagenets_files(tmp_path):
    from pyalexnet.data import find_class_names, read_class_names

    classes = ["n01440764", "n01443537", "n99999999"]
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    names = tmp_path / "a" / "synset_words.txt"
    names.write_text("n01440764 tench, Tinca tinca\nn01443537\tgoldfish, Carassius auratus\nn00000001 \n")
    assert read_class_names(names, classes) == ["tench", "goldfish", "n99999999"]
    assert find_class_names(tmp_path / "a", classes) == ["tench", "goldfish", "n99999999"]
    assert find_class_names(tmp_path / "a" / "b" / "c", classes) == ["tench", "goldfish", "n99999999"]  # from above
    assert find_class_names(tmp_path / "other", classes) is None


def test_classes_sharing_a_name_read_differently(tmp_path):
    # ImageNet has two "crane"s (n02012849 the bird, n03126707 the machine) and two "maillot"s: each pair read
    # the same in every picture and table.
    from pyalexnet.data import read_class_names

    names = tmp_path / "synset_words.txt"
    names.write_text("n02012849 crane\nn03126707 crane\nn03710637 maillot\nn03710721 maillot, tank suit\n"
                     "n01440764 tench, Tinca tinca\n")
    classes = ["n02012849", "n03126707", "n03710637", "n03710721", "n01440764"]
    assert read_class_names(names, classes) == ["crane (n02012849)", "crane (n03126707)", "maillot (n03710637)",
                                                "tank suit", "tench"]
    assert read_class_names(names, ["n02012849", "n01440764"]) == ["crane", "tench"]  # no clash among these


def test_a_class_names_file_that_names_no_class_is_said(tmp_path):
    # --class-names with a wrong file (random bytes, another data set's IDs) was silently ignored.
    import warnings

    from pyalexnet.data import class_names_for

    wrong = tmp_path / "names.txt"
    wrong.write_bytes(b"\x89garbage \xff\x00 bytes\nn12345678 something else\n")
    with pytest.warns(RuntimeWarning, match=r"names.txt names none of the classes \(cat, dog\; lines are 'ID name'\)"):
        assert class_names_for(["cat", "dog"], names_file=wrong) == ["cat", "dog"]
    wrong.write_text("cat kitty\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert class_names_for(["cat", "dog"], names_file=wrong) == ["kitty", "dog"]  # one is enough


def test_figure4_writes_the_names_it_is_given():
    splits, _ = _figure4_splits()
    model = AlexNet(4, preset="small", input_size=16, devices="cpu", seed=1)
    plain = np.asarray(figure4_pictures(model, splits, neighbours=1)["predictions"])
    named = np.asarray(figure4_pictures(model, splits, neighbours=1,
                                        class_names=["red", "green", "blue", "red again"])["predictions"])
    assert plain.shape == named.shape and not np.array_equal(plain, named)
    with pytest.raises(ValueError, match="class_names has 2 names for 4 classes"):
        figure4_pictures(model, splits, class_names=["a", "b"])


def test_confusion_matrix_shades_each_cell_by_its_share_of_the_row():
    from pyalexnet.viz import confusion_image

    # Class 0: once right, once taken for class 1; class 1: always right; class 2: never seen.
    img = np.asarray(confusion_image([0, 0, 1], [0, 1, 1], ["a", "b", "c"], cell=30))
    h, w, _ = img.shape
    top, left = h - 10 - 3 * 30, w - 10 - 3 * 30  # the matrix sits in the bottom right corner

    def corner(i, j):  # a pixel inside cell (i, j), clear of its outline and its count
        return tuple(img[top + i * 30 + 3, left + j * 30 + 3])

    dark, half = (8, 48, 107), tuple(int(round(255 - 0.5 * (255 - c))) for c in (8, 48, 107))
    assert corner(1, 1) == dark and corner(0, 0) == half
    # The mistake in red, on the mistakes' own scale (the only one: the darkest of them).
    assert corner(0, 1) == tuple(int(round(255 - 0.75 * (255 - c))) for c in (165, 15, 21))
    assert corner(1, 0) == corner(2, 2) == (255, 255, 255)
    # One mistake among 100 images of its class was shaded white on the row's scale: it is red, if light.
    many = np.asarray(confusion_image([0] * 100 + [1] * 100 + [2] * 2, [0] * 99 + [1] + [1] * 99 + [2] + [2, 0],
                                      ["a", "b", "c"], cell=30))
    h, w, _ = many.shape
    pixel = lambda i, j: tuple(many[h - 10 - 3 * 30 + i * 30 + 3, w - 10 - 3 * 30 + j * 30 + 3])  # noqa: E731
    light, strong = (pixel(0, 1), pixel(1, 2)), pixel(2, 0)  # 1%, 1% and 50% of their rows
    assert light[0] == light[1] and light[0][0] > light[0][1] + 30 and strong[0] < light[0][0]
    # How the predictions were made goes into the first title line; the matrix is the same.
    said = np.asarray(confusion_image([0, 0, 1], [0, 1, 1], ["a", "b", "c"], cell=30, how="ten-crop"))
    assert said.shape[0] == img.shape[0] and not np.array_equal(said[:20], img[:20])
    np.testing.assert_array_equal(said[-3 * 30 - 10:, -3 * 30 - 10:], img[-3 * 30 - 10:, -3 * 30 - 10:])
    with pytest.raises(ValueError, match="at most 40"):
        confusion_image([0], [0], [str(c) for c in range(41)])
    with pytest.raises(ValueError, match="class indices in 0..2"):
        confusion_image([0, 3], [0, 1], ["a", "b", "c"])
    with pytest.raises(ValueError, match="must be equal 1-d shapes"):
        confusion_image([0, 1], [0], ["a", "b"])


def test_words_in_the_default_font_are_spaced_apart_where_a_reader_sees_the_gap():
    # Pillow's own font (Aileron 10 px since Pillow 10.1) put 2 px between words: "classand", "model's5".
    from PIL import Image, ImageDraw

    from pyalexnet import viz

    font = viz._font(["class and"])
    draw = ImageDraw.Draw(Image.new("L", (200, 20)))
    gap = draw.textlength("class and", font=font) - draw.textlength("classand", font=font)
    assert gap >= 3, gap
    # Measured as drawn: the ink of "and" starts that much further right, and the box holds the text.
    # (Pillow's bitmap font, the default before 10.1, has getlength and getbbox from Pillow 9.2 only.)
    if hasattr(font, "getbbox"):
        assert draw.textlength("class and", font=font) == font.getlength("class and")
    img = Image.new("L", (200, 20))
    ImageDraw.Draw(img).text((0, 0), "class and", fill=255, font=font)
    if hasattr(font, "getbbox"):
        assert img.getbbox()[2] <= draw.textbbox((0, 0), "class and", font=font)[2] + 1
    cols = np.flatnonzero(np.asarray(img).max(axis=0))
    assert np.diff(cols).max() >= gap  # the widest run of empty columns is the word space


def test_class_names_beyond_ascii_are_drawn_in_a_font_that_has_them(hide_installed_fonts):
    # Pillow's own font has ASCII only: "café", "Bär" and Cyrillic names came out as boxes.
    from PIL import ImageFont

    from pyalexnet import viz

    default = ImageFont.load_default()

    def drawn(font, text):
        mask = font.getmask(text)
        return mask.size, bytes(mask)

    # Pillow before 10.1: a Latin-1 bitmap font, which has "ä" but no Cyrillic.
    lacked = "ä" if isinstance(default, ImageFont.FreeTypeFont) else "Ж"
    assert viz._has_glyph(default, "a") and not viz._has_glyph(default, lacked)
    # ASCII keeps the default font, and so the layout the pictures were drawn for (its spaces doubled where
    # they are narrow: see the next test).
    spaces = "  " if isinstance(viz._default_font(), viz._WordSpacedFont) else " "
    assert drawn(viz._font(["plain ascii"]), "plain ascii") == drawn(default, f"plain{spaces}ascii")
    font = viz._font(["Bär", "café", "Жук"])
    if not all(viz._has_glyph(font, c) for c in "äéЖук"):  # this machine and CI have DejaVu Sans
        pytest.skip("no installed font draws ä, é and Cyrillic")
    assert drawn(font, "Bär") != drawn(default, "Bär")
    probs = np.full((1, 2), 0.5)
    img = predictions_image(np.zeros((1, 8, 8, 3), np.uint8), np.array([0]), probs, ["Bär", "Жук"], tile=32)
    assert img.size[0] > 100
    # Without a font folder or fontconfig, the default is what there is: "?" for what it cannot draw (said),
    # but a picture all the same.
    hide_installed_fonts()
    with pytest.warns(RuntimeWarning, match="no installed font draws '[äЖку]{3,4}' .*fonts-noto-core"):
        assert not viz._has_glyph(viz._font(["Bär", "Жук"]), lacked)
    assert predictions_image(np.zeros((1, 8, 8, 3), np.uint8), np.array([0]), probs, ["Bär", "Жук"]).size[0] > 100


@pytest.fixture
def drawn_text(monkeypatch):
    """Every (text, font) the pictures write, in order."""
    from PIL import ImageDraw

    drawn, original = [], ImageDraw.ImageDraw.text

    def text(self, xy, text, *args, **kwargs):
        drawn.append((text, kwargs.get("font")))
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return drawn


@pytest.fixture
def hide_installed_fonts(monkeypatch):
    """Call it to leave Pillow's own font (ASCII) as the only one, with no font advice given yet in this process."""
    from pyalexnet import viz

    def hide():
        viz._font_covering.cache_clear()
        monkeypatch.setattr(viz, "_FONT_DIRS", ())
        monkeypatch.setattr(viz.shutil, "which", lambda name: None)
        monkeypatch.setattr(viz, "_WARNED", set())

    yield hide
    viz._font_covering.cache_clear()  # (before monkeypatch puts the folders back) the fonts found without them


def test_every_text_of_a_picture_is_in_one_font(drawn_text):
    # Class names beyond ASCII were written in DejaVu under titles in Pillow's own font: two faces in one picture.
    from pyalexnet.viz import confusion_image, runs_image

    probs = np.full((2, 3), 1 / 3)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    hist = [dict(epoch=e, lr=0.01, val_top1=0.5) for e in (1, 2)]
    for draw in (lambda: predictions_image(images, np.array([0, 1]), probs, ["Bär", "Жук", "cat"], title="ASCII"),
                 lambda: neighbours_image(images, np.zeros((2, 2, 8, 8, 3), np.uint8), captions=["Bär", "cat"],
                                          title="ASCII"),
                 lambda: confusion_image([0, 1], [1, 1], ["Bär", "cat"], how="ten-crop"),
                 lambda: runs_image({"Bär": hist, "cat": hist}, title="ASCII"),
                 lambda: curves_image([dict(h, train_top1=0.5, train_loss=1.0, val_loss=1.0) for h in hist],
                                      title="run café")):
        drawn_text.clear()
        draw()
        fonts = {id(font) for _, font in drawn_text}
        assert len(fonts) == 1, [(text, font.getname()) for text, font in drawn_text]


def test_names_no_installed_font_draws_are_written_legibly_and_said_once(hide_installed_fonts, drawn_text):
    # CJK names came out as empty boxes, silently: "?" for what cannot be drawn, after the class's index (the
    # names "猫" and "狗" would both read "?"), and a warning naming a font to install, once.
    import warnings

    from pyalexnet.viz import confusion_image

    hide_installed_fonts()
    names = ["猫", "狗", "tiger cat 虎", "cat"]
    with pytest.warns(RuntimeWarning, match="no installed font draws '狗猫虎'.*install .*fonts-noto-cjk") as said:
        confusion_image([0, 1, 2, 3], [0, 1, 2, 2], names)
    assert len(said) == 1
    texts = [text for text, _ in drawn_text]
    assert {"#0 ?", "#1 ?", "#2 tiger cat ?", "cat"} <= set(texts)
    assert not any(c in text for text in texts for c in "猫狗虎")
    drawn_text.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said already
        predictions_image(np.zeros((1, 8, 8, 3), np.uint8), np.array([1]), np.full((1, 4), 0.25), names,
                          title="猫 or 狗")
    texts = [text for text, _ in drawn_text]
    assert "true: #1 ?" in texts and "? or ?" in texts and not any(c in text for text in texts for c in "猫狗虎")


def test_cjk_names_are_drawn_in_an_installed_font_that_has_them(drawn_text, monkeypatch):
    import warnings

    from pyalexnet import viz

    monkeypatch.setattr(viz, "_WARNED", set())  # (a warning here is not the one the process would give)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = viz._has_glyph(viz._font(["猫狗"]), "猫")
    if not found:
        pytest.skip("no installed font draws CJK (such as Noto Sans CJK: fonts-noto-cjk)")
    viz.confusion_image([0, 1], [0, 1], ["猫", "狗"])
    assert {"猫", "狗"} <= {text for text, _ in drawn_text}


def test_confusion_names_are_written_whole_or_cut_so_that_they_still_differ(drawn_text):
    # Names were cut at 130 px: "Stanford Dogs: American Staffordshire terrier" lost its breed, and two names
    # with a long common start read the same.
    from PIL import Image, ImageDraw, ImageFont

    from pyalexnet.viz import CONFUSION_NAME_WIDTH, confusion_image

    common = "A very long shared prefix of two class names, long enough to be cut: "
    names = [common + "tabby cat", common + "tiger cat", "Stanford Dogs: American Staffordshire terrier", "disk"]
    confusion_image([0, 1, 2, 3], [0, 1, 2, 3], names)
    font = drawn_text[0][1]
    shown = [text for text, _ in drawn_text[2:] if not text.isdigit()]  # after the two title lines
    assert len(shown) == 2 * len(names) and shown[0::2] == shown[1::2]  # each name beside and over the matrix
    shown = shown[0::2]
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    fits = [draw.textlength(name, font=font) <= CONFUSION_NAME_WIDTH for name in names[2:]]
    # Both fit in Pillow's own font from 10.1 (Aileron); its older bitmap font is wider (6 px a character).
    assert all(fits) or not isinstance(font, ImageFont.FreeTypeFont)
    assert [s for s, f in zip(shown[2:], fits) if f] == [n for n, f in zip(names[2:], fits) if f]  # whole where it fits
    assert len(set(shown)) == len(names) and "tabby" in shown[0] and "tiger" in shown[1]
    assert all(draw.textlength(text, font=font) <= CONFUSION_NAME_WIDTH for text in shown)


def test_names_cut_narrow_stay_distinct():
    from PIL import Image, ImageDraw, ImageFont

    from pyalexnet import viz

    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), viz._font()
    long = "long " * 12
    names = ["Stanford Dogs: American Staffordshire terrier", "Stanford Dogs: American pit bull terrier",
             f"same start {long}X {long}same end", f"same start {long}Y {long}same end",
             "x" * 60 + "1", "x" * 60 + "2", "twice", "twice"]
    for width in (60, 130, 240):
        shown = viz._distinct_fits(draw, font, names, width)
        assert len(set(shown)) == len(names) - 1, (width, shown)  # the same name twice reads the same
        assert all(draw.textlength(text, font=font) <= width for text in shown), (width, shown)
    cut = viz._distinct_fits(draw, font, names[:2], 130)[1]
    if isinstance(font, ImageFont.FreeTypeFont):
        assert cut == "Stanford…pit bull terrier"
    else:  # Pillow before 10.1: its bitmap font is wider and has no "…"
        assert cut.startswith("Stanford") and "pit" in cut


def test_training_pictures_say_which_run_and_how_far_in_a_title(model, tmp_path, drawn_text):
    # Opened on its own, curves.png said "top-1 error" and "loss" but not whose; conv1_filters.png said nothing.
    from PIL import Image

    from pyalexnet.viz import save_training_pictures, training_titles

    history = [dict(epoch=e, lr=0.01, train_top1=1 - 0.2 * e, val_top1=1 - 0.15 * e, train_loss=2.0 / e,
                    val_loss=2.2 / e) for e in range(1, 4)]
    model.step = 42
    folder = tmp_path / "cats-run"
    filters, curves = save_training_pictures(model, history, folder, data="builtin", epochs=10)
    titles = training_titles(model, history, folder, data="builtin", epochs=10)
    what = f"tiny AlexNet, 4 classes, {model.input_size} px crops, on builtin"
    assert titles == {"filters": f"run cats-run: conv1's filters after epoch 3 of 10 (step 42); {what}",
                      "curves": f"run cats-run: top-1 error and loss per epoch, epochs 1-3 of 10; {what}"}
    written = " ".join(text for text, _ in drawn_text)  # a title wrapped into lines is whole again
    for path, key, plain in ((filters, "filters", filters_image(model)), (curves, "curves", curves_image(history))):
        assert titles[key] in written
        with Image.open(path) as img:
            assert img.text["Title"] == titles[key]  # what image viewers list as the file's title
            img = np.asarray(img.convert("RGB"))
        plain = np.asarray(plain)
        extra = img.shape[0] - plain.shape[0]
        assert img.shape[1] == plain.shape[1] and extra >= 22
        np.testing.assert_array_equal(img[extra:], plain)  # the picture under its title, unchanged
        assert (img[:extra].max(axis=2) < 100).sum() > 50  # the title's ink
    # Without the data and the number of epochs: what the folder and the history say.
    assert training_titles(model, history[:1], folder)["curves"] == (
        f"run cats-run: top-1 error and loss per epoch, epoch 1; tiny AlexNet, 4 classes, {model.input_size} px crops")


# ----- sizes: refused before anything is allocated (a tile of 100000 killed the process) -----------------
def test_huge_or_tiny_sizes_are_refused_naming_the_argument_and_the_limit():
    from pyalexnet.viz import MAX_PIXELS, confusion_image

    images, probs = np.zeros((2, 8, 8, 3), np.uint8), np.full((2, 3), 1 / 3)
    limit = f"{MAX_PIXELS:,}"
    with pytest.raises(ValueError, match=f"tile=100000 .* at most {limit}"):
        neighbours_image(images, np.zeros((2, 3, 8, 8, 3), np.uint8), tile=100000)
    with pytest.raises(ValueError, match=f"tile=100000 .* at most {limit}"):
        predictions_image(images, [0, 1], probs, ["a", "b", "c"], tile=100000)
    with pytest.raises(ValueError, match=f"cell=1000000 .* at most {limit}"):
        confusion_image([0, 1], [0, 1], ["a", "b"], cell=10**6)
    history = [dict(epoch=1, train_top1=0.5, train_loss=1.0)]
    with pytest.raises(ValueError, match=f"size=.100000, 100000. .* at most {limit}"):
        curves_image(history, size=(100000, 100000))
    with pytest.raises(ValueError, match="cell must be >= 8, got 0"):
        confusion_image([0, 1], [0, 1], ["a", "b"], cell=0)
    with pytest.raises(ValueError, match="size's width must be >= 300, got 50"):
        curves_image(history, size=(50, 30))
    with pytest.raises(ValueError, match="size's height must be >= 150, got 30"):
        runs_image({"a": history}, key="train_top1", size=(500, 30))
    with pytest.raises(ValueError, match="tile must be >= 8, got 0"):
        predictions_image(images, [0, 1], probs, ["a", "b", "c"], tile=0)
    with pytest.raises(TypeError, match="size must be .width, height."):
        curves_image(history, size=600)
    # The smallest sizes allowed are drawn.
    assert curves_image(history, size=(300, 150)).size == (300, 150)
    assert confusion_image([0, 1], [0, 1], ["a", "b"], cell=8).size[1] > 16


def test_predictions_refuse_labels_probabilities_and_layouts_they_cannot_draw():
    classes = [f"class {c}" for c in range(10)]
    images, probs = np.zeros((2, 8, 8, 3), np.uint8), np.full((2, 10), 0.1)
    for labels, match in [([10, 0], "labels must be class indices in 0..9, got 10"),
                          ([-1, 0], "labels must be class indices in 0..9, got -1"),
                          ([0.5, 1], "labels must be whole class indices, got 0.5")]:
        with pytest.raises(ValueError, match=match):
            predictions_image(images, np.array(labels), probs, classes)
    for bad, match in [(np.nan, "NaN or infinite"), (5.0, "each in \\[0, 1\\]"), (-0.1, "each in \\[0, 1\\]")]:
        p = probs.copy()
        p[1, 2] = bad
        with pytest.raises(ValueError, match=match):
            predictions_image(images, [0, 1], p, classes)
    with pytest.raises(ValueError, match="row at most 1 in all"):
        predictions_image(images, [0, 1], np.full((2, 10), 0.5), classes)  # scores, not probabilities
    for kwargs, match in [(dict(per_row=0), "per_row must be >= 1, got 0"), (dict(top=-1), "top must be >= 1")]:
        with pytest.raises(ValueError, match=match):
            predictions_image(images, [0, 1], probs, classes, **kwargs)
    with pytest.raises(TypeError, match="images must be pixels: uint8 in 0-255 or floats in \\[0, 1\\]"):
        predictions_image(images.astype(bool), [0, 1], probs, classes)
    with pytest.raises(ValueError, match="float pixels must be in \\[0, 1\\] .* pass uint8"):
        predictions_image(images + 200.0, [0, 1], probs, classes)


def test_float_images_in_0_1_are_drawn_as_0_255_in_every_picture():
    # A float image in [0, 1] was cast to uint8 as it was: every tile black.
    white_f, white_u = np.ones((1, 8, 8, 3)), np.full((1, 8, 8, 3), 255, np.uint8)
    probs, classes = np.array([[0.7, 0.3]]), ["a", "b"]
    np.testing.assert_array_equal(np.asarray(predictions_image(white_f, [0], probs, classes, tile=16)),
                                  np.asarray(predictions_image(white_u, [0], probs, classes, tile=16)))
    np.testing.assert_array_equal(np.asarray(neighbours_image(white_f, white_f[:, None], tile=16)),
                                  np.asarray(neighbours_image(white_u, white_u[:, None], tile=16)))
    with pytest.raises(ValueError, match="queries must be \\(Q, H, W, 3\\)"):
        neighbours_image(white_u[..., :1], white_u[:, None, ..., :1])


def test_confusion_refuses_labels_that_are_not_whole_class_indices():
    from pyalexnet.viz import confusion_image

    with pytest.raises(ValueError, match="labels must be whole class indices, got 0.5"):
        confusion_image([0.5, 1.7], [0, 1], ["a", "b"])  # was drawn as [0, 1]
    with pytest.raises(ValueError, match="predictions must be whole class indices, got 1.7"):
        confusion_image([0, 1], [0, 1.7], ["a", "b"])
    with pytest.raises(TypeError, match="labels must be class indices"):
        confusion_image(["a", "b"], [0, 1], ["a", "b"])
    assert confusion_image([0.0, 1.0], [0, 1], ["a", "b"]).size == confusion_image([0, 1], [0, 1], ["a", "b"]).size


# ----- histories ----------------------------------------------------------------------------------------
def test_histories_are_refused_saying_what_is_wanted(model, tmp_path):
    from pyalexnet.viz import save_training_pictures

    history = [dict(epoch=e, lr=0.01, val_top1=0.5, train_loss=1.0) for e in (1, 2)]
    with pytest.raises(ValueError, match="no history has 'nope': key must be one of lr, train_loss, val_top1"):
        runs_image({"a": history}, key="nope")  # was an empty chart
    with pytest.raises(TypeError, match="runs_image takes a dict \\{label: history\\} .*, got list"):
        runs_image([history])  # was AttributeError: 'list' object has no attribute 'values'
    no_epoch = [dict(epoch=1, val_top1=0.5), dict(val_top1=0.4)]
    for draw in (lambda: curves_image(no_epoch), lambda: runs_image({"a": no_epoch}),
                 lambda: save_training_pictures(model, no_epoch, tmp_path)):
        with pytest.raises(ValueError, match="\\[1\\] has keys \\['val_top1'\\]: each row of a history is a dict "
                                             "with 'epoch'"):
            draw()
    with pytest.raises(ValueError, match="train_loss at epoch 1 must be a number, got 'x'"):
        curves_image([dict(epoch=1, train_loss="x")])


def test_a_value_that_is_not_finite_is_marked_and_said_in_the_legend(drawn_text):
    history = [dict(epoch=e, lr=0.01, train_top1=0.5, train_loss=1.0 / e) for e in range(1, 5)]
    blown = [dict(h, train_loss=float("inf")) if h["epoch"] == 3 else h for h in history]
    left_out = [h for h in history if h["epoch"] != 3]
    img, without = (np.asarray(curves_image(h, size=(600, 300))) for h in (blown, left_out))
    # A cross at the loss panel's top (the frame at y=30), in the line's colour: the picture without that epoch
    # has none there (the line silently skipped it).
    top = slice(31, 42), slice(300, 600)
    blue = lambda a: ((a[..., 0] == 31) & (a[..., 1] == 119) & (a[..., 2] == 180)).sum()  # noqa: E731
    assert blue(img[top]) > 10 and blue(without[top]) == 0
    assert "train (inf at epoch 3)" in [t for t, _ in drawn_text]
    drawn_text.clear()
    runs_image({"a": blown, "b": history}, key="train_loss")
    assert {"a (inf at epoch 3)", "b"} <= {t for t, _ in drawn_text}


def test_figure4_takes_a_data_spec_and_refuses_what_is_not_a_data_set():
    # "builtin" was AttributeError: 'str' object has no attribute 'crop_size'.
    from pyalexnet.data import load_dataset

    splits = load_dataset("builtin")
    model = AlexNet(splits.num_classes, preset="tiny", input_size=splits.crop_size, devices="cpu", seed=1)
    a = figure4_pictures(model, "builtin", count=2, neighbours=2, pool=20)
    b = figure4_pictures(model, splits, count=2, neighbours=2, pool=20)
    np.testing.assert_array_equal(a["neighbour_index"], b["neighbour_index"])
    with pytest.raises(TypeError, match="splits must be a data set: pyalexnet.data.load_dataset\\(...\\)'s Splits"):
        figure4_pictures(model, [1, 2, 3])


def test_a_resumed_history_is_drawn_as_the_run_that_was_trained_last():
    # A history appended to on resume (epochs 1-5, then 3-4 again from epoch 2's checkpoint) was drawn in file
    # order: the lines ran back from epoch 5 to 3 and on again, the abandoned run's epochs 4-5 beside the new 4.
    def row(e, v, lr=0.01):
        return dict(epoch=e, lr=lr, train_top1=v, val_top1=v - 0.05, train_loss=3 * v, val_loss=3 * v - 0.1)

    first = [row(1, 0.9), row(2, 0.8), row(3, 0.7), row(4, 0.6, 0.001), row(5, 0.5, 0.001)]
    again = [row(3, 0.6), row(4, 0.4)]
    as_trained = first[:2] + again
    for draw in (lambda h: curves_image(h, size=(600, 300)), lambda h: runs_image({"run": h}, size=(500, 300))):
        np.testing.assert_array_equal(np.asarray(draw(first + again)), np.asarray(draw(as_trained)))
    # One row an epoch is drawn as it is, whatever its order in the list (no epoch repeats: no resume to read).
    shuffled = [as_trained[i] for i in (2, 0, 3, 1)]
    np.testing.assert_array_equal(np.asarray(curves_image(shuffled, size=(600, 300))),
                                  np.asarray(curves_image(as_trained, size=(600, 300))))


def test_lr_cuts_say_their_factor_and_stay_inside_the_frame(drawn_text):
    # Every cut was written "lr/10" (a halving too), and a cut at the last epoch had its label run out of the
    # frame, over the loss panel's axis numbers.
    history = [dict(epoch=e, lr=0.01 if e < 3 else 0.005 if e < 6 else 0.0005, train_top1=1 - 0.1 * e,
                    train_loss=2.0 / e) for e in range(1, 7)]
    img = np.asarray(curves_image(history, size=(600, 300)))
    assert [t for t, _ in drawn_text if t.startswith("lr")] == ["lr/2", "lr/10", "lr/2", "lr/10"]
    uncut = np.asarray(curves_image([dict(h, lr=0.01) for h in history], size=(600, 300)))
    differ = (img != uncut).any(axis=2) & ~(img == 150).all(axis=2)
    xs = np.flatnonzero(differ.any(axis=0))
    right = 600 // 2 - 15  # the first panel's right edge
    assert xs.min() > 50 and not ((xs > right) & (xs < right + 50)).any()  # none past it, in the gap


def test_prediction_names_with_a_long_common_start_still_read_differently(drawn_text):
    # Cut at the end, three bars (and the caption) read "Stanford Dogs: American...": which was which, and which
    # was true, was said by the bars' colour alone.
    names = ["Stanford Dogs: American Staffordshire terrier", "Stanford Dogs: American pit bull terrier",
             "Stanford Dogs: American water spaniel", "Stanford Dogs: Boston bull", "great white shark"]
    probs = np.array([[0.3, 0.25, 0.2, 0.15, 0.1]])
    predictions_image(np.zeros((1, 8, 8, 3), np.uint8), [1], probs, names, tile=32)
    texts = [t for t, _ in drawn_text]
    caption = next(t for t in texts if t.startswith("true: "))
    bars = [t for t in texts if not t.startswith("true: ") and not t.endswith("%")]
    assert len(bars) == 5 and len(set(bars)) == 5, bars
    assert "pit bull" in caption and any("pit bull" in t for t in bars), (caption, bars)


def test_the_filters_picture_says_each_filter_is_scaled_on_its_own(drawn_text):
    # Each tile is stretched to black..white on its own, so colours do not compare across filters: the picture
    # did not say so.
    filters_image(AlexNet(4, preset="small", devices="cpu"))
    towers = [t for t, _ in drawn_text if t.startswith("tower")]
    assert len(towers) == 2 and all("each stretched to 0..255 on its own" in t for t in towers), towers


# ----- mutation-testing additions: class names ---------------------------------------------------------------
def test_class_names_file_edges(tmp_path):
    # The first line of an ID wins (assigning, not setdefault, let a later line override it); an empty first name
    # ("ID , tench") is skipped, not taken as the name "".
    from pyalexnet.data import read_class_names

    names = tmp_path / "synset_words.txt"
    names.write_text("n1 tench\nn1 carp\nn2 , goldfish\nn3 ,\n")
    assert read_class_names(names, ["n1", "n2", "n3"]) == ["tench", "goldfish", "n3"]


def test_classes_sharing_a_name_never_end_up_sharing_another(tmp_path):
    # A clashing class takes its first other name that no class has and none took before it: without either
    # check, "crane, heron" became "heron" beside a class already named heron, or two cranes both became "heron".
    from pyalexnet.data import read_class_names

    names = tmp_path / "synset_words.txt"
    names.write_text("A crane, heron\nB crane\nC heron\nD maillot, suit\nE maillot, suit\n")
    got = read_class_names(names, ["A", "B", "C", "D", "E"])
    assert got == ["crane (A)", "crane (B)", "heron", "suit", "maillot (E)"]
    assert len(set(got)) == len(got)


def test_class_name_files_are_files_of_any_of_the_three_names(tmp_path):
    # words.txt (ImageNet's own full list) is one of the files looked for; a folder named like one is passed over
    # (exists() for is_file() opened it: IsADirectoryError); a data path that is not a folder (an archive) is not
    # searched around.
    from pyalexnet.data import class_names_for, find_class_names

    (tmp_path / "d" / "synset_words.txt").mkdir(parents=True)
    assert find_class_names(tmp_path / "d", ["n1"]) is None
    (tmp_path / "d" / "words.txt").write_text("n1 tench\n")
    assert find_class_names(tmp_path / "d", ["n1"]) == ["tench"]
    assert class_names_for(["n1"], data=str(tmp_path / "d")) == ["tench"]
    (tmp_path / "d" / "archive.tar.gz").write_bytes(b"x")
    assert class_names_for(["n1"], data=str(tmp_path / "d" / "archive.tar.gz")) == ["n1"]


# ----- mutation-testing additions: what the pictures show ---------------------------------------------------------
def test_a_filter_is_drawn_upright_and_each_tower_names_its_gpu(model, drawn_text):
    # A filter's rows are the tile's rows (drawn transposed, a horizontal edge detector read as a vertical one).
    w = model.parameters()["conv1a.weight"]
    w[0] = 0
    w[0, :, 0, :] = 1.0  # the top row bright
    img = np.asarray(filters_image(model, zoom=2, per_row=4))
    r = w.shape[2]
    tile = img[16 + 2:16 + 2 + 2 * r, 2:2 + 2 * w.shape[3]]
    assert (tile[:2] == 255).all() and (tile[2:] == 0).all()
    drawn_text.clear()
    filters_image(AlexNet(4, preset="small", devices="cpu"))  # wide enough for the whole line
    towers = [t for t, _ in drawn_text if t.startswith("tower")]
    assert towers[0].startswith("tower a (the paper's GPU 1)") and towers[1].startswith("tower b (the paper's GPU 2)")


def test_an_lr_cut_is_marked_at_the_epoch_whose_rate_is_lower():
    hist = [dict(epoch=e, lr=0.01 if e < 3 else 0.001, val_top1=0.5) for e in range(1, 6)]
    img = np.asarray(runs_image({"run": hist}, size=(500, 300)))
    grey = np.flatnonzero(((img == 150).all(axis=2)).sum(0) > 100)
    x3 = 50 + 3 / 5 * (500 - 15 - 50)  # epochs 0..5 across the frame
    assert len(grey) == 1 and abs(grey[0] - x3) <= 1, grey


def test_a_true_class_outside_the_top_guesses_is_said_with_its_rank_and_probability(drawn_text):
    probs = np.array([[0.3, 0.2, 0.15, 0.12, 0.1, 0.07, 0.06]])
    predictions_image(np.zeros((1, 8, 8, 3), np.uint8), [6], probs, [f"c{i}" for i in range(7)], tile=32)
    assert "true class: #7, 6.0%" in [t for t, _ in drawn_text]


def test_figure4_captions_a_mistake_with_the_models_guess(drawn_text):
    from pyalexnet.data import center_crop

    splits, _ = _figure4_splits()
    model = AlexNet(4, preset="small", input_size=16, devices="cpu", seed=1)
    guess = model.predict(center_crop(splits.val.images, 16, splits.mean_image)).argmax(1)
    figure4_pictures(model, splits, neighbours=1)
    names = splits.classes
    want = [names[t] + (f"guess: {names[g]}" if g != t else "") for t, g in zip(splits.val.labels, guess)]
    assert any(g != t for t, g in zip(splits.val.labels, guess)) and any(g == t for t, g in zip(splits.val.labels, guess))
    drawn = [t for t, _ in drawn_text]
    # Each query's caption lines, in order: its class, and for a mistake "guess: ..." under it.
    lines = [t for t in drawn if t in names or t.startswith("guess: ")]
    got, i = [], 0
    while i < len(lines):
        got.append(lines[i] + (lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("guess: ") else ""))
        i += 2 if got[-1] != lines[i] else 1
    assert got[-len(want):] == want, (got, want)


def test_save_test_pictures_keeps_the_samples_and_draws_the_confusion_rows_as_true_classes(tmp_path):
    from pyalexnet.viz import save_test_pictures

    splits, _ = _figure4_splits()
    model = AlexNet(4, preset="small", input_size=16, devices="cpu", seed=1)
    predictions = np.array([1, 1, 1, 1])  # test labels 3, 0, 1, 2 (copies 7, 20, 33, 38 of labels i % 4)
    out = save_test_pictures(model, splits, tmp_path, predictions=predictions, neighbours=1)
    mistakes = save_test_pictures(model, splits, tmp_path, neighbours=1, mistakes=True)
    assert {p.rsplit("/", 1)[1] for p in out["paths"]} == {"predictions.png", "neighbours.png", "confusion.png"}
    assert {p.rsplit("/", 1)[1] for p in mistakes["paths"]} == {"mistakes_predictions.png", "mistakes_neighbours.png"}
    from PIL import Image
    from pyalexnet.viz import confusion_image

    with Image.open(tmp_path / "confusion.png") as img:
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")),
                                      np.asarray(confusion_image(splits.val.labels, predictions, splits.classes)))
