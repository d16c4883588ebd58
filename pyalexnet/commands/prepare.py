"""pyalexnet prepare: decode an image folder once into a packed store that training memory-maps."""
from . import positive_int

HELP = "convert an image folder (root/<class>/<image>, or root/train and root/val) into a packed store"
DESCRIPTION = """\
Decodes every image of SRC once (shorter side resized to --size, centre crop, RGB) into DST:
uint8 arrays read by memory map, labels, class names, and the training set's mean image and RGB
covariance eigenvectors (for PCA lighting). Streams: memory use does not grow with the data set.
Unreadable images are skipped with a warning and listed in DST/meta.json.

Interrupted? Run the same command again: it continues from the last checkpoint (every --checkpoint-every
images). Train from the store with `pyalexnet train --data DST` or pyalexnet.data.load_dataset("DST").
"""


def add_arguments(p):
    p.add_argument("src", help="image folder: SRC/<class>/<image>, or SRC/train/<class>/... and SRC/val/<class>/...")
    p.add_argument("dst", help="folder to write the store to (new, or an interrupted store of the same SRC)")
    p.add_argument("--size", type=int, default=256, help="stored square size (default 256, the paper's)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of each class held out for validation when SRC has no train/val folders (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="chooses the held-out images (default 0)")
    p.add_argument("--workers", type=int, default=0, help="decoding threads (default 0: the CPU count, at most 8)")
    p.add_argument("--checkpoint-every", type=positive_int, default=1000, metavar="K",
                   help="save progress every K images (default 1000)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store of another source")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .. import _backend as B
    from ..data import crop_size_for, open_store, prepare, smallest_image_size

    if args.size < 1:
        raise ValueError(f"--size must be positive, got {args.size}")
    if args.seed < 0:  # was numpy's "expected non-negative integer", naming no option
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 0:  # 0 is the default, the CPU count: "at least 1" would have refused it
        raise ValueError(f"--workers must be >= 0 (0: the CPU count, at most 8), got {args.workers}")
    smallest = min(smallest_image_size(p) for p in ("small", "tiny", "paper"))
    if args.size < smallest:  # a warning, not a refusal: the store is still data (pyalexnet.data reads it)
        B.warn_user(f"--size {args.size} gives {crop_size_for(args.size)}x{crop_size_for(args.size)} crops, too "
                    f"small for any network pyalexnet train builds (their maps vanish before fc6): at least "
                    f"{smallest} to train on the store", UserWarning)
    try:
        dst = prepare(args.src, args.dst, image_size=args.size, val_fraction=args.val_fraction, seed=args.seed,
                      checkpoint_every=args.checkpoint_every, workers=args.workers or None, quiet=args.quiet,
                      overwrite=args.overwrite)
    except KeyboardInterrupt:  # "interrupted" alone left the user to guess whether the work was lost
        raise KeyboardInterrupt(f"the same command again goes on where {args.dst} stopped (its progress is saved "
                                f"every {args.checkpoint_every} images)") from None
    s = open_store(dst)
    print(f"{dst}: {len(s.train)} training and {len(s.val)} validation images of {s.image_size}x{s.image_size}, "
          f"{s.num_classes} classes, {s.num_skipped} unreadable skipped")
    return 0
