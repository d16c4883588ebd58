"""pyalexnet predict: a trained checkpoint's top-5 classes for image files."""
from __future__ import annotations

import json
import sys

from . import positive_int

HELP = "classify image files with a trained checkpoint: its five most probable classes for each"
DESCRIPTION = """\
Classify image files with a checkpoint written by `pyalexnet train --checkpoint-dir DIR`. Each image is
prepared as the training images were (shorter side resized to the training images' size, centre crop,
the training set's mean image subtracted) and the softmax is averaged over the paper's ten patches (or
taken on the centre crop with --center-crop). A folder stands for the image files in it and its
sub-folders, in name order. Unreadable files are reported and skipped (exit status 1).
"""
EPILOG = """\
examples:
  pyalexnet predict runs/a photo.jpg
  pyalexnet predict runs/imagenet ~/Pictures/*.jpg --top 3 --class-names ~/imagenet/synset_words.txt
  pyalexnet predict runs/a photo.jpg --json
  pyalexnet predict runs/a ~/holiday/                # every image in the folder
  pyalexnet predict runs/a ~/holiday/ --picture guesses.png  # and a picture: each image with its bars
"""
PICTURE_MAX = 48  # images a --picture shows: beyond that a panel per image makes a picture nobody reads


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("checkpoint", help="a checkpoint file (checkpoint.npz) or the folder holding one")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads) or folders of them")
    p.add_argument("--top", type=positive_int, default=5, help="classes to show per image (default: 5)")
    p.add_argument("--center-crop", action="store_true", help="the centre crop only, not the ten-crop average")
    p.add_argument("--class-names", default=None, metavar="FILE",
                   help="readable class names: lines 'ID name, ...' such as ImageNet's synset_words.txt "
                        "(default: such a file in the data folder or store the checkpoint was trained on)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0 or cuda:0,cuda:1")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--picture", default=None, metavar="FILE",
                   help=f"also draw the images (the first {PICTURE_MAX}) with their most probable classes as bars "
                        "into FILE (.png or .jpg)")


def run(args) -> int:
    import numpy as np

    from .. import load_checkpoint
    from ..data import class_names_for
    from ..data._names import check_names_file
    from ..training import _resolve_devices, ten_crop_probabilities

    picture = _picture_path(args.picture) if args.picture is not None else None  # checked before the work
    if "" in args.images:  # '' was the current folder: every image under it classified
        raise ValueError("an IMAGE argument is empty: give image files or folders (. for the current folder)")
    if args.class_names is not None:
        check_names_file(args.class_names)  # before loading the checkpoint
    model, meta = load_checkpoint(args.checkpoint, devices=_resolve_devices(args.device))
    mean = meta.get("mean_image")
    if mean is None:
        raise ValueError(f"{args.checkpoint} has no training mean image to subtract: it was not written by train()")
    classes = meta.get("classes") or [str(c) for c in range(model.num_classes)]
    names = class_names_for(classes, names_file=args.class_names, data=meta.get("data"))
    size = mean.shape[0]
    files, failed = _image_files(args.images)
    shown, read = [], 0  # (path, image, probabilities) of the first PICTURE_MAX images, for --picture
    for start in range(0, len(files), args.batch_size):  # a batch of images per forward pass
        paths, images = [], []
        for path in files[start:start + args.batch_size]:
            image, error = _decode_naming_large(path, size)
            if image is None:
                print(f"pyalexnet predict: cannot read {path}: {error}", file=sys.stderr)
                failed += 1
            else:
                paths.append(path)
                images.append(image)
        if not images:
            continue
        probs = ten_crop_probabilities(model, np.stack(images), mean, ten_crop=not args.center_crop)
        read += len(images)
        if picture is not None:
            shown += list(zip(paths, images, probs))[:PICTURE_MAX - len(shown)]
        for path, p in zip(paths, probs):
            best = np.argsort(-p, kind="stable")[:args.top]
            if args.json:
                print(json.dumps({"image": path, "top": [{"class": str(classes[c]), "name": names[c],
                                                          "probability": float(p[c])} for c in best]}))
            else:
                print(f"{path}: " + ", ".join(f"{names[c]} {100 * p[c]:.1f}%" for c in best))
    if picture is not None:
        _draw(picture, shown, names, args, readable=read)
    return 1 if failed else 0


