"""Pictures a person would rather look at than read: conv1's filters (the paper's Figure 3, one row of
filters per tower), the training curves, and test images with the model's top-5 guesses and their
nearest training images by fc7 features (the paper's Figure 4). Pillow only, so they work on any install."""
from __future__ import annotations

import functools
import io
import math
import numbers
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from . import _backend as B

FILTERS_NAME = "conv1_filters.png"
CURVES_NAME = "curves.png"
PREDICTIONS_NAME = "predictions.png"
NEIGHBOURS_NAME = "neighbours.png"
MISTAKES_PREFIX = "mistakes_"  # Figure 4 of the mistakes: beside the sample's pictures, not over them
CONFUSION_NAME = "confusion.png"
# Every picture a run writes into its checkpoint folder (a new run over an old one removes them first).
RUN_PICTURES = (FILTERS_NAME, CURVES_NAME, PREDICTIONS_NAME, NEIGHBOURS_NAME, CONFUSION_NAME,
                MISTAKES_PREFIX + PREDICTIONS_NAME, MISTAKES_PREFIX + NEIGHBOURS_NAME)
CONFUSION_MAX_CLASSES = 40  # beyond this a cell is a few pixels and its names unreadable
CONFUSION_NAME_WIDTH = 240  # pixels for a class name beside and over the matrix (about 45 characters)
NEIGHBOUR_POOL = 2000  # training images figure4_pictures searches for neighbours (and test images for mistakes)
# The largest picture drawn (width x height): 50 megapixels, 150 MB as RGB. A tile of 100000 was a picture of
# tens of gigapixels: the process was killed for memory, or a bare MemoryError came out of numpy or Pillow.
MAX_PIXELS = 50_000_000
MIN_TILE = 8  # pixels a side of an image's tile: below this an image is a smudge (0 was Pillow's error)
MIN_CELL = 8  # pixels a side of a confusion matrix's cell (0 was "x1 must be greater than or equal to x0")
MIN_CURVES_SIZE = (300, 150)  # curves_image's two panels, their ticks and legends (50x30 was Pillow's error)
MIN_RUNS_SIZE = (200, 150)


def _check_pixels(width: int, height: int, asked: str) -> None:
    """Refuses a picture of more than MAX_PIXELS before anything is allocated, saying which argument made it."""
    if width * height > MAX_PIXELS:
        raise ValueError(f"{asked} makes a picture of {width} x {height} pixels ({width * height:,}); at most "
                         f"{MAX_PIXELS:,} are drawn: ask for a smaller one")


