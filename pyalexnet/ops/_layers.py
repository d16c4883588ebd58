"""The layers around the convolutions: fully connected, LRN, max-pooling, dropout, softmax.

Image tensors are NCHW float32. numpy in gives numpy out (CPU backend); CuPy in
gives CuPy out (CUDA backend, CuPy's current stream). The fully connected
layers use the maintained GEMMs, as cuda-convnet did: cuBLAS through CuPy on
the GPU, numpy's BLAS on the CPU.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _backend as B
from .._backend import _C

__all__ = ["dropout", "dropout_backward", "linear", "linear_backward", "lrn", "lrn_backward", "max_pool",
           "max_pool_backward", "softmax", "softmax_cross_entropy"]


def _shape(a) -> str:
    return str(tuple(int(s) for s in a.shape))


# --- fully connected ---------------------------------------------------------------------------------------


def _flat_input(x, w):
    """x as (N, in): 2-D, or (N, ...) whose trailing dimensions multiply to w's `in` (conv5's output)."""
    if w.ndim != 2:
        raise ValueError(f"argument 'w' must be 2-dimensional (out, in), got shape {_shape(w)}")
    if x.ndim < 2:
        raise ValueError(f"argument 'x' must be (N, in) or (N, ...), got shape {_shape(x)}")
    n_in = math.prod(x.shape[1:])
    if n_in != w.shape[1]:
        raise ValueError(f"argument 'x' {_shape(x)} has {n_in} features per row but 'w' {_shape(w)} expects "
                         f"{w.shape[1]}")
    return x.reshape(x.shape[0], n_in)


def linear(x, w, b=None):
    """y = x @ w.T + b with w of shape (out, in); x is (N, in) or (N, ...) flattened to (N, in)."""
    x, w = B.as_input(x, "x"), B.as_input(w, "w")
    x2 = _flat_input(x, w)
    if b is not None:
        b = B.as_input(b, "b")
        if b.shape != (w.shape[0],):
            raise ValueError(f"argument 'b' must have shape ({w.shape[0]},), got {_shape(b)}")
    with B.launch(x, w, b) as l:
        y = l.xp.matmul(x2, w.T)
        if b is not None:
            y += b
    return y


def linear_backward(dy, x, w, *, dw_out=None):
    """(dx, dw, db) of linear: dx = dy @ w (in x's shape), dw = dy.T @ x, db = dy summed over the batch.

    dw_out: an array to write dw into and return (a C-contiguous float32 array of w's shape on w's device,
    sharing no memory with dy, x or w), such as the previous step's dw. A new dw is a fresh allocation, and
    fc6's (151 MB in the paper's network) costs the CPU more to fault in and zero than to compute.
    """
    dy, x, w = B.as_input(dy, "dy"), B.as_input(x, "x"), B.as_input(w, "w")
    x2 = _flat_input(x, w)
    if dy.shape != (x2.shape[0], w.shape[0]):
        raise ValueError(f"argument 'dy' must have shape {(x2.shape[0], w.shape[0])} (the output of linear(x, w)), "
                         f"got {_shape(dy)}")
    if dw_out is not None:
        # The same kind of array as w (numpy, subclasses included, or CuPy): an exact type test refused an ndarray
        # dw_out for a memmap w.
        cp = B.cupy_module() if B.is_gpu_array(w) else None
        if not (isinstance(dw_out, np.ndarray) if cp is None else isinstance(dw_out, cp.ndarray)):
            raise TypeError(f"argument 'dw_out' must be a {'cupy' if cp is not None else 'numpy'}.ndarray like w, "
                            f"got {type(dw_out).__name__}")
        if isinstance(dw_out, np.ma.MaskedArray):
            raise TypeError("argument 'dw_out' must be a plain numpy array, got a masked array")
        if dw_out.dtype != np.float32 or tuple(dw_out.shape) != tuple(w.shape) or not dw_out.flags.c_contiguous:
            raise ValueError(f"argument 'dw_out' must be a C-contiguous float32 array of w's shape {_shape(w)}, "
                             f"got {dw_out.dtype} {_shape(dw_out)}"
                             + ("" if dw_out.flags.c_contiguous else " (not C-contiguous)"))
        if isinstance(dw_out, np.ndarray) and not dw_out.flags.writeable:
            raise ValueError("argument 'dw_out' is written to but is read-only")
        if any(B.may_share_memory(dw_out, a) for a in (dy, x, w)):
            raise ValueError("argument 'dw_out' must not share memory with dy, x or w")
    with B.launch(dy, x, w, dw_out) as l:
        dx = l.xp.matmul(dy, w).reshape(x.shape)
        if x2.shape[0] == 1:
            # One image: dw is an outer product, the same single products, which numpy's matmul takes through a
            # slow path for an inner size of 1 (fc6 at batch 1: 63 ms, 11 ms as a broadcast multiply).
            dw = l.xp.multiply(dy.T, x2, out=dw_out)
        else:
            dw = l.xp.matmul(dy.T, x2, out=dw_out)
        db = dy.sum(axis=0, dtype=l.xp.float32)
    return dx, dw, db


# --- local response normalisation ---------------------------------------------------------------------------


def _lrn_params(size, alpha, beta, k):
    size = B.integer(size, "LRN size")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"LRN size must be an odd number >= 1 (a window centred on each map), got {size}")
    alpha, beta, k = B.real_number(alpha, "alpha"), B.real_number(beta, "beta"), B.real_number(k, "k")
    if not np.float32(k) >= np.finfo(np.float32).tiny:  # (a subnormal k overflows the GPU's fast division)
        raise ValueError(f"k must be > 0, at least float32's smallest normal number 1.18e-38 (the denominator "
                         f"k + alpha*sum must stay positive; the kernels take it as float32), got {k!r}")
    return size, alpha, beta, k


def lrn(x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """Cross-map LRN, the paper's formula: x / (k + alpha * sum over `size` adjacent maps of x^2) ** beta.

    alpha multiplies the plain sum (Caffe and PyTorch divide it by size: pass
    alpha*size to torch.nn.functional.local_response_norm to compare). x is NCHW;
    size is odd; near the first and last maps the window is clipped.
    """
    x = B.as_input(x, "x")
    size, alpha, beta, k = _lrn_params(size, alpha, beta, k)
    if x.ndim == 4:  # a shape the kernels refuse (channels + size // 2 past 2^31), refused before y's gigabytes
        _C.lrn_workspace_floats(list(x.shape), size, False)
    with B.launch(x) as l:
        y = l.xp.empty_like(x)
        _C.lrn_forward(x, y, size, alpha, beta, k, l.stream)
    return y


def lrn_backward(dy, x, y, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """dx of lrn, given its input x and output y = lrn(x, ...) with the same parameters."""
    dy, x, y = B.as_input(dy, "dy"), B.as_input(x, "x"), B.as_input(y, "y")
    size, alpha, beta, k = _lrn_params(size, alpha, beta, k)
    if x.ndim != 4:  # before the workspace's size, whose message would name its own argument
        raise ValueError(f"argument 'x' must be 4-dimensional (N, C, H, W), got shape {_shape(x)}")
    with B.launch(dy, x, y) as l:
        # The denominators, where the backend's path keeps them (the CPU's; the GPU's for windows above 7):
        # the CUDA path for the usual windows recomputes them in registers and needs none. Asked first, as it
        # refuses the shapes the kernels do, before dx's gigabytes.
        n = _C.lrn_workspace_floats(list(x.shape), size, l.device >= 0)
        dx = l.xp.empty_like(x)
        workspace = l.xp.empty(n, dtype=l.xp.float32) if n else None
        _C.lrn_backward(dy, x, y, dx, workspace, size, alpha, beta, k, l.stream)
    return dx


# --- max-pooling ---------------------------------------------------------------------------------------------


def _pool_params(size, stride):
    return B.integer(size, "pooling size", low=1), B.integer(stride, "pooling stride", low=1)


_MAX_INDEXED_SIZE = 16  # one byte per window: size * size <= 256 taps


def max_pool(x, *, size=3, stride=2, return_indices=False):
    """Max over size x size windows every `stride` pixels (overlapping when stride < size), no padding;
    size >= stride >= 1 (a larger stride would skip inputs, and is refused).

    Output (N, C, floor((H - size)/stride) + 1, floor((W - size)/stride) + 1): y, or (y, indices) with
    return_indices=True. indices is uint8 of y's shape: each window's winner, dh * size + dw of its first
    maximal element in row-major order (a NaN counts as maximal, the first NaN winning). Pass it to
    max_pool_backward (indices=...), which then needs neither y nor x's values. One byte per window, so
    return_indices needs size <= 16. y is bit for bit the same either way.
    """
    x = B.as_input(x, "x")
    size, stride = _pool_params(size, stride)
    return_indices = B.flag(return_indices, "return_indices")
    out_shape = _C.max_pool_output_shape(list(x.shape), size, stride)
    if return_indices and size > _MAX_INDEXED_SIZE:
        raise ValueError(f"max_pool(return_indices=True) needs size <= {_MAX_INDEXED_SIZE}: each window's winner "
                         f"is stored in one byte (dh * size + dw < 256), got size {size}; call max_pool without "
                         "return_indices and pass y to max_pool_backward instead")
    with B.launch(x) as l:
        y = l.xp.empty(out_shape, dtype=l.xp.float32)
        if not return_indices:
            _C.max_pool_forward(x, y, size, stride, l.stream)
            return y
        indices = l.xp.empty(out_shape, dtype=l.xp.uint8)
        _C.max_pool_forward_with_indices(x, y, indices, size, stride, l.stream)
    return y, indices


def _expect_array(a, name, what):
    """TypeError unless `a` is a numpy array or a CuPy array (arrays the backward takes as they are)."""
    cp = B.cupy_module() if B.is_gpu_array(a) else None
    if not (isinstance(a, np.ndarray) or (cp is not None and isinstance(a, cp.ndarray))):
        raise TypeError(f"argument '{name}' must be {what}, a numpy or CuPy array, got {type(a).__name__}")


def _pool_indices(indices, dy, x_shape, out_shape):
    """indices, checked: uint8, the pooling's output shape, on dy's backend."""
    _expect_array(indices, "indices", "the uint8 array max_pool(..., return_indices=True) returned")
    if indices.dtype != np.uint8:
        raise TypeError(f"argument 'indices' must have dtype uint8 (as max_pool(..., return_indices=True) returns "
                        f"it), got {indices.dtype}")
    if tuple(indices.shape) != out_shape:
        raise ValueError(f"argument 'indices' must have shape {out_shape} (the pooled output of x {x_shape}), "
                         f"got {_shape(indices)}")
    if B.is_gpu_array(indices) != B.is_gpu_array(dy):
        raise TypeError("arguments 'dy' and 'indices' must both be numpy arrays or both CuPy arrays")
    return indices


def _check_winners(indices, size):
    """A byte of size*size or more names no element of its window: the backward would drop that window's
    gradient without a word. (A reduction over the bytes; on a GPU, one synchronisation.)"""
    with B.own_device(indices):  # on the GPU that holds them, after the stream that wrote them
        top = int(indices.max()) if indices.size else 0
    if top >= size * size:
        raise ValueError(f"argument 'indices' holds winner {top}, outside a {size}x{size} window "
                         f"(0..{size * size - 1}): pass the indices max_pool(..., size={size}, return_indices=True) "
                         "returned, with the same size")


def max_pool_backward(dy, x, y=None, *, size=3, stride=2, indices=None, check_indices=True):
    """dx of max_pool: each window's gradient goes to its first maximal element (row-major);
    overlapping windows add up.

    Give exactly one of y and indices. With y = max_pool(x, size=size, stride=stride), the winners are
    recomputed from x. With indices (from max_pool(x, ..., return_indices=True)), they are read from it
    and x only gives dx's shape and backend: its values are not read. Both give the same bits.
    check_indices=False skips checking that each byte names an element of its window (a reduction over
    them, and on a GPU a synchronisation): for indices straight from max_pool, as AlexNet passes them.
    """
    if (y is None) == (indices is None):
        raise TypeError("max_pool_backward needs exactly one of y (the forward's output: the winners are "
                        "recomputed from x) and indices (max_pool(..., return_indices=True)'s), got "
                        + ("both" if y is not None else "neither"))
    size, stride = _pool_params(size, stride)
    check_indices = B.flag(check_indices, "check_indices")
    if indices is None:
        dy, x, y = B.as_input(dy, "dy"), B.as_input(x, "x"), B.as_input(y, "y")
        with B.launch(dy, x, y) as l:
            dx = l.xp.empty_like(x)
            _C.max_pool_backward(dy, x, y, dx, size, stride, l.stream)
        return dx
    dy = B.as_input(dy, "dy")
    _expect_array(x, "x", "the forward's input (its shape is dx's)")
    if B.is_gpu_array(x) != B.is_gpu_array(dy):
        raise TypeError("arguments 'dy' and 'x' must both be numpy arrays or both CuPy arrays")
    x_shape = tuple(int(d) for d in x.shape)
    out_shape = tuple(_C.max_pool_output_shape(list(x_shape), size, stride))
    indices = _pool_indices(indices, dy, x_shape, out_shape)
    if check_indices:
        _check_winners(indices, size)
    if tuple(dy.shape) != out_shape:
        raise ValueError(f"argument 'dy' must have shape {out_shape} (the pooled output of x {x_shape}), "
                         f"got {_shape(dy)}")
    # x joins the launch for its device only (a CuPy x on another GPU is refused there); it is not read.
    with B.launch(dy, indices, x) as l:
        indices = B.contiguous(indices, l.xp)
        dx = l.xp.empty(x_shape, dtype=l.xp.float32)
        _C.max_pool_backward_from_indices(dy, indices, dx, size, stride, l.stream)
    return dx


# --- dropout -------------------------------------------------------------------------------------------------


def _dropout_p(p) -> float:
    p = B.real_number(p, "dropout p", finite=False)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p!r}")
    return p


def dropout(x, *, p=0.5, seed):
    """Inverted dropout: (y, mask). Each element is dropped with probability p and kept ones are scaled by 1/(1-p).

    mask is uint8 (1 kept, 0 dropped) of x's shape. It is a pure function of
    (seed, element index) through Philox4x32-10, so the CPU and GPU give the same
    mask for the same seed; use a new seed for every step. seed: int in [0, 2**64).
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int in [0, 2**64), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    p = _dropout_p(p)
    x = B.as_input(x, "x")
    with B.launch(x) as l:
        y = l.xp.empty_like(x)
        mask = l.xp.empty(x.shape, dtype=l.xp.uint8)
        _C.dropout_forward(x, y, mask, seed, p, l.stream)
    return y, mask


