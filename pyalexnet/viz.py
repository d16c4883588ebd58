"""Pictures a person would rather look at than read: conv1's filters (the paper's Figure 3, one row of
filters per tower) and the training curves. Pillow only, so they work on any install."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import _backend as B

FILTERS_NAME = "conv1_filters.png"
CURVES_NAME = "curves.png"


def filters_image(model, *, zoom: int = 0, per_row: int | None = None) -> Image.Image:
    """conv1's filters as RGB tiles: tower a's block above tower b's, as in the paper's Figure 3.

    Each filter is stretched to the full 0..255 range on its own (its sign and scale are
    arbitrary); `zoom` (default: enough for ~6-pixel tiles' worth of detail) enlarges each pixel.
    """
    params = model.parameters()
    towers = [B.to_host(params[name]) for name in ("conv1a.weight", "conv1b.weight") if name in params]
    if not towers:
        raise ValueError("the model has no conv1a.weight / conv1b.weight parameters")
    k, c, r, s = towers[0].shape
    if c not in (1, 3):
        raise ValueError(f"conv1 filters with {c} input channels cannot be shown as colours")
    zoom = zoom or max(1, 48 // max(r, s))
    per_row = per_row or min(k, 16)
    rows_per_tower = math.ceil(k / per_row)
    gap, tower_gap = max(1, zoom), 4 * max(1, zoom)
    tile_h, tile_w = r * zoom, s * zoom
    width = per_row * (tile_w + gap) + gap
    height = len(towers) * (rows_per_tower * (tile_h + gap) + gap) + (len(towers) - 1) * tower_gap
    canvas = np.full((height, width, 3), 255, np.uint8)
    y0 = 0
    for w in towers:
        for i in range(w.shape[0]):
            f = w[i].transpose(1, 2, 0).astype(np.float64)  # (R, S, C)
            lo, hi = f.min(), f.max()
            f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
            tile = np.repeat(np.repeat((f * 255 + 0.5).astype(np.uint8), zoom, 0), zoom, 1)
            if tile.shape[2] == 1:
                tile = np.repeat(tile, 3, 2)
            y = y0 + gap + (i // per_row) * (tile_h + gap)
            x = gap + (i % per_row) * (tile_w + gap)
            canvas[y:y + tile_h, x:x + tile_w] = tile
        y0 += rows_per_tower * (tile_h + gap) + gap + tower_gap
    return Image.fromarray(canvas)


def _series(history: Sequence[dict], key: str) -> list[tuple[float, float]]:
    return [(float(h["epoch"]), float(h[key])) for h in history if h.get(key) is not None]


def _lr_cuts(history: Sequence[dict]) -> list:
    """The epochs whose learning rate is below the previous epoch's."""
    return [h["epoch"] for prev, h in zip(history, history[1:])
            if h.get("lr") and prev.get("lr") and h["lr"] < prev["lr"]]


def _draw_panel(draw, font, box, title: str, lines, value_range, epoch_range, lr_cuts=()) -> None:
    """One chart in `box` (left, top, right, bottom): each of `lines` (label, [(epoch, value)], colour) as
    a line with dots and a legend entry; values clipped to value_range, epochs ticked, lr cuts marked."""
    left, top, right, bottom = box
    (lo, hi), (e_lo, e_hi) = value_range, epoch_range
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text((left, top - 22), title, fill=(0, 0, 0), font=font)

    def to_xy(e, v):
        x = left + (e - e_lo) / (e_hi - e_lo) * (right - left)
        y = bottom - (min(max(v, lo), hi) - lo) / (hi - lo) * (bottom - top)
        return x, y

    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = lo + frac * (hi - lo)
        _, y = to_xy(e_lo, v)
        draw.line([left - 4, y, left, y], fill=(0, 0, 0))
        draw.text((left - 45, y - 6), f"{v:.3g}", fill=(0, 0, 0), font=font)
    ticks = range(math.ceil(e_lo), math.floor(e_hi) + 1)
    for e in ticks:
        x, _ = to_xy(e, lo)
        draw.line([x, bottom, x, bottom + 4], fill=(0, 0, 0))
        if len(ticks) <= 21 or e % max(1, len(ticks) // 10) == 0:
            draw.text((x - 3, bottom + 6), str(e), fill=(0, 0, 0), font=font)
    draw.text(((left + right) // 2 - 15, bottom + 22), "epoch", fill=(0, 0, 0), font=font)
    for e in sorted(set(lr_cuts)):
        x, _ = to_xy(e, lo)
        draw.line([x, top, x, bottom], fill=(150, 150, 150))
        draw.text((x + 2, bottom - 14), "lr/10", fill=(120, 120, 120), font=font)
    legend_w = 8 + 6 * max([len(label) for label, _, _ in lines] + [0])
    for i, (label, points, colour) in enumerate(lines):
        pts = [to_xy(e, v) for e, v in points if math.isfinite(v)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        y = top + 12 + 14 * i
        draw.line([right - legend_w - 25, y, right - legend_w - 5, y], fill=colour, width=2)
        draw.text((right - legend_w, y - 6), label, fill=(0, 0, 0), font=font)


def curves_image(history: Sequence[dict], *, size: tuple[int, int] = (900, 420)) -> Image.Image:
    """Training curves from train()'s history: top-1 error (train and validation) and loss per epoch,
    with the epochs where the learning rate was divided marked."""
    if not history:
        raise ValueError("the history is empty: train at least one epoch")
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    epochs = [float(h["epoch"]) for h in history]
    epoch_range = (min(epochs + [0.0]), max(epochs + [1.0]))
    panel_w = width // 2
    panels = [("top-1 error", ("train_top1", "val_top1")), ("loss", ("train_loss", "val_loss"))]
    for p, (title, keys) in enumerate(panels):
        lines = [(label, _series(history, key), colour)
                 for label, key, colour in zip(("train", "validation"), keys, ((31, 119, 180), (214, 39, 40)))]
        values = [v for _, pts, _ in lines for _, v in pts if math.isfinite(v)]
        value_range = (0.0, 1.0) if p == 0 else (0.0, max(values + [1e-6]) * 1.05)
        _draw_panel(draw, font, (p * panel_w + 50, 30, (p + 1) * panel_w - 15, height - 45), title, lines,
                    value_range, epoch_range, _lr_cuts(history))
    return img


# Distinct colours for up to 10 runs (matplotlib's tab10), then repeated.
_RUN_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def runs_image(histories: dict, *, key: str = "val_top1", title: str = "validation top-1 error",
               size: tuple[int, int] = (700, 440)) -> Image.Image:
    """Several runs' histories in one chart, one line each: {label: history}. The epochs where any run
    divided its learning rate are marked."""
    if not histories or not any(histories.values()):
        raise ValueError("no histories to draw: train at least one epoch")
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    epochs = [float(h["epoch"]) for hist in histories.values() for h in hist]
    lines = [(label, _series(hist, key), _RUN_COLOURS[i % len(_RUN_COLOURS)])
             for i, (label, hist) in enumerate(histories.items())]
    values = [v for _, pts, _ in lines for _, v in pts if math.isfinite(v)]
    value_range = (0.0, 1.0) if key.endswith(("top1", "top5")) else (0.0, max(values + [1e-6]) * 1.05)
    cuts = [e for hist in histories.values() for e in _lr_cuts(hist)]
    _draw_panel(draw, font, (50, 30, width - 15, height - 45), title, lines, value_range,
                (min(epochs + [0.0]), max(epochs + [1.0])), cuts)
    return img


def save_training_pictures(model, history: Sequence[dict], directory) -> list[Path]:
    """Writes conv1_filters.png and (once an epoch has finished) curves.png into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        path = directory / FILTERS_NAME
        filters_image(model).save(path)
        written.append(path)
    except ValueError:
        pass  # an input that is not an image (no colour filters to show)
    if history:
        path = directory / CURVES_NAME
        curves_image(history).save(path)
        written.append(path)
    return written
