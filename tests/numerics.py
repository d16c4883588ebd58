"""Helpers for checking ops: central finite differences in float64."""
import numpy as np


def numeric_grad(f, x, dy, eps=1e-3):
    """d(sum(f(x) * dy))/dx by central differences, element by element, in float64.

    `f` maps a float64 array to an array; `x` is not modified.
    """
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = np.sum(np.asarray(f(x), dtype=np.float64) * dy)
        flat[i] = orig - eps
        minus = np.sum(np.asarray(f(x), dtype=np.float64) * dy)
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return g
