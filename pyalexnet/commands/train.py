"""pyalexnet train: train AlexNet with the paper's SGD (pyalexnet.train())."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from . import positive_int

HELP = "train AlexNet (with no options: the small network on the built-in data set, a few minutes on a CPU)"
DESCRIPTION = """\
Train the two-tower AlexNet with the paper's momentum SGD, then print the validation errors.

With no options it trains the small preset on the built-in synthetic data set (10 classes of shapes
and textures, generated in the package, no download), which takes a few minutes on two CPU cores.
Point --data at your own images to train on them: the network size follows the crop size (the small
preset below 96 px, the paper's network from there up).

Data (--data):
  builtin               the built-in synthetic set (40x40 images, 32x32 crops)
  fashion-mnist[:PATH]  Fashion-MNIST (Debian's dataset-fashion-mnist, or its folder)
  cifar10:PATH          CIFAR-10's python version: the downloaded cifar-10-python.tar.gz as it is,
                        or the folder of its batches (data_batch_1..5, test_batch) or the one above
  FOLDER                images in FOLDER/<class>/<image> (or FOLDER/train and FOLDER/val)
  STORE                 a store written by `pyalexnet prepare` (fast for big folders)
"""
EPILOG = """\
examples:
  pyalexnet train                                   # small network, built-in data, CPU or GPU
  pyalexnet train --epochs 2 --checkpoint-dir runs/a
  pyalexnet train --checkpoint-dir runs/a --resume  # continue runs/a exactly where it stopped
  pyalexnet train --data ~/imagenet-store --device cuda:0,cuda:1 --checkpoint-dir runs/imagenet
  pyalexnet train --data cifar10:~/cifar-10-batches-py --epochs 40 --schedule 25,35 --lr 0.01
  pyalexnet eval runs/a                             # ten-crop top-1 / top-5 error of the checkpoint
"""


def _schedule(text: str):
    if text in ("plateau", "constant"):
        return text
    try:
        epochs = [int(e) for e in text.split(",") if e.strip()]
    except ValueError:  # argparse shows an ArgumentTypeError's words ("invalid _schedule value" otherwise)
        raise argparse.ArgumentTypeError(f"must be 'plateau', 'constant' or epochs like 30,60,80, got {text!r}") from None
    if not epochs:  # "" and "," were a constant rate without a word
        raise argparse.ArgumentTypeError(f"no epochs in {text!r}: give 'constant' for a constant rate, or epochs like "
                                         "30,60,80")
    repeated = sorted({e for e in epochs if epochs.count(e) > 1})
    if repeated:  # 1,1 divided the rate by 100 at epoch 1
        raise argparse.ArgumentTypeError(f"epoch {repeated[0]} is listed more than once (each divides the lr by 10), "
                                         f"got {text!r}")
    return epochs


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="the data set: builtin, fashion-mnist, cifar10:PATH, a folder or a store (default: builtin; "
                        "a resumed run's own)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs to train (default: 90 for the paper's "
                   "network, 15 for the small one)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per SGD step (default: 128; 32 for the small network)")
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default: 0.01; 0.005 for the small network)")
    p.add_argument("--momentum", type=float, default=None, help="SGD momentum (default: 0.9; a resumed run's own)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay (default: 0.0005; a resumed run's own)")
    p.add_argument("--decay-biases", action=argparse.BooleanOptionalAction, default=None,
                   help="weight decay on the biases too (default: the weights only, as cuda-convnet and Caffe's "
                        "AlexNet; PyTorch's SGD decays every parameter; a resumed run's own)")
    p.add_argument("--schedule", type=_schedule, default=None,
                   help="'plateau' (lr / 10 when validation error stops improving, at most 3 times), "
                        "'constant', or epochs (0-based) at whose start lr is divided by 10, e.g. 30,60,80 "
                        "(default: plateau for the paper's network, 10,13 for the small one)")
    p.add_argument("--patience", type=positive_int, default=None, help="plateau: epochs without improvement before lr / 10 (default 2)")
    p.add_argument("--preset", choices=["paper", "small", "tiny"], default=None,
                   help="network size: paper (the 2012 network, 224-px crops), small (narrower, for crops under 96 "
                        "px), tiny (2-5 channels a layer: for gradient checks and tests; it learns little) (default: from the crop size)")
    p.add_argument("--init", choices=["paper", "caffe", "he"], default=None,
                   help="initialisation: paper (N(0,0.01), bias 1), caffe (bias 0.1), he (default: per preset)")
    p.add_argument("--device", default="auto",
                   help="auto (every GPU, else the CPU), cpu, cuda, cuda:0, or cuda:0,cuda:1 (one tower per GPU)")
    p.add_argument("--seed", type=int, default=None,
                   help="seeds the weights, the data order, augmentation and dropout (default: 0; a resumed run's own)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="write DIR/checkpoint.npz, history.jsonl, curves.png and conv1_filters.png after every "
                        "epoch, and at the end predictions.png, neighbours.png and (up to 40 classes) confusion.png")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir's checkpoint, with its schedule; an --lr "
                   "other than the run's starting rate sets the rate from then on")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --checkpoint-dir that already holds one (else refused)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps within an epoch")
    p.add_argument("--history", default=None, metavar="FILE", help="per-epoch figures as JSON lines (default: "
                   "DIR/history.jsonl with --checkpoint-dir)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="stop after N SGD steps (a quick try-out; --resume continues the run)")
    p.add_argument("--workers", type=int, default=2, help="data loader threads (default: 2)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of each class held out for validation in a folder without val/ (default: 0.1; a "
                        "resumed run's own)")
    p.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                   help="side an image folder's images are decoded to (default: 256, the paper's, cropped to 224; "
                        "109 or less trains the small network, e.g. 64 for a folder of small images; a resumed run's "
                        "own)")
    p.add_argument("--no-ten-crop", action="store_true", help="final evaluation on the centre crop only")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def run(args) -> int:
    from .. import TrainingDiverged, evaluate, train

    if args.checkpoint_dir == "":  # '' wrote the checkpoint and pictures into the current folder without a word
        raise ValueError("--checkpoint-dir needs a folder (--checkpoint-dir . for the current one)")
    if args.resume and not args.checkpoint_dir:  # train() would say it with its own argument names
        raise ValueError("--resume needs --checkpoint-dir, the folder of the run to continue")
    if args.history is not None:
        _check_history(args.history)
    try:
        result = train(args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                       weight_decay=args.weight_decay, decay_biases=args.decay_biases, schedule=args.schedule,
                       patience=args.patience,
                       preset=args.preset, init=args.init, device=args.device, seed=args.seed,
                       checkpoint_dir=args.checkpoint_dir, resume=args.resume, overwrite=args.overwrite,
                       checkpoint_every=args.checkpoint_every,
                       history=args.history, workers=args.workers, stop_after_steps=args.steps, val_fraction=args.val_fraction,
                       image_size=args.image_size,
                       progress=False if args.quiet else None, verbose=not args.quiet)
    except TrainingDiverged as exc:
        print(f"pyalexnet train: training diverged: {exc}", file=sys.stderr)
        return 3
    stage = ["evaluating"]  # what a Ctrl-C stopped (it said "evaluating" while the pictures were drawn)
    try:
        return _evaluate_and_draw(args, result, evaluate, stage)
    except KeyboardInterrupt:
        if not result.checkpoint:
            raise KeyboardInterrupt("while evaluating the trained model; nothing was saved (--checkpoint-dir keeps "
                                    "a run)") from None  # (no pictures are drawn without a checkpoint_dir)
        folder = shlex.quote(str(Path(result.checkpoint).parent))
        raise KeyboardInterrupt(f"while {stage[0]}; the trained model is saved in {result.checkpoint}: `pyalexnet "
                                f"eval {folder} --pictures` evaluates it and draws its pictures") from None


def _check_history(history: str) -> None:
    """Refuses a --history file that cannot take the run's rows, before the training (a FIFO without a reader
    waited for ever; a folder that cannot be made said only "[Errno 2] No such file or directory")."""
    from .._backend import output_folder_problem

    if not history:
        raise ValueError("--history needs a file name, such as runs/a/history.jsonl")
    path = Path(history)
    if path.exists() and not path.is_dir() and not path.is_file() and not path.is_char_device():  # /dev/null is fine
        raise ValueError(f"--history {history} is not a regular file (a FIFO or socket): give a file name")
    if path.is_char_device() or (path.is_file() and os.access(path, os.W_OK)):
        return  # written in place: its folder need not take new files (/dev, for anyone but root)
    problem = output_folder_problem(path.parent, "--history's folder")
    if problem:
        raise ValueError(f"{problem}: give --history a file in a folder you can write")


def _evaluate_and_draw(args, result, evaluate, stage: list) -> int:
    from ..training import _count, reports_top5
    from ..viz import CONFUSION_MAX_CLASSES, CURVES_NAME, FILTERS_NAME, save_test_pictures

    final = evaluate(result.model, result.data, ten_crop=not args.no_ten_crop, mean_image=result.mean_image,
                     progress=False if args.quiet else None,
                     return_predictions=bool(result.checkpoint) and result.data.num_classes <= CONFUSION_MAX_CLASSES)
    how = "centre crop" if args.no_ten_crop else "ten-crop"
    chance = 1 - 1 / result.model.num_classes
    top5 = f", top-5 error {final['top5']:.3f}" if reports_top5(result.model.num_classes) else ""
    print(f"validation ({how}, {_count(final['images'], 'image')}): top-1 error {final['top1']:.3f}{top5} "
          f"(chance: top-1 error {chance:.3f})")
    if not result.checkpoint:
        print("nothing was saved: --checkpoint-dir DIR keeps the model, its curves and pictures (for pyalexnet "
              "eval DIR / predict DIR)", file=sys.stderr)
    else:
        from ..data import class_names_for

        folder = Path(result.checkpoint).parent
        print(f"checkpoint: {result.checkpoint}")
        for name, what in ((CURVES_NAME, "training curves"), (FILTERS_NAME, "conv1 filters, tower a above tower b")):
            if (folder / name).exists():
                print(f"{what}: {folder / name}")
        stage[0] = "drawing the test pictures"
        pictures = save_test_pictures(result.model, result.data, folder, predictions=final.get("predictions"),
                                      predicted_by=how, mean_image=result.mean_image,
                                      class_names=class_names_for(result.data.classes, data=result.data.source))
        guesses = min(5, result.model.num_classes)  # predictions.png draws as many bars as there are classes, up to 5
        print(f"test images, top-{guesses} guesses, nearest training images (the paper's Figure 4)"
              + (" and the confusion matrix" if len(pictures["paths"]) > 2 else "") + ": "
              + ", ".join(pictures["paths"]) + f"; its mistakes (mistakes_*.png): pyalexnet eval "
              f"{shlex.quote(str(folder))} --pictures --mistakes")
    return 0
