"""2-D convolution (NCHW, grouped, symmetric zero padding) and its gradients."""
from __future__ import annotations

import math

import numpy as np

from .. import _backend as B
from .._backend import _C


def _hyper(stride, padding, groups):
    # Integers only (bool is an int subclass but never a meaningful stride; floats would be silently
    # truncated), below 2^31: the CUDA launchers take them as int.
    return (B.integer(stride, "stride", low=1), B.integer(padding, "padding", low=0),
            B.integer(groups, "groups", low=1))


# The names `algorithm=` takes ("auto": the library's choice from the shape; the CPU backend has one).
# "fft" has only a filter-gradient path: the other passes run "auto"'s choice under it.
CONV_ALGORITHMS = ("auto", "direct", "winograd", "fft")


def _algorithm(algorithm) -> str:
    # The bindings check the name (and that "winograd" or "fft" can do the shape) and raise ValueError.
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be one of {', '.join(map(repr, CONV_ALGORITHMS))}, got {algorithm!r}")
    return algorithm


def _workspace(l, x_shape, w_shape, hyper, passes, algorithm, outputs: dict):
    """The workspace for `passes`; on the CPU, first a MemoryError where it and the `outputs` ({name: shape})
    would not fit in memory (CuPy's allocator raises its own on the GPU)."""
    n = max(_C.conv2d_workspace_size(x_shape, w_shape, *hyper, p, l.device >= 0, algorithm=algorithm)
            for p in passes)
    if l.device < 0:
        parts = {name: 4 * math.prod(shape) for name, shape in outputs.items()}
        parts["workspace"] = 4 * n
        padding = f", padding={hyper[1]}," if hyper[1] else ""
        B.expect_host_memory(parts, f"conv2d of x {tuple(x_shape)} with w {tuple(w_shape)}{padding} on the CPU")
    return l.xp.empty(max(n, 1), dtype=np.float32)


def conv2d(x, w, b=None, *, stride=1, padding=0, groups=1, algorithm="auto"):
    """y = conv(x, w) + b.

    x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None; returns y (N, K, P, Q)
    with P = (H + 2*padding - R)//stride + 1 (Q likewise). Input channels and
    filters are split into `groups` independent groups (AlexNet's two towers are
    groups=2).

    algorithm: how the CUDA backend computes it. "auto" (default) uses Winograd
    F(2x2, 3x3) for 3x3 stride-1 convolutions with at least 128 channels and
    filters per group (AlexNet's conv3-conv5), the direct implicit GEMM otherwise;
    "direct" and "winograd" force one (ValueError where "winograd" cannot do the
    shape: filters other than 3x3, stride > 1). "fft" changes only the filter
    gradient (see conv2d_backward): here it runs what "auto" picks, but is still
    refused for shapes the FFT cannot do. All are float32 throughout and
    deterministic. The CPU backend accepts the argument, validates it the same
    way, and ignores it.
    """
    hyper = _hyper(stride, padding, groups)
    algorithm = _algorithm(algorithm)
    x, w = B.as_input(x, "x"), B.as_input(w, "w")
    b = None if b is None else B.as_input(b, "b")
    out_shape = _C.conv2d_shape(x.shape, w.shape, *hyper, algorithm=algorithm)
    with B.launch(x, w, b) as l:
        ws = _workspace(l, x.shape, w.shape, hyper, ("forward",), algorithm, {"output y": out_shape})
        y = l.xp.empty(tuple(out_shape), dtype=np.float32)
        _C.conv2d_forward(x, w, b, y, ws, *hyper, l.stream, algorithm=algorithm)
    return y


def conv2d_backward(dy, x, w, *, stride=1, padding=0, groups=1, need_dx=True, need_dw=True, need_db=True,
                    algorithm="auto"):
    """Gradients of sum(conv2d(x, w, b) * dy): returns (dx, dw, db).

    Each of dx, dw, db is None when its need_* flag is False (conv1's input needs
    no gradient; a benchmark of the input gradient needs no filter gradient). dw
    and db are deterministic: the same inputs give bit-identical results on every run.
    algorithm: as for conv2d (dx and dw; db has one algorithm). "fft" computes dw
    with FFTs (stride 1, padded planes at most 32x32, any filter size and groups;
    ValueError otherwise) and dx with what "auto" picks; "auto" never picks the
    FFT yet. Its float32 error is relative to the whole correlation's scale
    (under 5e-7 of max |dw| on random inputs, in the CPU emulation of the CUDA
    kernels) rather than to each element.
    """
    hyper = _hyper(stride, padding, groups)
    algorithm = _algorithm(algorithm)
    need_dx, need_dw, need_db = (B.flag(need_dx, "need_dx"), B.flag(need_dw, "need_dw"),
                                 B.flag(need_db, "need_db"))
    dy, x, w = B.as_input(dy, "dy"), B.as_input(x, "x"), B.as_input(w, "w")
    out = tuple(_C.conv2d_shape(x.shape, w.shape, *hyper, algorithm=algorithm))  # validates x, w, the rest
    if tuple(dy.shape) != out:
        raise ValueError(f"argument 'dy' must have shape {out} (the output of conv2d(x, w)), got {tuple(dy.shape)}")
    passes = tuple(p for p, need in (("backward_filter", need_dw), ("backward_data", need_dx),
                                     ("backward_bias", need_db)) if need)
    dx = dw = db = None
    if not passes:
        return dx, dw, db
    with B.launch(dy, x, w) as l:
        outputs = {name: shape for name, shape, need in (("dw", w.shape, need_dw), ("dx", x.shape, need_dx)) if need}
        ws = _workspace(l, x.shape, w.shape, hyper, passes, algorithm, outputs)
        if need_dw:
            dw = l.xp.empty(w.shape, dtype=np.float32)
            _C.conv2d_backward_filter(dy, x, dw, ws, *hyper, l.stream, algorithm=algorithm)
        if need_dx:
            dx = l.xp.empty(x.shape, dtype=np.float32)
            _C.conv2d_backward_data(dy, w, dx, ws, *hyper, l.stream, algorithm=algorithm)
        if need_db:
            db = l.xp.empty((w.shape[0],), dtype=np.float32)
            _C.conv2d_backward_bias(dy, db, ws, l.stream)
    return dx, dw, db
