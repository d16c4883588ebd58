"""pyalexnet predict: a trained checkpoint's top-5 classes for image files."""
from __future__ import annotations

import json
import sys

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
"""


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("checkpoint", help="a checkpoint file (checkpoint.npz) or the folder holding one")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads) or folders of them")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (default: 5)")
    p.add_argument("--center-crop", action="store_true", help="the centre crop only, not the ten-crop average")
    p.add_argument("--class-names", default=None, metavar="FILE",
                   help="readable class names: lines 'ID name, ...' such as ImageNet's synset_words.txt "
                        "(default: such a file in the data folder or store the checkpoint was trained on)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0 or cuda:0,cuda:1")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")


def run(args) -> int:
    import numpy as np

    from .. import load_checkpoint
    from ..data import class_names_for
    from ..data._folder import _decode_or_none
    from ..training import _resolve_devices, ten_crop_probabilities

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, meta = load_checkpoint(args.checkpoint, devices=_resolve_devices(args.device))
    mean = meta.get("mean_image")
    if mean is None:
        raise ValueError(f"{args.checkpoint} has no training mean image to subtract: it was not written by train()")
    classes = meta.get("classes") or [str(c) for c in range(model.num_classes)]
    names = class_names_for(classes, names_file=args.class_names, data=meta.get("data"))
    size = mean.shape[0]
    files, failed = _image_files(args.images)
    for start in range(0, len(files), args.batch_size):  # a batch of images per forward pass
        paths, images = [], []
        for path in files[start:start + args.batch_size]:
            image, error = _decode_or_none(path, size)
            if image is None:
                print(f"pyalexnet predict: cannot read {path}: {error}", file=sys.stderr)
                failed += 1
            else:
                paths.append(path)
                images.append(image)
        if not images:
            continue
        probs = ten_crop_probabilities(model, np.stack(images), mean, ten_crop=not args.center_crop)
        for path, p in zip(paths, probs):
            best = np.argsort(-p, kind="stable")[:args.top]
            if args.json:
                print(json.dumps({"image": path, "top": [{"class": str(classes[c]), "name": names[c],
                                                          "probability": float(p[c])} for c in best]}))
            else:
                print(f"{path}: " + ", ".join(f"{names[c]} {100 * p[c]:.1f}%" for c in best))
    return 1 if failed else 0


def _image_files(arguments) -> tuple[list[str], int]:
    """The files to classify: each argument, or a folder's image files (recursively, sorted); and how many
    arguments gave none (a folder without images, said on stderr)."""
    from pathlib import Path

    from ..data._folder import IMAGE_EXTENSIONS, _is_image

    files, empty = [], 0
    for argument in arguments:
        if not Path(argument).is_dir():
            files.append(argument)
            continue
        found = sorted(str(p) for p in Path(argument).rglob("*") if _is_image(p))
        if not found:
            print(f"pyalexnet predict: {argument} holds no image files (looked for "
                  f"{', '.join(sorted(IMAGE_EXTENSIONS))})", file=sys.stderr)
            empty += 1
        files += found
    return files, empty
