"""pyalexnet eval: top-1 / top-5 error of a checkpoint on a data set's test split."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import positive_int

HELP = "evaluate a checkpoint: top-1 and top-5 error on a data set (the paper's ten-crop test)"
DESCRIPTION = """\
Evaluate a checkpoint written by `pyalexnet train --checkpoint-dir DIR` on a data set's test split (its
official one: CIFAR-10's test_batch, Fashion-MNIST's t10k, the built-in set's, a folder's val/; else the
held-out share). The softmax is averaged over ten patches (four corners, the centre and their
reflections) as in the paper, or taken on the centre crop with --center-crop. The training set's mean
image stored in the checkpoint is subtracted. It also names the five classes it gets wrong most often
(--json: every class's test images, wrong answers and top-1 error, under "per_class").

--pictures also draws the paper's Figure 4: predictions.png (eight test images, each with its true
class and the model's five most probable classes as bars, the true one red) and neighbours.png (five
of them, each followed by the six training images whose fc7 activations are nearest; green frames
share the test image's class). It prints the fraction of those neighbours that share it. For up to 40
classes it also draws confusion.png: the test images' true classes against the model's top-1 ones.
With --mistakes the eight are drawn from the test images the model gets wrong, into
mistakes_predictions.png and mistakes_neighbours.png (the sample's pictures stay).
"""
EPILOG = """\
examples:
  pyalexnet eval runs/a                         # the checkpoint in runs/a, on the data it was trained on
  pyalexnet eval runs/a/checkpoint.npz --data builtin --center-crop
  pyalexnet eval runs/imagenet --data ~/imagenet-store --device cuda --json
  pyalexnet eval runs/a --pictures              # also predictions.png and neighbours.png in runs/a
"""


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("checkpoint", help="a checkpoint file (checkpoint.npz) or the folder holding one")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="the data set (default: the one the checkpoint was trained on)")
    p.add_argument("--center-crop", action="store_true", help="the centre crop only, not the ten-crop average")
    p.add_argument("--batch-size", type=positive_int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0 or cuda:0,cuda:1")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--pictures", nargs="?", const="", default=None, metavar="DIR",
                   help="also draw the paper's Figure 4 (predictions.png, neighbours.png) and, for up to 40 "
                        "classes, confusion.png into DIR (default: the checkpoint's folder)")
    p.add_argument("--mistakes", action="store_true",
                   help="with --pictures: show test images the model gets wrong (centre crop, top-1), drawn "
                        "from 2000 of them, in mistakes_predictions.png and mistakes_neighbours.png")
    p.add_argument("--class-names", default=None, metavar="FILE",
                   help="readable class names for --pictures: lines 'ID name, ...' such as ImageNet's "
                        "synset_words.txt (default: synset_words.txt, LOC_synset_mapping.txt or words.txt in "
                        "the data folder or store, if there is one; prepare copies it into the store)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .. import evaluate, load_checkpoint
    from .._backend import output_folder_problem
    from ..data import class_names_for
    from ..data._names import check_names_file
    from ..training import _count, _load_data, _resolve_devices, check_trained_classes, held_out_settings
    from ..viz import CONFUSION_MAX_CLASSES, NEIGHBOUR_POOL, save_test_pictures

    if args.mistakes and args.pictures is None:
        raise ValueError("--mistakes chooses the images --pictures draws: pass --pictures too")
    # '' was taken for "not given": the checkpoint's data set, the default names, without a word
    if args.data == "":
        raise ValueError("--data needs a data set (builtin, fashion-mnist, cifar10:PATH, an image folder or a store); "
                         "leave it out for the one the checkpoint was trained on")
    if args.class_names is not None:
        check_names_file(args.class_names)  # before loading the data, which can take long
    model, meta = load_checkpoint(args.checkpoint, devices=_resolve_devices(args.device))
    ckpt = Path(args.checkpoint)
    where = None
    if args.pictures is not None:  # checked now, not after the evaluation
        where = Path(args.pictures) if args.pictures else (ckpt if ckpt.is_dir() else ckpt.parent)
        problem = output_folder_problem(where, "--pictures")
        if problem:
            raise ValueError(f"{problem}: pass --pictures DIR naming a folder you can write")
    data = args.data or meta.get("data")
    if not data:  # written by save_checkpoint without train's metadata: the builtin set was a guess
        raise ValueError(f"the checkpoint {args.checkpoint} names no data set (it was not written by pyalexnet "
                         "train --checkpoint-dir): pass --data SPEC (builtin, fashion-mnist, cifar10:PATH, an image "
                         "folder or a prepared store)")
    # The run's held-out images, decode size and mean image (evaluate's settings: load_checkpoint recorded the run on
    # the model). Of a folder's training images only the pictures' sample is decoded: ImageNet's would take 250 GB
    # and hours.
    seed, val_fraction, image_size, mean = held_out_settings(model, data, mean_image=meta.get("mean_image"))
    try:
        splits = _load_data(data, seed=seed, val_fraction=val_fraction,
                            progress=False if args.quiet else None, train_sample=NEIGHBOUR_POOL, image_size=image_size)
    except FileNotFoundError as exc:
        if args.data:
            raise
        # The path came from the checkpoint: the data may have moved since the run.
        raise FileNotFoundError(f"{exc} (the data set {args.checkpoint} was trained on, as its checkpoint records; "
                                "--data PATH evaluates it where the data is now)") from None
    check_trained_classes(meta.get("classes") or None, splits.classes, data)  # before the names, which count them
    names = class_names_for(splits.classes, names_file=args.class_names, data=data)
    confusion = args.pictures is not None and splits.num_classes <= CONFUSION_MAX_CLASSES
    result = evaluate(model, splits, ten_crop=not args.center_crop, batch_size=args.batch_size,
                      mean_image=mean, progress=False if args.quiet else None,
                      return_predictions=True)
    predictions = result.pop("predictions")
    per_class = _per_class(splits.val.labels, predictions, splits.classes, names)
    result = dict(result, data=data, ten_crop=not args.center_crop, per_class=per_class)
    # The results are printed before the pictures are drawn: a picture that cannot be written (a full disk, a
    # folder made read-only meanwhile) must not lose an evaluation that may have taken hours.
    how = "centre crop" if args.center_crop else "ten-crop"
    if not args.json:
        top5 = f", top-5 error {result['top5']:.4f}" if result["top5"] is not None else ""
        print(f"{data} ({how}, {_count(result['images'], 'image')}): top-1 error {result['top1']:.4f}{top5}")
        hardest = sorted((c for c in per_class if c["images"] and c["top1_error"] > 0),
                         key=lambda c: -c["top1_error"])[:HARDEST]  # stable: equal errors in class order
        if hardest and len(per_class) > 2:  # with two classes the overall error says it
            # Counts, not rounded percentages (1 of 400 was "0%"); "; " apart, as names may hold commas.
            print("hardest classes (top-1 errors): " + "; ".join(
                f"{c['name']} {c['wrong']} of {c['images']}" for c in hardest))
        sys.stdout.flush()
    if where is not None:
        try:
            pictures = save_test_pictures(model, splits, where, predictions=predictions if confusion else None,
                                          class_names=names,
                                          predicted_by=how,
                                          mean_image=meta.get("mean_image"), batch_size=args.batch_size,
                                          mistakes=args.mistakes)
        except (OSError, ValueError) as exc:
            if args.json:  # the measurement still comes out, saying why the pictures do not
                print(json.dumps(dict(result, pictures_error=str(exc))))
                sys.stdout.flush()
            raise OSError(f"the pictures could not be drawn ({exc}); the results above were printed") from exc
        if args.mistakes:
            result["mistakes_shown_from"] = {k: pictures[k] for k in ("mistakes", "searched")}
        result["pictures"], result["neighbour_agreement"] = pictures["paths"], pictures["agreement"]
    if args.json:
        print(json.dumps(result))
    else:
        if args.mistakes:
            m = result["mistakes_shown_from"]
            print(f"the pictures show mistakes: {m['mistakes']} among {m['searched']} test images (centre crop)"
                  if m["mistakes"] else f"no mistakes among {m['searched']} test images: the pictures show a sample")
        if args.pictures is not None:
            print(f"wrote {', '.join(result['pictures'])}; "
                  f"{100 * result['neighbour_agreement']:.0f}% of the nearest training images share their "
                  f"test image's class")
    return 0


HARDEST = 5  # classes named in the text output, the most often wrong first


def _per_class(labels, predictions, classes, names) -> list[dict]:
    """Each class's test images, how many of them have a wrong top-1 class, and that fraction (None without
    images)."""
    import numpy as np

    labels, predictions = np.asarray(labels), np.asarray(predictions)
    images = np.bincount(labels, minlength=len(classes))
    wrong = np.bincount(labels[predictions != labels], minlength=len(classes))
    return [{"class": str(classes[c]), "name": str(names[c]), "images": int(images[c]), "wrong": int(wrong[c]),
             "top1_error": float(wrong[c] / images[c]) if images[c] else None} for c in range(len(classes))]