def _pixels(images, name: str) -> np.ndarray:
    """images as uint8 0-255, as every picture function takes them: uint8 as they are, other integers in 0..255,
    floats in [0, 1] (as a network's input often is) scaled to 0-255. Float pixels were cast to uint8 as they
    were: an image in [0, 1] was drawn black without a word."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"{name}: integer pixels must be in 0..255, got {a.min()}..{a.max()}")
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has NaN or infinite pixels")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"{name}: float pixels must be in [0, 1] (drawn as 0-255), got {a.min():.4g}.."
                             f"{a.max():.4g}; pass uint8 for pixels in 0-255")
        return (a * 255 + 0.5).astype(np.uint8)
    raise TypeError(f"{name} must be pixels: uint8 in 0-255 or floats in [0, 1], got dtype {a.dtype}")


def _class_indices(values, name: str, classes: int) -> np.ndarray:
    """values as int64 class indices in 0..classes-1 (whole floats taken): a float label 1.7 was cut to 1, a
    label of 10 among 10 classes or -1 an IndexError from deep inside."""
    a = np.asarray(values)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be class indices (integers), got dtype {a.dtype}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            raise ValueError(f"{name} must be whole class indices, got {float(a[bad].flat[0]):g}")
    if a.size and (a.min() < 0 or a.max() >= classes):
        wrong = a[(a < 0) | (a >= classes)].flat[0]
        raise ValueError(f"{name} must be class indices in 0..{classes - 1}, got {wrong:g}")
    return a.astype(np.int64)


def _size(size, name: str, minimum: tuple[int, int]) -> tuple[int, int]:
    """size as (width, height) of integers at least `minimum` and at most MAX_PIXELS in all."""
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise TypeError(f"{name} must be (width, height), got {size!r}")
    width = B.integer(size[0], f"{name}'s width", low=minimum[0])
    height = B.integer(size[1], f"{name}'s height", low=minimum[1])
    _check_pixels(width, height, f"{name}=({width}, {height})")
    return width, height


# ----- text: Pillow's own font has ASCII only ("café", "Bär", Cyrillic and CJK class names came out as boxes) ---
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts", "/Library/Fonts",
              "/System/Library/Fonts", "C:/Windows/Fonts")
_NO_GLYPH = "\U0010fffd"  # a private-use code point no font draws: what a missing glyph looks like


@functools.lru_cache(maxsize=8192)  # asked per character of every name drawn
def _has_glyph(font, char: str) -> bool:
    def drawn(c):
        mask = font.getmask(c)
        return mask.size, bytes(mask)

    try:
        return drawn(char) != drawn(_NO_GLYPH)
    except UnicodeEncodeError:
        # Pillow's bitmap default font (before 10.1) takes Latin-1 only ("…" was this error), and draws a
        # Latin-1 character it has no glyph for as nothing.
        try:
            return font.getmask(char).size[0] > 0
        except UnicodeEncodeError:
            return False


def _font_files(chars: frozenset) -> list[str]:
    """Font files that may draw `chars`: fontconfig's list of those that cover them all (where it is
    installed), then every font file under the usual folders; within each, plain sans faces first."""
    covering: list[str] = []
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", ":charset=" + " ".join(f"{ord(c):x}" for c in sorted(chars)), "file"],
                                 capture_output=True, text=True, timeout=10).stdout
            covering = [line.split(":")[0].strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    others = [os.path.join(root, n) for folder in _FONT_DIRS for root, _, names in os.walk(os.path.expanduser(folder))
              for n in sorted(names) if n.lower().endswith((".ttf", ".otf", ".ttc"))]

    def plainness(path: str) -> int:
        name = os.path.basename(path).lower()
        return ("sans" not in name) + 2 * any(w in name for w in ("bold", "italic", "oblique", "mono", "light",
                                                                   "condensed", "serif", "black", "thin"))

    return list(dict.fromkeys(sorted(covering, key=plainness) + sorted(others, key=plainness)))


class _WordSpacedFont(ImageFont.FreeTypeFont):
    """Pillow's own font (Aileron, 10 px since Pillow 10.1) puts 2 px between words, so "class and" read as
    "classand" in every caption: it draws each space as two. Widths and boxes are measured the same way."""

    @staticmethod
    def _spaced(text):
        return text.replace(" ", "  ") if isinstance(text, str) else text

    def getlength(self, text, *args, **kwargs):
        return super().getlength(self._spaced(text), *args, **kwargs)

    def getbbox(self, text, *args, **kwargs):
        return super().getbbox(self._spaced(text), *args, **kwargs)

    def getmask2(self, text, *args, **kwargs):  # getmask and ImageDraw.text draw through it
        return super().getmask2(self._spaced(text), *args, **kwargs)

@functools.lru_cache(maxsize=1)
def _default_font():
    """Pillow's default font, with word spaces a reader can see where they are narrower than a quarter of its
    size (Aileron's are a fifth); an older Pillow's bitmap font is used as it is."""
    font = ImageFont.load_default()
    data = getattr(font, "font_bytes", None)
    if isinstance(font, ImageFont.FreeTypeFont) and data and font.getlength(" ") < font.size / 4:
        font = _WordSpacedFont(io.BytesIO(data), font.size, layout_engine=font.layout_engine)
    return font


@functools.lru_cache(maxsize=32)
def _font_covering(chars: frozenset):
    default = _default_font()
    missing = frozenset(c for c in chars if not _has_glyph(default, c))
    if not missing:
        return default
    best, best_count = default, len(chars) - len(missing)
    for path in _font_files(missing)[:200]:  # a bound: a machine with thousands of fonts is not searched whole
        try:
            font = ImageFont.truetype(path, 11)  # about the default font's height (10 px, 14 px lines)
        except OSError:
            continue
        count = sum(_has_glyph(font, c) for c in chars)
        if count > best_count:
            best, best_count = font, count
            if count == len(chars):
                break
    return best


def _needs_glyph(c: str) -> bool:
    return ord(c) > 126 and c.isprintable() and not c.isspace()


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF
            or 0x20000 <= o <= 0x3FFFF)


_WARNED: set = set()  # the font advice already given in this process: once each, not once a picture


def _font(texts: Iterable = ()):
    """The one font for every text of a picture (titles too: a title in Pillow's font over names in DejaVu
    mixed two faces in one picture): Pillow's default where it can (ASCII), else the first installed font
    that draws every character of `texts` (or most of them). Characters no installed font draws are written
    as "?" (see _legible, _class_labels), and said once, with the font to install: a box is not a name."""
    texts = [str(t) for t in texts]
    chars = frozenset(c for t in texts for c in t if _needs_glyph(c))
    font = _font_covering(chars)
    missing = "".join(sorted(c for c in chars if not _has_glyph(font, c)))
    if missing:
        advice = ("Noto Sans CJK (Debian/Ubuntu: apt install fonts-noto-cjk) or WenQuanYi Zen Hei (fonts-wqy-zenhei)"
                  if any(map(_is_cjk, missing)) else "Noto Sans (Debian/Ubuntu: apt install fonts-noto-core)")
        if advice not in _WARNED:
            _WARNED.add(advice)
            example = next(t for t in texts if any(c in missing for c in t))
            B.warn_user(f"no installed font draws {missing[:12]!r}{'...' if len(missing) > 12 else ''} (in "
                        f"{example!r}): the pictures write them as '?', a class name after its index ('#3 ?'); "
                        f"install a font that has them, such as {advice}")
    return font


def _legible(font, text) -> str:
    """text with each character `font` cannot draw as "?" (an empty box looked like a drawing fault)."""
    return "".join("?" if _needs_glyph(c) and not _has_glyph(font, c) else c for c in str(text))


def _class_labels(font, classes) -> list[str]:
    """Each class's name as it can be written in `font`: a name with characters it cannot draw after the
    class's index ("#3 ??"), so that names written "??" and "??" still say which class is which."""
    out = []
    for i, name in enumerate(classes):
        text = _legible(font, name)
        out.append(text if text == str(name) else f"#{i} {text}")
    return out


def filters_image(model, *, zoom: int = 0, per_row: int | None = None, title: str | None = None) -> Image.Image:
    """conv1's filters as RGB tiles: tower a's block above tower b's, each under a line naming it, as in the
    paper's Figure 3 (its GPU 1 and GPU 2). `title`, when given, is written above them (save_training_pictures
    names the run and its epoch).

    Each filter is stretched to the full 0..255 range on its own (its sign and scale are
    arbitrary), as each tower's line says; `zoom` (default: enough for ~6-pixel tiles' worth of detail) enlarges each pixel.
    """
    if not hasattr(model, "parameters"):
        raise TypeError(f"model must be a pyalexnet.AlexNet, got {type(model).__name__}")
    zoom = B.integer(zoom, "zoom", low=0)  # 0: the default; -1 was "negative dimensions are not allowed"
    per_row = None if per_row is None else B.integer(per_row, "per_row", low=1)
    params = model.parameters()
    towers = [(t, B.to_host(params[f"conv1{t}.weight"])) for t in "ab" if f"conv1{t}.weight" in params]
    if not towers:
        raise ValueError("the model has no conv1a.weight / conv1b.weight parameters")
    k, c, r, s = towers[0][1].shape
    if c not in (1, 3):
        raise ValueError(f"conv1 filters with {c} input channels cannot be shown as colours")
    zoom = zoom or max(1, 48 // max(r, s))
    per_row = per_row or min(k, 16)
    rows_per_tower = math.ceil(k / per_row)
    gap, tower_gap, label = max(1, zoom), 2 * max(1, zoom), 16  # the tower names keep the blocks apart
    tile_h, tile_w = r * zoom, s * zoom
    width = per_row * (tile_w + gap) + gap
    block = label + rows_per_tower * (tile_h + gap) + gap  # a tower: its name, then its rows of tiles
    _check_pixels(width, len(towers) * block + (len(towers) - 1) * tower_gap, f"zoom={zoom}, per_row={per_row}")
    canvas = np.full((len(towers) * block + (len(towers) - 1) * tower_gap, width, 3), 255, np.uint8)
    tops = [i * (block + tower_gap) for i in range(len(towers))]
    for y0, (_, w) in zip(tops, towers):
        for i in range(w.shape[0]):
            f = w[i].transpose(1, 2, 0).astype(np.float64)  # (R, S, C)
            lo, hi = f.min(), f.max()
            f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
            tile = np.repeat(np.repeat((f * 255 + 0.5).astype(np.uint8), zoom, 0), zoom, 1)
            if tile.shape[2] == 1:
                tile = np.repeat(tile, 3, 2)
            y = y0 + label + gap + (i // per_row) * (tile_h + gap)
            x = gap + (i % per_row) * (tile_w + gap)
            canvas[y:y + tile_h, x:x + tile_w] = tile
    img = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(img), _font([title or ""])
    for y0, (t, w) in zip(tops, towers):
        # The longest of these that fits: a narrow picture (few filters a row) still says which tower. How the
        # tiles are scaled is said too (it was not): colours compare within a filter, not across filters.
        whole = f"tower {t} (the paper's GPU {'ab'.index(t) + 1}): {w.shape[0]} filters"
        texts = [whole + ", each stretched to 0..255 on its own", whole + ", each scaled on its own", whole,
                 f"tower {t}", t]
        text = next((x for x in texts if draw.textlength(x, font=font) <= width - 2 * gap), t)
        draw.text((gap, y0 + 3), text, fill=(0, 0, 0), font=font)
    return _titled(img, title, font)


_HISTORY_ROW = ("each row of a history is a dict with 'epoch' (a number) and what was measured in it, such as "
                "train_top1, val_top1, train_loss, val_loss and lr, as train() returns them")


def _real(value) -> bool:
    return isinstance(value, (numbers.Real, np.ndarray)) and not isinstance(value, (bool, np.bool_)) \
        and np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"


def _check_history(history, name: str = "history") -> list:
    """history as a list of rows, each a dict with a finite 'epoch' (a row without one was KeyError: 'epoch')."""
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Iterable):
        raise TypeError(f"{name} must be a list of dicts, one an epoch ({_HISTORY_ROW}); got {type(history).__name__}")
    rows = list(history)
    for i, h in enumerate(rows):
        if not isinstance(h, Mapping) or "epoch" not in h or not _real(h["epoch"]) or not math.isfinite(h["epoch"]):
            got = (f"keys {sorted(map(str, h))}" if isinstance(h, Mapping) and "epoch" not in h
                   else f"epoch {h['epoch']!r}" if isinstance(h, Mapping) else repr(h))
            raise ValueError(f"{name}[{i}] has {got}: {_HISTORY_ROW}")
    return rows


def _as_trained(history: Sequence[dict]) -> list:
    """The rows of the run as it was trained last: a row whose epoch is not after the one before it starts a
    resumed run, which replaces the rows from its epoch on (a history appended to on resume, 1 2 3 4 5 3 4,
    was drawn running back to epoch 3 and forward again, the abandoned run's values beside the new ones). Where
    every epoch comes once, the order says nothing of a resume: the rows are taken in epoch order."""
    epochs = [float(h["epoch"]) for h in history]
    if len(set(epochs)) == len(epochs):
        return sorted(history, key=lambda h: float(h["epoch"]))
    kept: list = []
    for h in history:
        while kept and float(kept[-1]["epoch"]) >= float(h["epoch"]):
            kept.pop()
        kept.append(h)
    return kept


def _series(history: Sequence[dict], key: str) -> list[tuple[float, float]]:
    for h in history:
        if h.get(key) is not None and not _real(h[key]):
            raise ValueError(f"the history's {key} at epoch {h['epoch']} must be a number, got {h[key]!r}")
    return [(float(h["epoch"]), float(h[key])) for h in history if h.get(key) is not None]


def _said_unfinite(lines) -> list:
    """lines with each label saying where its values are not finite ("train (inf at epoch 3)"): an infinite loss
    was left out of its line without a word. _draw_panel marks those epochs with a cross at the frame's top."""
    out = []
    for label, points, colour in lines:
        odd = [f"{'nan' if math.isnan(v) else 'inf' if v > 0 else '-inf'} at epoch {e:g}"
               for e, v in points if not math.isfinite(v)]
        if odd:
            label = f"{label} ({', '.join(odd[:2])}{', ...' if len(odd) > 2 else ''})"
        out.append((label, points, colour))
    return out


def _lr_cuts(history: Sequence[dict]) -> list:
    """(epoch, "lr/F") for each epoch whose learning rate is below the previous epoch's, F the factor it was
    divided by (every cut was written "lr/10", a halving too)."""
    return [(h["epoch"], f"lr/{prev['lr'] / h['lr']:.3g}") for prev, h in zip(history, history[1:])
            if h.get("lr") and prev.get("lr") and h["lr"] < prev["lr"]]


def _cut_labels(cuts) -> list:
    """(epoch, label), one an epoch, by epoch: "lr cut" where runs divided by different factors there."""
    by_epoch: dict = {}
    for e, label in cuts:
        by_epoch.setdefault(e, set()).add(label)
    return [(e, labels.pop() if len(labels) == 1 else "lr cut") for e, labels in sorted(by_epoch.items())]


def _round_up(value: float) -> float:
    """The smallest 4 x (1, 2, 2.5 or 5 x 10^k) at or above value: quarter ticks at round numbers."""
    step = value / 4
    scale = 10 ** math.floor(math.log10(step))
    return 4 * scale * next(m for m in (1, 2, 2.5, 5, 10) if m * scale >= step)


def _legend_rows(draw, font, title: str, labels, width: float) -> list:
    """[None] when the legend fits on the title's line beside it; else the labels' indices in rows of `width`."""
    widths = [draw.textlength(label, font=font) + 34 for label in labels]
    if draw.textlength(title, font=font) + 20 + sum(widths) <= width:
        return [None]
    rows, used = [[]], 0.0
    for i, w in enumerate(widths):
        if rows[-1] and used + w > width:
            rows.append([])
            used = 0.0
        rows[-1].append(i)
        used += w
    return rows


def _legend_space(draw, font, title: str, labels, width: float) -> int:
    """Pixels of legend rows a panel of `width` needs between its title and its frame (0: on the title line)."""
    rows = _legend_rows(draw, font, title, labels, width)
    return 0 if rows[0] is None else 16 * len(rows)


def _epoch_label_step(epochs: int) -> int:
    """Which epoch ticks get a number: every one up to 21 epochs, else every 2, 5, 10, 20, 50, ... so that about
    ten are numbered (90 epochs were numbered 9, 18, 27, ...)."""
    if epochs <= 21:
        return 1
    return next(m * 10 ** k for k in range(12) for m in (1, 2, 5) if m * 10 ** k >= epochs / 10)


def _draw_panel(draw, font, box, title: str, lines, value_range, epoch_range, lr_cuts=()) -> None:
    """One chart in `box` (left, top, right, bottom): each of `lines` (label, [(epoch, value)], colour) as
    a line with dots and a legend entry; values clipped to value_range, epochs ticked, lr cuts ((epoch,
    label) pairs, as _cut_labels gives them) marked."""
    left, top, right, bottom = box
    (lo, hi), (e_lo, e_hi) = value_range, epoch_range
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    rows = _legend_rows(draw, font, title, [label for label, _, _ in lines], right - left)
    below = 0 if rows[0] is None else len(rows)  # legend rows between the title and the frame
    draw.text((left, top - 22 - 16 * below), title, fill=(0, 0, 0), font=font)

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
    every = _epoch_label_step(len(ticks))
    for e in ticks:
        x, _ = to_xy(e, lo)
        draw.line([x, bottom, x, bottom + 4], fill=(0, 0, 0))
        if e % every == 0:  # centred on its tick ("10" sat to the right of it)
            draw.text((x - draw.textlength(str(e), font=font) / 2, bottom + 6), str(e), fill=(0, 0, 0), font=font)
    draw.text(((left + right) // 2 - 15, bottom + 22), "epoch", fill=(0, 0, 0), font=font)
    for e, _ in lr_cuts:
        x, _ = to_xy(e, lo)
        draw.line([x, top, x, bottom], fill=(150, 150, 150))
    placed: list = []  # (x0, x1, row) of the labels written
    for e, text in lr_cuts:  # labels after all the lines, so a later cut's line does not cross one
        x, _ = to_xy(e, lo)
        # At the top, on white: late in training, where the cuts are, the curves run low. Left of the line
        # where the right would leave the frame (a cut at the last epoch ran over the next panel's axis), and
        # a row lower where an earlier cut's label is in the way (cuts a few epochs apart wrote over each other).
        text_w = draw.textlength(text, font=font)
        x0 = x + 1 if x + 4 + text_w <= right else x - 4 - text_w
        row = next(r for r in range(len(placed) + 1)
                   if not any(r == pr and x0 < p1 + 2 and p0 < x0 + text_w + 3 for p0, p1, pr in placed))
        placed.append((x0, x0 + text_w + 2, row))
        y = top + 2 + 13 * row
        draw.rectangle([x0, y, x0 + text_w + 2, y + 12], fill=(255, 255, 255))
        draw.text((x0 + 1, y), text, fill=(120, 120, 120), font=font)
    # The legend on the title's line, right-aligned (inside the frame it sat on the early epochs' points); when
    # the title leaves too little room (8 runs' labels ran over it and off the left edge), in rows under it.
    for r, row in enumerate(rows if below else [range(len(lines))]):
        y = top - 22 - 16 * (below - 1 - r) if below else top - 22
        x_legend = right
        for i in reversed(row):
            label, _, colour = lines[i]
            x_legend -= draw.textlength(label, font=font) + 34
            draw.line([x_legend, y + 6, x_legend + 20, y + 6], fill=colour, width=2)
            draw.ellipse([x_legend + 7, y + 3, x_legend + 13, y + 9], fill=colour)
            draw.text((x_legend + 24, y), label, fill=(0, 0, 0), font=font)
    for label, points, colour in lines:
        pts = [to_xy(e, v) for e, v in points if math.isfinite(v)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:  # a dot per epoch, large enough to see where one epoch is all there is
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        for e, v in points:  # a value that is not finite: a cross at the top of the frame, at its epoch
            if not math.isfinite(v):
                x, _ = to_xy(e, lo)
                draw.line([x - 4, top + 2, x + 4, top + 10], fill=colour, width=2)
                draw.line([x - 4, top + 10, x + 4, top + 2], fill=colour, width=2)


def curves_image(history: Sequence[dict], *, size: tuple[int, int] = (900, 420),
                 title: str | None = None) -> Image.Image:
    """Training curves from train()'s history: top-1 error (train and validation) and loss per epoch,
    with the epochs where the learning rate was divided marked. `title`, when given, is written above the
    panels (which keep `size`)."""
    history = _as_trained(_check_history(history))
    if not history:
        raise ValueError("the history is empty: train at least one epoch")
    width, height = size = _size(size, "size", MIN_CURVES_SIZE)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = _font([title or ""])
    epochs = [float(h["epoch"]) for h in history]
    # Half an epoch of margin each side: from 0 the first epoch's points sat at the far end of an empty
    # panel, and a single epoch's on its frame.
    epoch_range = (min(epochs) - 0.5, max(epochs) + 0.5)
    panel_w = width // 2
    panels = [("top-1 error", ("train_top1", "val_top1")), ("loss", ("train_loss", "val_loss"))]
    for p, (name, keys) in enumerate(panels):
        lines = [(label, _series(history, key), colour)
                 for label, key, colour in zip(("train", "validation"), keys, ((31, 119, 180), (214, 39, 40)))]
        # A run without validation images has no validation line, and its legend does not name one.
        lines = _said_unfinite([line for line in lines if line[1]] or lines[:1])
        values = [v for _, pts, _ in lines for _, v in pts if math.isfinite(v)]
        value_range = (0.0, 1.0) if p == 0 else (0.0, _round_up(max(values + [1e-6]) * 1.05))
        _draw_panel(draw, font, (p * panel_w + 50, 30, (p + 1) * panel_w - 15, height - 45), name, lines,
                    value_range, epoch_range, _cut_labels(_lr_cuts(history)))
    return _titled(img, title, font)


# Distinct colours for up to 10 runs (matplotlib's tab10), then repeated.
_RUN_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def runs_image(histories: dict, *, key: str = "val_top1", title: str = "validation top-1 error",
               size: tuple[int, int] = (700, 440)) -> Image.Image:
    """Several runs' histories in one chart, one line each: {label: history}. The epochs where any run
    divided its learning rate are marked."""
    if not isinstance(histories, Mapping):
        raise TypeError(f"runs_image takes a dict {{label: history}} (one history a run), got "
                        f"{type(histories).__name__}")
    histories = {label: _as_trained(_check_history(hist, f"the history of {label!r}"))
                 for label, hist in histories.items()}
    if not histories or not any(histories.values()):
        raise ValueError("no histories to draw: train at least one epoch")
    if not any(h.get(key) is not None for hist in histories.values() for h in hist):
        keys = sorted({str(k) for hist in histories.values() for h in hist for k in h if h[k] is not None} - {"epoch"})
        raise ValueError(f"no history has {key!r}: key must be one of {', '.join(keys) or '(none: only epochs)'}")
    width, height = size = _size(size, "size", MIN_RUNS_SIZE)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = _font([*histories, title])
    title = _legible(font, title)
    epochs = [float(h["epoch"]) for hist in histories.values() for h in hist]
    lines = _said_unfinite([(_legible(font, label), _series(hist, key), _RUN_COLOURS[i % len(_RUN_COLOURS)])
                            for i, (label, hist) in enumerate(histories.items())])
    values = [v for _, pts, _ in lines for _, v in pts if math.isfinite(v)]
    value_range = (0.0, 1.0) if key.endswith(("top1", "top5")) else (0.0, max(values + [1e-6]) * 1.05)
    cuts = _cut_labels([cut for hist in histories.values() for cut in _lr_cuts(hist)])
    top = 30 + _legend_space(draw, font, title, [label for label, _, _ in lines], width - 65)
    if height - 45 - top < 40:  # the legend's rows left no room for the chart (or put it upside down)
        raise ValueError(f"size=({width}, {height}) leaves no room for the chart under the legend of "
                         f"{len(lines)} runs: make it at least {top + 85} pixels high")
    _draw_panel(draw, font, (50, top, width - 15, height - 45), title, lines, value_range,
                (min(epochs + [0.0]), max(epochs + [1.0])), cuts)
    return img


def _save_png(img: Image.Image, path: Path, title: str | None) -> None:
    """img as a PNG whose Title (what image viewers list as its title) is the one drawn over it."""
    info = PngInfo()
    if title:
        info.add_itxt("Title", title)
    img.save(path, pnginfo=info)


def training_titles(model, history: Sequence[dict], directory, *, data: str | None = None,
                    epochs: int | None = None) -> dict:
    """The titles save_training_pictures draws: {"filters": ..., "curves": ...}, each naming the run (its
    folder), the model and data, and how far it has trained. Opened on its own, curves.png said "top-1
    error" and "loss" but not whose; conv1_filters.png said nothing of when its filters were taken."""
    history = _as_trained(_check_history(history))
    run = Path(directory).resolve().name or str(directory)
    what = f"{model.preset or 'custom'} AlexNet, {model.num_classes} classes, {model.input_size} px crops"
    what += f", on {data}" if data else ""
    done = int(history[-1]["epoch"]) if history else 0
    of = f" of {int(epochs)}" if epochs else ""
    step = getattr(model, "step", None)
    first = int(history[0]["epoch"]) if history else 0
    span = f"epoch {done}{of}" if first == done else f"epochs {first}-{done}{of}"
    return {"filters": f"run {run}: conv1's filters after epoch {done}{of}" + (f" (step {step})" if step else "")
                       + f"; {what}",
            "curves": f"run {run}: top-1 error and loss per epoch, {span}; {what}"}


def save_training_pictures(model, history: Sequence[dict], directory, *, data: str | None = None,
                           epochs: int | None = None) -> list[Path]:
    """Writes conv1_filters.png and (once an epoch has finished) curves.png into `directory`, each titled with
    the run (the folder's name), the model and how far it has trained (training_titles; `data`, what it
    trains on, and `epochs`, how many it will, go in when given)."""
    history = _check_history(history)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    titles = training_titles(model, history, directory, data=data, epochs=epochs)
    written = []
    try:
        path = directory / FILTERS_NAME
        _save_png(filters_image(model, title=titles["filters"]), path, titles["filters"])
        written.append(path)
    except ValueError:
        pass  # an input that is not an image (no colour filters to show)
    if history:
        path = directory / CURVES_NAME
        _save_png(curves_image(history, title=titles["curves"]), path, titles["curves"])
        written.append(path)
    return written


# ----- the paper's Figure 4: top-5 guesses and nearest neighbours by fc7 features -----------------------
# The true class's bar red, the others blue, both light enough for black text over them.
_BAR_RIGHT, _BAR_WRONG = (250, 140, 135), (158, 202, 225)
# The true class's name and percentage: dark red, 5.5:1 over its bar (a brighter red was 2.8:1 at 10 px).
_TEXT_RIGHT = (110, 0, 0)
_MATCH, _MISMATCH = (44, 160, 44), (214, 39, 40)


def _percent_labels(values) -> list[str]:
    """Probabilities as whole percents, or all in tenths where two would read the same ("square 11%" above
    "plus 11%" on a mistake's panel did not say which came first)."""
    whole = [f"{100 * float(v):.0f}%" for v in values]
    return whole if len(set(whole)) == len(whole) else [f"{100 * float(v):.1f}%" for v in values]


def _tile(image, size: int) -> Image.Image:
    """An (H, W, 3) uint8 image as a size x size tile: pixels repeated when enlarging, smoothed when shrinking."""
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    # Image.Resampling: Pillow 9.1 to 9.3 warn that Image.NEAREST and Image.BILINEAR go (9.4 kept them); 9.0 lacks it.
    resampling = getattr(Image, "Resampling", Image)
    return img.resize((size, size), resampling.NEAREST if size >= max(image.shape[:2]) else resampling.BILINEAR)


def _fit(draw, font, text: str, width: float, dots: str = "...") -> str:
    """text, cut with "..." (or `dots`) to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + dots, font=font) > width:
        text = text[:-1]
    return text + dots


def _ellipsis(font) -> str:
    return "\u2026" if _has_glyph(font, "\u2026") else "..."


def _cut_around(draw, font, text: str, at: int, width: float) -> str:
    """text shortened to `width` pixels so that it shows its character `at`: its first word or so, "…", the
    text from the start of the word holding `at` (as many words before it as there is room for), "…" where
    the end is cut."""
    dots = _ellipsis(font)

    def word_start(i: int) -> int:
        return text.rfind(" ", 0, i) + 1

    for most in (12, 8, 4, 0):  # the head: whole words up to `most` characters where there are
        head = text.rfind(" ", 0, most + 1) if " " in text[:most + 1] else most
        lo = word_start(at) if at - word_start(at) <= 10 else at - 6
        if lo <= head:
            continue  # `at` is in the head: then the end cut was not what hid it
        while lo > head and draw.textlength(text[:head] + dots + text[word_start(lo - 1):], font=font) <= width:
            lo = word_start(lo - 1)  # room for the word before: context
        shown = _fit(draw, font, text[:head] + dots + text[lo:], width, dots)
        body = shown[head + len(dots):]
        if body.endswith(dots) and not text[lo:].endswith(dots):
            body = body[:-len(dots)]
        if lo + len(body) > at:  # it reaches `at`
            return shown
    return _fit(draw, font, dots + text[max(0, at - 2):], width, dots)


def _distinct_fits(draw, font, names: Sequence[str], width: float, numbers: Sequence[int] | None = None) -> list[str]:
    """names cut to `width` pixels each, distinct names still distinct: cut at the end (where a long name's
    least telling words are: "great white shark, white shark, man-eater, …"), and where two would then read
    the same (a long common prefix: "Stanford Dogs: American Staffordshire terrier" and "Stanford Dogs:
    American pit bull terrier" both "Stanford Dogs: American …" in a narrow margin) around where they first
    differ ("Stanford Dog…American Staffordshire…"); the class's index in front as the last resort (numbers[i]
    for names[i] when given: names that are a few of the classes)."""
    dots = _ellipsis(font)
    out = [_fit(draw, font, n, width, dots) for n in names]

    def clashing() -> list[list[int]]:  # groups of different names shown the same
        groups: dict = {}
        for i, shown in enumerate(out):
            groups.setdefault(shown, []).append(i)
        return [idx for idx in groups.values() if len({names[i] for i in idx}) > 1]

    for idx in clashing():
        for i in idx:
            # The first character where it differs from the name it is most alike (an identical name: none).
            at = max(len(os.path.commonprefix([names[i], names[j]])) for j in idx if names[j] != names[i])
            out[i] = _cut_around(draw, font, names[i], at, width)
    for idx in clashing():
        for i in idx:
            out[i] = _fit(draw, font, f"#{i if numbers is None else numbers[i]} {out[i]}", width, dots)
    return out


def _wrap(draw, font, text: str, width: float) -> list[str]:
    """text broken at spaces into lines of at most `width` pixels (a word longer than that is cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(_fit(draw, font, word, width))
    return lines


def _titled(img: Image.Image, title: str | None, font=None) -> Image.Image:
    """img under `title`, wrapped to its width: a picture that says what it shows once it is out of its folder.
    font: the picture's own (one face for all its text); by default one that draws the title."""
    if not title:
        return img
    font = font or _font([title])
    title = _legible(font, title)
    lines = _wrap(ImageDraw.Draw(img), font, title, img.width - 12)
    out = Image.new("RGB", (img.width, 8 + 14 * len(lines) + img.height), "white")
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(lines):
        draw.text((6, 4 + 14 * i), text, fill=(0, 0, 0), font=font)
    out.paste(img, (0, out.height - img.height))
    return out


def predictions_image(images, labels, probs, classes: Sequence[str], *, top: int = 5, tile: int = 112,
                      per_row: int = 4, title: str | None = None, captions: Sequence[str] | None = None) -> Image.Image:
    """The paper's Figure 4 (left): each image with its true class written under it ("true: ...") and the
    model's `top` most probable classes as bars as long as their probability; the true class's bar is red
    and its name red when it is among them (the others light blue), else a red last line gives its rank and
    probability. `title`, when given, is written above them.

    images: uint8 (N, H, W, 3) as shown; labels (N,), or None for images whose class is not known (every bar
    blue); probs (N, num_classes) with rows summing to 1. captions: the line under each image instead of
    its true class (such as its file name).
    """
    tile = B.integer(tile, "tile", low=MIN_TILE)
    top, per_row = B.integer(top, "top", low=1), B.integer(per_row, "per_row", low=1)
    images = _pixels(images, "images")
    try:
        probs = np.asarray(probs, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"probs must be numbers (N, classes), got {type(probs).__name__}") from None
    if images.ndim != 4 or images.shape[3] != 3 or len(images) == 0:
        raise ValueError(f"images must be (N, H, W, 3) with N >= 1, got shape {images.shape}")
    known = labels is not None
    labels = np.asarray(labels) if known else np.full(len(images), -1)
    if labels.shape != (len(images),) or probs.ndim != 2 or probs.shape[0] != len(images):
        raise ValueError(f"{len(images)} images need labels (N,) and probs (N, classes); got {labels.shape} "
                         f"and {probs.shape}")
    if probs.shape[1] != len(classes):
        raise ValueError(f"probs has {probs.shape[1]} classes, the class list {len(classes)}")
    if known:
        labels = _class_indices(labels, "labels", len(classes))
    # Probabilities, each in [0, 1] and a row's at most 1 in all (logits or scores drew "500.0%" and bars cut
    # at the panel's edge; NaN was "cannot convert float NaN to integer").
    if not np.isfinite(probs).all():
        raise ValueError("probs must be probabilities; it has NaN or infinite values")
    if probs.min() < 0 or probs.max() > 1 + 1e-6 or (probs.sum(1) > 1 + 1e-3).any():
        raise ValueError(f"probs must be probabilities: each in [0, 1] and each row at most 1 in all (softmax "
                         f"output); got values {probs.min():.4g}..{probs.max():.4g}, row sums up to "
                         f"{probs.sum(1).max():.4g}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images need as many captions, got {len(captions)}")
    font = _font([*classes, *(captions or ()), title or ""])
    names = _class_labels(font, classes)
    top = min(top, probs.shape[1])
    line = 14
    panel_w, panel_h = max(tile, 150) + 16, tile + 8 + line * (top + 1 + known) + 12
    bar_w = panel_w - 16
    # The names in the picture cut so that different ones still read differently: cut at the end, three bars
    # of "Stanford Dogs: American Staffordshire terrier", "... pit bull terrier", "... water spaniel" all read
    # "Stanford Dogs: American..." (and the caption too), which one was true said by colour alone.
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    orders = [np.argsort(-p, kind="stable")[:top] for p in probs]  # the most probable first, ties in class order
    shown = sorted({int(c) for order in orders for c in order} | ({int(c) for c in labels} if known else set()))
    bar_names = dict(zip(shown, _distinct_fits(probe, font, [names[c] for c in shown],
                                               bar_w - probe.textlength("100.0%", font=font) - 8, shown)))
    if captions is None:
        true_names = dict(zip(shown, _distinct_fits(probe, font, [names[c] for c in shown],
                                                    bar_w - probe.textlength("true: ", font=font), shown)))
        captions = ["true: " + true_names[int(c)] if known else "" for c in labels]
    captions = [_legible(font, c) for c in captions]
    per_row = min(per_row, len(images))
    rows = math.ceil(len(images) / per_row)
    _check_pixels(per_row * panel_w, rows * panel_h, f"tile={tile} for {len(images)} images, {per_row} a row")
    img = Image.new("RGB", (per_row * panel_w, rows * panel_h), "white")
    draw = ImageDraw.Draw(img)
    for i in range(len(images)):
        x0, y0 = (i % per_row) * panel_w + 8, (i // per_row) * panel_h + 6
        img.paste(_tile(images[i], tile), (x0 + (bar_w - tile) // 2, y0))
        y = y0 + tile + 4
        name = _fit(draw, font, str(captions[i]), bar_w)
        draw.text((x0 + (bar_w - draw.textlength(name, font=font)) / 2, y), name, fill=(0, 0, 0), font=font)
        y += line + 4
        order = np.argsort(-probs[i], kind="stable")
        for c, pct in zip(orders[i], _percent_labels(probs[i, orders[i]])):
            length = int(round(float(np.clip(probs[i, c], 0.0, 1.0)) * bar_w))
            if length > 0:
                draw.rectangle([x0, y, x0 + length - 1, y + line - 3],
                               fill=_BAR_RIGHT if c == labels[i] else _BAR_WRONG)
            pct_w = draw.textlength(pct, font=font)
            # The true class's name in red too: at a few percent its bar is a sliver.
            text = _TEXT_RIGHT if c == labels[i] else (0, 0, 0)
            draw.text((x0 + bar_w - pct_w, y), pct, fill=text, font=font)
            draw.text((x0 + 2, y), bar_names[int(c)], fill=text, font=font)
            y += line
        if known and labels[i] not in order[:top]:  # where the true class came, which the bars cannot show
            rank = int(np.flatnonzero(order == labels[i])[0]) + 1
            draw.text((x0 + 2, y), f"true class: #{rank}, {100 * probs[i, int(labels[i])]:.1f}%", fill=_TEXT_RIGHT,
                      font=font)
    return _titled(img, title, font)


def neighbours_image(queries, neighbours, *, same_class=None, tile: int = 64, title: str | None = None,
                     captions: Sequence[str] | None = None) -> Image.Image:
    """The paper's Figure 4 (right): one row per query image (first column, after a gap) followed by its
    nearest images, nearest first. same_class (Q, K) of bools, when given, frames each neighbour green
    where it has the query's class and red, dashed (a cue that needs no colour), where it does not.
    `title`, when given, is written above; `captions` (one per query, lines split at newlines) under each
    query image.

    queries: uint8 (Q, H, W, 3); neighbours: uint8 (Q, K, H', W', 3).
    """
    tile = B.integer(tile, "tile", low=MIN_TILE)
    queries, neighbours = _pixels(queries, "queries"), _pixels(neighbours, "neighbours")
    if (queries.ndim != 4 or neighbours.ndim != 5 or neighbours.shape[0] != queries.shape[0] or len(queries) == 0
            or queries.shape[3] != 3 or neighbours.shape[4] != 3):
        raise ValueError(f"queries must be (Q, H, W, 3) and neighbours (Q, K, H, W, 3) with Q >= 1; got "
                         f"{queries.shape} and {neighbours.shape}")
    q, k = neighbours.shape[:2]
    if same_class is not None:
        same_class = np.asarray(same_class, bool)
        if same_class.shape != (q, k):
            raise ValueError(f"same_class must have shape {(q, k)}, got {same_class.shape}")
    if captions is not None and len(captions) != q:
        raise ValueError(f"{q} query images need as many captions, got {len(captions)}")
    lines = [str(c).split("\n") for c in captions] if captions is not None else [[] for _ in range(q)]
    gap, frame, query_gap, line = 6, 3, 16, 12
    cell = tile + 2 * frame + gap
    row_h = cell + line * max(len(ls) for ls in lines)
    font = _font([c for ls in lines for c in ls] + [title or ""])
    lines = [[_legible(font, c) for c in ls] for ls in lines]
    caption = "nearest training images by fc7 distance" + (
        " (green: same class, red dashed: another)" if same_class is not None else "")
    # Over the neighbours' columns, in as many lines as it takes (with few neighbours the colour key was cut).
    heading = _wrap(ImageDraw.Draw(Image.new("RGB", (1, 1))), font, caption, max(cell * k - gap, 60))
    header = 20 + 14 * (len(heading) - 1)
    _check_pixels(gap + cell * (k + 1) + query_gap, header + gap + row_h * q,
                  f"tile={tile} for {q} rows of {k} neighbours")
    img = Image.new("RGB", (gap + cell * (k + 1) + query_gap, header + gap + row_h * q), "white")
    draw = ImageDraw.Draw(img)
    draw.text((gap, 4), "test", fill=(0, 0, 0), font=font)
    for i, text in enumerate(heading):
        draw.text((gap + cell + query_gap, 4 + 14 * i), text, fill=(0, 0, 0), font=font)
    for r in range(q):
        y = header + gap + r * row_h
        img.paste(_tile(queries[r], tile), (gap + frame, y + frame))
        for i, text in enumerate(lines[r]):
            draw.text((gap, y + tile + 2 * frame + 1 + i * line), _fit(draw, font, text, cell + query_gap - gap),
                      fill=(0, 0, 0), font=font)
        for j in range(k):
            x = gap + cell * (j + 1) + query_gap
            if same_class is not None:
                x1, y1 = x + tile + 2 * frame - 1, y + tile + 2 * frame - 1
                draw.rectangle([x, y, x1, y1], fill=_MATCH if same_class[r, j] else _MISMATCH)
                if not same_class[r, j]:  # white gaps along the frame every 8 px
                    for t in range(4, tile + 2 * frame - 4, 8):
                        draw.rectangle([x + t, y, x + t + 3, y1], fill=(255, 255, 255))
                        draw.rectangle([x, y + t, x1, y + t + 3], fill=(255, 255, 255))
            img.paste(_tile(neighbours[r, j], tile), (x + frame, y + frame))
    return _titled(img, title, font)


def nearest_neighbours(query_features, pool_features, k: int) -> np.ndarray:
    """Indices (Q, k) of the k pool rows nearest to each query row in Euclidean distance, nearest first
    (ties: the lower index first). Computed in float64."""
    qf = np.asarray(query_features, np.float64).reshape(len(query_features), -1)
    pf = np.asarray(pool_features, np.float64).reshape(len(pool_features), -1)
    if qf.shape[1] != pf.shape[1]:
        raise ValueError(f"query features have {qf.shape[1]} values, pool features {pf.shape[1]}")
    if not 1 <= k <= len(pf):
        raise ValueError(f"k must be between 1 and the pool's {len(pf)} images, got {k}")
    d2 = (qf * qf).sum(1)[:, None] + (pf * pf).sum(1)[None, :] - 2.0 * qf @ pf.T
    return np.argsort(np.maximum(d2, 0.0), axis=1, kind="stable")[:, :k]


def _centre(images, crop: int) -> np.ndarray:
    """The centre crop of uint8 (N, H, W, 3) images, as the network sees them at test time (mean not subtracted)."""
    h, w = images.shape[1:3]
    t, l = (h - crop) // 2, (w - crop) // 2
    return np.asarray(images[:, t:t + crop, l:l + crop])


def _centre_crops_through(fn, images, index, crop: int, mean, batch_size: int) -> np.ndarray:
    """fn (model.features or model.predict) of the centre crops of images[index], on the host, read
    `batch_size` images at a time (a store's images stay on disk until needed)."""
    from . import data as D

    return np.concatenate([B.to_host(fn(D.center_crop(np.asarray(images[index[i:i + batch_size]]), crop, mean)))
                           for i in range(0, len(index), batch_size)])


def _as_splits(splits):
    """splits as pyalexnet.data.Splits: a data spec ("builtin", a folder, "cifar10:PATH", a store) loaded with
    pyalexnet.data.load_dataset's defaults (a spec was "'str' object has no attribute 'crop_size'")."""
    from . import data as D

    if isinstance(splits, (str, os.PathLike)):
        return D.load_dataset(os.fspath(splits))
    if not isinstance(splits, D.Splits):
        raise TypeError(f"splits must be a data set: pyalexnet.data.load_dataset(...)'s Splits, or a spec it loads "
                        f"(\"builtin\", a folder, \"cifar10:PATH\", a store); got {type(splits).__name__}")
    return splits


def figure4_pictures(model, splits, *, mean_image=None, count: int = 8, neighbours: int = 6,
                     pool: int = NEIGHBOUR_POOL, seed: int = 0, batch_size: int = 128,
                     class_names: Sequence[str] | None = None, mistakes: bool = False) -> dict:
    """The paper's Figure 4 for `model` on a data set (pyalexnet.data.Splits, or a spec such as "builtin",
    loaded by pyalexnet.data.load_dataset with its defaults): {"predictions": image,
    "neighbours": image, "agreement": the fraction of neighbours with their query's class, "test_index":
    the test images shown, "neighbour_index": (queries, neighbours) training indices, nearest first}.

    `count` test images (a fixed random sample, by `seed`) with their top-5 guesses on the centre crop,
    and the first min(count, 5) of them with the `neighbours` training images (searched among a fixed
    random sample of `pool`) whose fc7 activations are nearest. class_names: what to write for each
    class (default: the data set's class names; see read_class_names for ImageNet's IDs).
    mistakes=True draws the test images from those whose centre crop the model gets wrong (top-1) among
    a fixed random sample of `pool` test images, and adds "mistakes": how many it found there, and
    "searched": how many it looked at (with none wrong, the sample is drawn from all of them).
    """
    from . import data as D

    from .training import _check_positive_int  # train()'s own check, messages and all

    for value, name in ((count, "count"), (neighbours, "neighbours"), (pool, "pool"), (batch_size, "batch_size")):
        _check_positive_int(value, name)
    if not hasattr(model, "predict") or not hasattr(model, "features"):
        raise TypeError(f"model must be a pyalexnet.AlexNet, got {type(model).__name__}")
    splits = _as_splits(splits)
    if model.input_size != splits.crop_size or model.num_classes != splits.num_classes:
        raise ValueError(f"the model ({model.input_size} px, {model.num_classes} classes) does not fit the data set "
                         f"({splits.crop_size} px, {splits.num_classes} classes)")
    test, train = splits.val, splits.train
    if len(test) == 0 or len(train) == 0:
        raise ValueError("the data set needs both test and training images for these pictures")
    rng = np.random.default_rng(seed)
    crop = splits.crop_size
    mean = splits.mean_image if mean_image is None else mean_image
    among, extra = np.arange(len(test)), {}
    if mistakes:
        searched = np.sort(rng.choice(len(test), min(pool, len(test)), replace=False))
        guesses = _centre_crops_through(model.predict, test.images, searched, crop, mean, batch_size).argmax(1)
        wrong = searched[guesses != test.labels[searched]]
        extra = {"mistakes": int(len(wrong)), "searched": int(len(searched))}
        among = wrong if len(wrong) else among
    picks = np.sort(rng.choice(among, min(count, len(among)), replace=False))
    images = np.asarray(test.images[picks])
    probs = B.to_host(model.predict(D.center_crop(images, crop, mean)))
    shown = _centre(images, crop)
    if class_names is not None and len(class_names) != splits.num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {splits.num_classes} classes")
    # Titled, since the pictures outlive the command that drew them (which said whether they were mistakes).
    guesses = f"the true class and the model's {min(5, splits.num_classes)} most probable (centre crop; the true one red)"
    if not mistakes:
        chosen, alike = f"{len(picks)} test images drawn at random", "test images drawn at random"
    elif extra["mistakes"]:
        chosen = (f"{len(picks)} of the {extra['mistakes']} test images the model gets wrong (top-1, centre crop) "
                  f"among {extra['searched']} searched")
        alike = "test images the model gets wrong"
    else:
        chosen = f"no mistakes among {extra['searched']} test images (top-1, centre crop): {len(picks)} drawn at random"
        alike = "test images drawn at random (none is a mistake)"
    predictions = predictions_image(shown, test.labels[picks], probs, class_names or splits.classes,
                                    title=f"{chosen}: {guesses}")

    queries = picks[:min(5, len(picks))]
    candidates = np.sort(rng.choice(len(train), min(pool, len(train)), replace=False))
    k = min(neighbours, len(candidates))
    near = candidates[nearest_neighbours(
        _centre_crops_through(model.features, test.images, queries, crop, mean, batch_size),
        _centre_crops_through(model.features, train.images, candidates, crop, mean, batch_size), k)]
    same = train.labels[near] == test.labels[queries][:, None]
    found = np.stack([_centre(np.asarray(train.images[row]), crop) for row in near])
    # Each test image's class, and for a mistake its guess: the frames say only whether a neighbour has its class.
    names = list(class_names or splits.classes)
    names = _class_labels(_font(names), names)  # "#3 ??" where no installed font draws a name
    top1 = probs.argmax(1)[:len(queries)]
    captions = [str(names[t]) + (f"\nguess: {names[g]}" if g != t else "")
                for t, g in zip(test.labels[queries], top1)]
    return {"predictions": predictions,
            "neighbours": neighbours_image(_centre(np.asarray(test.images[queries]), crop), found, same_class=same,
                                           captions=captions,
                                           title=f"{alike}, each with the training images whose fc7 features are "
                                                 "nearest: what the network sees as alike"),
            "agreement": float(same.mean()), "test_index": picks, "neighbour_index": near, **extra}



def confusion_image(labels, predictions, classes: Sequence[str], *, cell: int = 34,
                    how: str | None = None) -> Image.Image:
    """The confusion matrix: row = true class, column = the model's top-1 class, each with its count written
    in; the diagonal (what it got right) shaded blue by its share of its row (white 0, dark blue 1), the
    mistakes red by their share relative to the most common mistake's.
    Up to CONFUSION_MAX_CLASSES classes. `how` the predictions were made ("ten-crop") goes into the title."""
    cell = B.integer(cell, "cell", low=MIN_CELL)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    k = len(classes)
    if not 1 <= k <= CONFUSION_MAX_CLASSES:
        raise ValueError(f"a confusion matrix of {k} classes is not drawn (at most {CONFUSION_MAX_CLASSES})")
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must be equal 1-d shapes")
    labels, predictions = _class_indices(labels, "labels", k), _class_indices(predictions, "predictions", k)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    titles = ("true class (rows) against predicted class (columns" + (f", {how})" if how else ")"),
              "number: test images; blue: right, by share of the row (framed); red: mistakes, darkest the most common")
    font = _font([*classes, *titles])  # one face for the names and the titles
    titles = tuple(_legible(font, t) for t in titles)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # The margin as wide as the longest name, up to CONFUSION_NAME_WIDTH (names were cut at 130 px, and two with
    # a long common start read the same); longer names cut so that they still differ.
    names = _distinct_fits(probe, font, _class_labels(font, classes), CONFUSION_NAME_WIDTH)
    margin = 12 + int(max(probe.textlength(n, font=font) for n in names))  # room for the longest name
    head = 8 + 14 * len(titles)
    top = head + margin + 4  # the title lines, the column names standing upright, a gap
    # At least as wide as the titles (a 3-class matrix cut them mid-word).
    width = max(margin + k * cell + 10, 8 + int(max(probe.textlength(t, font=font) for t in titles)))
    _check_pixels(width, top + k * cell + 10, f"cell={cell} for {k} classes")
    img = Image.new("RGB", (width, top + k * cell + 10), "white")
    x0 = width - 10 - k * cell  # the matrix's left edge: it and the names flush right under wider titles
    draw = ImageDraw.Draw(img)
    for i, t in enumerate(titles):
        draw.text((4, 4 + 14 * i), t, fill=(0, 0, 0), font=font)
    # Column names: written across a (margin x k*cell) strip, then turned to read upwards from the matrix.
    strip = Image.new("RGB", (margin, k * cell), "white")
    sd = ImageDraw.Draw(strip)
    for i, name in enumerate(names):
        sd.text((6, i * cell + cell // 2 - 6), name, fill=(0, 0, 0), font=font)
        draw.text((x0 - 6 - draw.textlength(name, font=font), top + i * cell + cell // 2 - 6), name,
                  fill=(0, 0, 0), font=font)
    img.paste(strip.rotate(90, expand=True), (x0, head))
    # Mistakes in red on their own scale, the most common darkest and any at least light: on the row's scale one
    # mistake in 100 images was shaded white, and the errors were what one looked for.
    off = share * (1 - np.eye(k))
    worst = off.max() if off.size else 0.0
    for i in range(k):
        for j in range(k):
            if i == j or not counts[i, j]:
                v = share[i, j] if i == j else 0.0
                colour = tuple(int(round(255 - v * (255 - c))) for c in (8, 48, 107))
            else:
                v = 0.25 + 0.5 * share[i, j] / worst  # 0.25-0.75 of the way to dark red: black text stays legible
                colour = tuple(int(round(255 - v * (255 - c))) for c in (165, 15, 21))
                v = 0.0  # (for the text colour below)
            x, y = x0 + j * cell, top + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour,
                           outline=(0, 0, 0) if i == j else (220, 220, 220), width=2 if i == j else 1)
            if counts[i, j]:
                text = str(counts[i, j])
                draw.text((x + (cell - draw.textlength(text, font=font)) / 2, y + cell // 2 - 6), text,
                          fill=(255, 255, 255) if v > 0.5 else (0, 0, 0), font=font)
    return img


def save_test_pictures(model, splits, directory, *, predictions=None, class_names: Sequence[str] | None = None,
                       predicted_by: str | None = None, **figure4) -> dict:
    """Writes predictions.png and neighbours.png (figure4_pictures, which takes the other keywords; with
    mistakes=True mistakes_predictions.png and mistakes_neighbours.png, so the sample's stay) and, given
    `predictions` (each test image's top-1 class, as evaluate(return_predictions=True) gives them) for up to
    CONFUSION_MAX_CLASSES classes, confusion.png into `directory` (predicted_by, such as "ten-crop", in its
    title: eval --center-crop redraws it from other predictions). Returns figure4_pictures' numbers
    ("agreement", and with mistakes=True "mistakes" and "searched") and "paths", the files written."""
    splits = _as_splits(splits)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pictures = figure4_pictures(model, splits, class_names=class_names, **figure4)
    prefix = MISTAKES_PREFIX if figure4.get("mistakes") else ""
    paths = [directory / (prefix + PREDICTIONS_NAME), directory / (prefix + NEIGHBOURS_NAME)]
    pictures["predictions"].save(paths[0])
    pictures["neighbours"].save(paths[1])
    if predictions is not None and splits.num_classes <= CONFUSION_MAX_CLASSES:
        paths.append(directory / CONFUSION_NAME)
        confusion_image(splits.val.labels, predictions, class_names or splits.classes,
                        how=predicted_by).save(paths[-1])
    numbers = {k: v for k, v in pictures.items() if k in ("agreement", "mistakes", "searched")}
    return dict(numbers, paths=[str(p) for p in paths])