def dropout_backward(dy, mask, *, p=0.5):
    """dx of dropout: dy / (1-p) where mask is nonzero, 0 elsewhere. mask: the uint8 mask dropout returned."""
    p = _dropout_p(p)
    dy = B.as_input(dy, "dy")
    if mask is None or not hasattr(mask, "dtype") or mask.dtype != np.uint8:
        raise TypeError(f"argument 'mask' must be the uint8 mask returned by dropout, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    with B.launch(dy, mask) as l:
        mask = B.contiguous(mask, l.xp)
        dx = l.xp.empty_like(dy)
        _C.dropout_backward(dy, mask, dx, p, l.stream)
    return dx


# --- softmax ---------------------------------------------------------------------------------------------------


def softmax(logits):
    """Row-wise softmax of (N, classes) logits, stable for any magnitude."""
    logits = B.as_input(logits, "logits")
    with B.launch(logits) as l:
        p = l.xp.empty_like(logits)
        _C.softmax_forward(logits, p, l.stream)
    return p


def _labels(labels, logits):
    if not isinstance(labels, np.ndarray) and not B.is_gpu_array(labels):
        # Lists, and array-likes whose dtype is not numpy's (a torch tensor's: `.kind` was an AttributeError)
        labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"argument 'labels' must be an integer array (int32 or int64; other integer types are "
                        f"converted), got dtype {labels.dtype}")
    if labels.ndim != 1 or logits.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"argument 'labels' must have shape ({logits.shape[0] if logits.ndim == 2 else 'N'},) "
                         f"(one per row of 'logits' {_shape(logits)}), got {_shape(labels)}")
    if labels.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):  # other widths, and byte orders
        with B.own_device(labels):  # the reduction and the conversion on the labels' own GPU
            top = int(labels.max()) if labels.dtype.kind == "u" and labels.dtype.itemsize == 8 and labels.size else 0
            if top >= 2**63:
                raise ValueError(f"label {top} is out of range for {logits.shape[1]} classes (labels must "
                                 f"be in [0, {logits.shape[1]}))")  # int64 would wrap it to a negative one
            labels = labels.astype(np.int64)
    return labels


