"""ReLU and the SGD update."""
from __future__ import annotations

import numpy as np

from .. import _backend as B
from .._backend import _C


def relu(x):
    """max(0, x), element-wise; a NaN passes through (as numpy's maximum and PyTorch's relu), -0 gives +0."""
    x = B.as_input(x, "x")
    with B.launch(x) as l:
        y = l.xp.empty_like(x)
        _C.relu_forward(x, y, l.stream)
    return y


def relu_backward(dy, y):
    """dy where the forward output y > 0, else 0."""
    dy, y = B.as_input(dy, "dy"), B.as_input(y, "y")
    with B.launch(dy, y) as l:
        dx = l.xp.empty_like(dy)
        _C.relu_backward(dy, y, dx, l.stream)
    return dx


def sgd_update(w, dw, v, *, lr, momentum=0.9, weight_decay=5e-4) -> None:
    """In place, the paper's rule: v = momentum*v - weight_decay*lr*w - lr*dw; w += v.

    `w` and `v` are updated in place, so they must already be C-contiguous
    float32 arrays (numpy or CuPy); `dw` is converted if needed. `w`, `dw` and `v`
    may also be lists (or tuples) of as many arrays each, a model's parameters,
    their gradients and velocities: one call updates them all, in one pass (a
    single kernel launch per 32 parameters on the GPU) and with one call's Python
    cost instead of one per parameter. No array may overlap one that is written.
    """
    many = isinstance(w, (list, tuple))
    if many:
        for name, seq in (("dw", dw), ("v", v)):
            if not isinstance(seq, (list, tuple)):
                # A list of numbers is w's mistake, not "so 'dw' must be a list too" (checked only here: off the
                # per-step path)
                bad = next((a for a in w if not isinstance(a, np.ndarray) and not B.is_gpu_array(a)), None)
                if bad is not None:
                    raise TypeError(f"'w' is updated in place, so it must be a float32 array or a list of them; its "
                                    f"list holds a {type(bad).__name__}")
                raise TypeError(f"w is a list of {len(w)} arrays, so '{name}' must be a list too, got {type(seq).__name__}")
        if not len(w) == len(dw) == len(v):
            raise ValueError(f"w, dw and v must be as many arrays each, got {len(w)}, {len(dw)} and {len(v)}")
        ws, dws, vs = w, list(dw), v
    else:
        ws, dws, vs = (w,), [dw], (v,)
    lr, momentum, weight_decay = (B.real_number(lr, "lr"), B.real_number(momentum, "momentum"),
                                  B.real_number(weight_decay, "weight_decay"))
    # The common case (float32, contiguous: numpy or CuPy) costs one test a gradient; as_input converts the rest
    # (numpy arrays alone passed it: on a GPU every step paid as_input for every tensor). The bindings refuse
    # what is neither numpy's nor a CUDA array.
    for i, d in enumerate(dws):
        flags = getattr(d, "flags", None)
        if not (getattr(d, "dtype", None) == np.float32 and getattr(flags, "c_contiguous", False)
                and getattr(flags, "aligned", True) and not isinstance(d, np.generic)):
            dws[i] = B.as_input(d, f"dw[{i}]" if many else "dw")
    # The bindings check dtypes, shapes, devices and overlaps; launch only picks the backend and stream.
    with B.launch(*ws, *dws, *vs) as l:
        _C.sgd_update(ws, dws, vs, lr, momentum, weight_decay, many, l.stream)
