"""pyalexnet eval: top-1 / top-5 error of a checkpoint on a data set's test split."""
from __future__ import annotations

import json

HELP = "evaluate a checkpoint: top-1 and top-5 error on a data set (the paper's ten-crop test)"
DESCRIPTION = """\
Evaluate a checkpoint written by `pyalexnet train --checkpoint-dir DIR` on a data set's test split (its
official one: CIFAR-10's test_batch, Fashion-MNIST's t10k, the built-in set's, a folder's val/; else the
held-out share). The softmax is averaged over ten patches (four corners, the centre and their
reflections) as in the paper, or taken on the centre crop with --center-crop. The training set's mean
image stored in the checkpoint is subtracted.
"""
EPILOG = """\
examples:
  pyalexnet eval runs/a                         # the checkpoint in runs/a, on the data it was trained on
  pyalexnet eval runs/a/checkpoint.npz --data builtin --center-crop
  pyalexnet eval runs/imagenet --data ~/imagenet-store --device cuda --json
"""


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("checkpoint", help="a checkpoint file (checkpoint.npz) or the folder holding one")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="the data set (default: the one the checkpoint was trained on)")
    p.add_argument("--center-crop", action="store_true", help="the centre crop only, not the ten-crop average")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0 or cuda:0,cuda:1")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from .. import evaluate, load_checkpoint
    from ..training import _resolve_devices

    model, meta = load_checkpoint(args.checkpoint, devices=_resolve_devices(args.device))
    data = args.data or meta.get("data") or "builtin"
    result = evaluate(model, data, ten_crop=not args.center_crop, batch_size=args.batch_size,
                      mean_image=meta.get("mean_image"))
    result = dict(result, data=data, ten_crop=not args.center_crop)
    if args.json:
        print(json.dumps(result))
    else:
        how = "centre crop" if args.center_crop else "ten-crop"
        print(f"{data} ({how}, {result['images']} images): top-1 error {result['top1']:.4f}, "
              f"top-5 error {result['top5']:.4f}")
    return 0
