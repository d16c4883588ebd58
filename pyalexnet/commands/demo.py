"""pyalexnet demo: a short run of the ops on the best backend available."""
import time

import numpy as np

HELP = "run a short demonstration of the kernels (ReLU and the paper's SGD update)"


def add_arguments(p):
    p.add_argument("--steps", type=int, default=200, help="SGD steps on a toy least-squares problem")


def run(args) -> int:
    from .. import backend_info, cuda_available, ops
    from .info import format_info

    print(format_info(backend_info()))
    xp = np
    if cuda_available():
        import cupy as xp
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((1 << 22,)).astype(np.float32))
    t = time.perf_counter()
    y = ops.relu(x)
    float(y.sum())
    print(f"\nrelu on {x.size:,} values: {time.perf_counter() - t:.4f} s, {float((y > 0).mean()):.3f} positive")
    # Least squares with ReLU features, trained with the paper's momentum SGD.
    a = xp.asarray(rng.standard_normal((256, 64)).astype(np.float32))
    w_true = xp.asarray(rng.standard_normal((64,)).astype(np.float32))
    target = ops.relu(a) @ w_true
    w = xp.zeros(64, dtype=xp.float32)
    v = xp.zeros_like(w)
    feats = ops.relu(a)
    for step in range(args.steps + 1):
        err = feats @ w - target
        if step % max(1, args.steps // 4) == 0:
            print(f"  sgd step {step:4d}: mean squared error {float((err ** 2).mean()):.5f}")
        grad = (feats.T @ err / len(err)).astype(xp.float32)
        ops.sgd_update(w, grad, v, lr=0.01, momentum=0.9, weight_decay=0.0)
    return 0