def softmax_cross_entropy(logits, labels):
    """Fused softmax and cross-entropy: (loss, dlogits).

    loss is a Python float: the mean over the batch of -log softmax(logits)[label]
    (for CuPy input, reading it synchronises with the GPU). dlogits is its exact
    gradient, (softmax(logits) - onehot(labels)) / N, on the input's device.
    labels: int32 or int64 (other integer dtypes are converted), shape (N,).
    """
    read_loss, dlogits = softmax_cross_entropy_queued(logits, labels)
    return read_loss(), dlogits


def softmax_cross_entropy_queued(logits, labels):
    """softmax_cross_entropy with the loss still to be read: (read_loss, dlogits).

    dlogits is there at once; read_loss() returns the loss (and raises the ValueError for a label out of
    range). On a GPU the loss starts its way to the host here, so a backward pass queued before read_loss()
    runs while the host waits for the loss alone: a training step does not leave the GPU idle while Python
    queues its backward kernels. dlogits of a bad label's row is not meaningful: read the loss before
    using the gradients for anything that lasts.
    """
    logits = B.as_input(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"argument 'logits' must be 2-dimensional (N, classes), got shape {_shape(logits)}")
    if logits.shape[0] == 0:
        raise ValueError("softmax_cross_entropy needs at least one row: the mean over an empty batch is undefined")
    if B.is_gpu_array(labels) != B.is_gpu_array(logits):
        raise TypeError("arguments 'logits' and 'labels' must both be numpy arrays or both CuPy arrays")
    labels = _labels(labels, logits)
    with B.launch(logits, labels) as l:
        labels = B.contiguous(labels, l.xp)
        row_loss = l.xp.empty(logits.shape[0], dtype=l.xp.float32)
        dlogits = l.xp.empty_like(logits)
        stats = l.xp.empty(3, dtype=l.xp.float64)
        # One call computes the rows and (on the GPU, in the same kernel's last block) the loss sum and the
        # labels' range. The kernel never reads outside a row for a bad label (its row loss is NaN), so the range
        # is checked after it, read back with the loss: one small transfer (on a GPU, one sync) for both.
        _C.softmax_cross_entropy(logits, labels, row_loss, dlogits, stats, B.last_block_counter(l), l.stream)
        stats_on_host = B.start_host_copy(stats)
    n, classes = logits.shape

    def read_loss() -> float:
        loss_sum, lo, hi = stats_on_host().tolist()
        if lo < 0 or hi >= classes:
            # The label itself (the range came back as float64, which rounds labels beyond 2^53).
            host = B.to_host(labels)
            bad = int(host[(host < 0) | (host >= classes)][0])
            raise ValueError(f"label {bad} is out of range for {classes} classes (labels must be in "
                             f"[0, {classes}))")
        return loss_sum / n
    return read_loss, dlogits

