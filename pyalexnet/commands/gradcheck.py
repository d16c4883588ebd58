"""pyalexnet gradcheck: finite-difference checks of every layer's backward and of a tiny network."""
from __future__ import annotations

from . import positive_int
from ..gradcheck import LAYER_TOL, NETWORK_TOL

HELP = "check every layer's gradients (and a tiny two-tower network's) against finite differences"
DESCRIPTION = """\
Compare the analytic gradients of every layer type (conv, grouped conv, linear, ReLU, LRN, max-pool,
dropout with a fixed mask, softmax cross-entropy) and of a tiny two-tower AlexNet with central finite
differences, on the chosen backend, and print a table. Exit status 1 if any check fails.

The kernels compute in float32, so the criterion suits float32: a point passes when
|analytic - numeric| <= tol * max(|analytic|, |numeric|, 1% of the largest gradient compared) plus a
round-off allowance; points where the step crosses a kink (a ReLU input changing sign, a pooling
window changing its maximum) are skipped, as Caffe's gradient checker does. A NaN or infinite
analytic gradient anywhere in a tensor fails it.
"""
EPILOG = """\
examples:
  pyalexnet gradcheck                 # CPU backend
  pyalexnet gradcheck --device cuda   # the CUDA backend
  pyalexnet gradcheck --seed 3       # other random inputs (and network points)
"""


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="backend to check (default: cpu)")
    p.add_argument("--points", type=positive_int, default=None,
                   help="elements checked per gradient tensor (default: every element of the layers' small tensors, "
                        "6 in the network check; given, the network check takes a quarter, at least 2: each point "
                        "costs whole forward passes)")
    p.add_argument("--tol", type=float, default=None,
                   help=f"relative tolerance (default: {LAYER_TOL:g} for the layers, where a backward 1%% off fails, "
                        f"{NETWORK_TOL:g} for the network, whose float32 forward runs through 20 layers)")
    p.add_argument("--seed", type=int, default=0, help="random inputs and points, >= 0 (default: 0)")
    p.add_argument("--layers-only", action="store_true", help="skip the whole-network check")


def run(args) -> int:
    from ..gradcheck import ROUNDING_ULPS, format_table, run_all

    if args.tol is not None and not args.tol > 0:
        raise ValueError(f"--tol must be positive, got {args.tol}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    results = run_all(args.device, points=args.points, tol=args.tol, seed=args.seed, network=not args.layers_only)
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    # The criterion with its numbers: a table of errors and "pass" did not say against what tolerance.
    tols = sorted({r.tol for r in results})
    tol = " or ".join(f"{t:g}" for t in tols) + (" (layers, network)" if len(tols) > 1 else "")
    print(f"\ncriterion: central differences of a float64-summed loss; a point passes when |analytic - numeric| <= "
          f"tol {tol} x max(|analytic|, |numeric|, 1% of the largest compared) + {ROUNDING_ULPS} float32 ulps "
          "of the loss over the step (error/allowed <= 1); a NaN or infinite analytic value fails its tensor")
    print(f"{len(results) - len(failed)} of {len(results)} gradient checks passed on the {args.device} backend"
          + (f"; FAILED: {', '.join(sorted({r.check + ' ' + r.tensor for r in failed}))}" if failed else ""))
    zeros = [r for r in results if r.passed and r.zeros_only]
    if zeros:
        print(f"note: {len(zeros)} check{'s' * (len(zeros) != 1)} compared only zero gradients, where a wrong value cannot show "
              f"({', '.join(r.check + ' ' + r.tensor for r in zeros)}): more --points, or another --seed, tries more")
    points = sum(r.points for r in results)
    roundoff = sum(r.roundoff for r in results)
    if args.tol is not None and roundoff > points / 2:  # a --tol below round-off tightens nothing: said
        print(f"note: at {roundoff} of {points} points float32 round-off (16 ulps of the loss over the step) allowed "
              f"more than --tol {tol} did, so --tol decided little there: the error/allowed column is the "
              "criterion applied")
    return 1 if failed else 0
