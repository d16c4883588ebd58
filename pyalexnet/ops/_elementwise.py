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
    float32 arrays (numpy or CuPy); `dw` is converted if needed.
    """
    for name, a in (("w", w), ("v", v)):
        if not (B.is_gpu_array(a) or hasattr(a, "__array_interface__")):
            raise TypeError(f"argument '{name}' is updated in place and must be a numpy or CuPy array, got {type(a).__name__}")
        if a.dtype != np.float32:
            raise TypeError(f"argument '{name}' is updated in place and must be float32, got {a.dtype}")
    lr, momentum, weight_decay = (B.real_number(lr, "lr"), B.real_number(momentum, "momentum"),
                                  B.real_number(weight_decay, "weight_decay"))
    dw = B.as_input(dw, "dw")
    # Updated in place element by element: w and v in one buffer, or dw inside either, would read values the
    # update has already written (no error, a wrong step). Arrays of two kinds are refused by launch below.
    arrays = {"w": w, "dw": dw, "v": v}
    for a, b in (("v", "w"), ("dw", "w"), ("dw", "v")):
        if B.may_share_memory(arrays[a], arrays[b]):
            raise ValueError(f"argument '{a}' must not share memory with '{b}': sgd_update writes w and v in place")
    with B.launch(w, dw, v) as l:
        _C.sgd_update(w, dw, v, lr, momentum, weight_decay, l.stream)