def _decode_naming_large(path: str, size: int):
    """_decode_or_none, with Pillow's warning for an image over MAX_IMAGE_PIXELS ("Image size (108000000
    pixels) exceeds limit ...", which names no file) said with the file's name instead, as training says it
    (here, in one thread, Pillow's own is left out)."""
    import warnings

    from PIL import Image

    from ..data._folder import _decode_noting_large, warn_large_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image, error, large = _decode_noting_large(path, size)
    if large:
        warn_large_image(path, large)
    return image, error


def _picture_path(text: str):
    import io
    from pathlib import Path

    from PIL import Image

    path = Path(text).expanduser()
    if path.is_dir():
        raise ValueError(f"--picture {path} is a folder: give a file name such as {path / 'predictions.png'}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    try:  # a format Pillow only reads (.psd) or cannot write in RGB (.xbm) failed after the classifying
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=fmt)
    except (KeyError, ValueError, OSError, TypeError):
        raise ValueError(f"--picture {path}: say a format Pillow can write by the file's ending (.png or .jpg)") \
            from None
    if not path.parent.is_dir():
        raise ValueError(f"--picture {path}: the folder {path.parent} does not exist")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: not a picture file
        raise ValueError(f"--picture {path} is not a regular file: give a file name such as predictions.png")
    from .._backend import output_folder_problem

    problem = output_folder_problem(path.parent, "--picture's folder")  # found after the classifying (/proc/x.png)
    if problem:
        raise ValueError(f"{problem}: give --picture a file in a folder you can write")
    return path


def _draw(picture, shown, names, args, readable: int) -> None:
    from pathlib import Path

    import numpy as np

    from ..viz import predictions_image

    if not shown:
        print(f"pyalexnet predict: no image could be read, so no picture was drawn ({picture})", file=sys.stderr)
        return
    how = "centre crop" if args.center_crop else "ten-crop"
    top = min(args.top, len(names))
    title = (f"{args.checkpoint}: each image's {top} most probable classes ({how})"
             + (f"; the first {len(shown)} images of {readable}" if readable > len(shown) else ""))
    names_only = [Path(path).name for path, _, _ in shown]
    # The file's name, with its folder's where two share a name (a/0.png, b/0.png).
    captions = names_only if len(set(names_only)) == len(names_only) else \
        ["/".join(Path(path).parts[-2:]) for path, _, _ in shown]
    predictions_image(np.stack([image for _, image, _ in shown]), None, np.stack([p for _, _, p in shown]), names,
                      top=top, title=title, captions=captions).save(picture)
    print(f"wrote {picture}" + (f" (the first {len(shown)} of {readable} images)" if readable > len(shown) else ""),
          file=sys.stderr if args.json else sys.stdout)  # --json keeps stdout one object per line


def _image_files(arguments) -> tuple[list[str], int]:
    """The files to classify: each argument, or a folder's image files (recursively, sorted); and how many
    arguments gave none (a folder without images, a path that is not a regular file: said on stderr)."""
    from pathlib import Path

    from ..data._folder import IMAGE_EXTENSIONS, _is_image, visible_paths

    files, empty = [], 0
    for argument in arguments:
        if Path(argument).exists() and not Path(argument).is_dir() and not Path(argument).is_file():
            # A FIFO waited for a writer for ever: said and skipped, as an unreadable file is
            print(f"pyalexnet predict: cannot read {argument}: not a regular file", file=sys.stderr)
            empty += 1
            continue
        if not Path(argument).is_dir():
            files.append(argument)
            continue
        found = sorted(str(p) for p in visible_paths(Path(argument)) if _is_image(p))
        if not found:
            print(f"pyalexnet predict: {argument} holds no image files (looked for "
                  f"{', '.join(sorted(IMAGE_EXTENSIONS))})", file=sys.stderr)
            empty += 1
        files += found
    return files, empty
