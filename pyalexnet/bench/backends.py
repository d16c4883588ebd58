"""The same layer operations three ways: pyalexnet's ops ("ours"), PyTorch (cuDNN on a GPU, its CPU
build otherwise) and plain numpy (im2col + matmul convolutions, the CPU fallback reference).

Each backend takes the arrays the harness draws (numpy, or CuPy on a GPU) through `asarray`; PyTorch
gets CuPy arrays zero-copy through DLPack, so every implementation reads identical data.
Forward calls return (output, ctx) where the backward needs state; `keep=False` skips that state.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .spec import DROPOUT_P, LRN, POOL, Conv


class Ours:
    name = "ours"
    label = "pyalexnet"

    def __init__(self, xp) -> None:
        from .. import ops

        self.ops, self.xp = ops, xp

    def context(self):
        return contextlib.nullcontext()

    def asarray(self, a):
        return a

    def copy(self, a):
        return a.copy()

    def labels(self, labels):
        return labels.astype(self.xp.int32)

    def to_primary(self, a):
        return a

    # convolution; `algorithm` (None: the library's choice) forces one of ops.CONV_ALGORITHMS
    def _conv_kw(self, L: Conv, algorithm):
        kw = dict(stride=L.stride, padding=L.pad, groups=L.groups)
        if algorithm is not None:
            kw["algorithm"] = algorithm
        return kw

    def conv_fwd(self, x, w, b, L: Conv, algorithm=None):
        return self.ops.conv2d(x, w, b, **self._conv_kw(L, algorithm))

    def conv_bwd(self, dy, x, w, L: Conv, *, need_dx=True, need_db=True):
        return self.ops.conv2d_backward(dy, x, w, stride=L.stride, padding=L.pad, groups=L.groups,
                                        need_dx=need_dx, need_db=need_db)

    def conv_dgrad(self, dy, x, w, L: Conv, algorithm=None):
        """The input gradient alone."""
        return self.ops.conv2d_backward(dy, x, w, **self._conv_kw(L, algorithm),
                                        need_dx=True, need_dw=False, need_db=False)[0]

    def conv_wgrad(self, dy, x, w, L: Conv, algorithm=None):
        return self.ops.conv2d_backward(dy, x, w, **self._conv_kw(L, algorithm),
                                        need_dx=False, need_db=False)[1]

    # element-wise and normalisation layers
    def relu_fwd(self, x, keep=True):
        y = self.ops.relu(x)
        return y, y

    def relu_bwd(self, dy, ctx):
        return self.ops.relu_backward(dy, ctx)

    def lrn_fwd(self, x, keep=True):
        y = self.ops.lrn(x, **LRN)
        return y, (x, y)

    def lrn_bwd(self, dy, ctx):
        return self.ops.lrn_backward(dy, *ctx, **LRN)

    # max-pooling as training runs it: the forward stores the winners (keep or not), the backward reads them
    def pool_fwd(self, x, keep=True):
        y, indices = self.ops.max_pool(x, **POOL, return_indices=True)
        return y, (x, indices)

    def pool_bwd(self, dy, ctx):
        x, indices = ctx
        # unchecked, as AlexNet's backward passes its own forward's bytes (the check is a reduction and a sync)
        return self.ops.max_pool_backward(dy, x, indices=indices, check_indices=False, **POOL)

    # and the backward that recomputes each window's winner from x, given the plain forward's y
    def pool_fwd_plain(self, x):
        return self.ops.max_pool(x, **POOL)

    def pool_bwd_recompute(self, dy, x, y):
        return self.ops.max_pool_backward(dy, x, y, **POOL)

    def dropout_fwd(self, x, seed, keep=True):
        y, mask = self.ops.dropout(x, p=DROPOUT_P, seed=seed)
        return y, mask

    def dropout_bwd(self, dy, ctx):
        return self.ops.dropout_backward(dy, ctx, p=DROPOUT_P)

    def linear_fwd(self, x, w, b):
        return self.ops.linear(x, w, b)

    def linear_bwd(self, dy, x, w):
        return self.ops.linear_backward(dy, x, w)

    def xent(self, logits, labels):
        return self.ops.softmax_cross_entropy(logits, labels)

    def xent_kernel(self, logits, labels):
        """A call of the fused kernel alone, into buffers made once (and the stream's counter, zeroed once):
        ops.softmax_cross_entropy adds the read-back of the loss and of the labels' range (one sync), which a
        kernel row should not time."""
        from .. import _C, _backend

        xp = self.xp
        row_loss, dlogits = xp.empty(logits.shape[0], dtype=xp.float32), xp.empty_like(logits)
        stats = xp.empty(3, dtype=xp.float64)
        with _backend.launch(logits, labels) as l:
            stream, counter = l.stream, _backend.last_block_counter(l)

        def call():
            _C.softmax_cross_entropy(logits, labels, row_loss, dlogits, stats, counter, stream)
            return dlogits
        return call

    def sgd(self, params, grads, vels, lr=0.01):
        self.ops.sgd_update(list(params), list(grads), list(vels), lr=lr, momentum=0.9, weight_decay=5e-4)


class Torch:
    """PyTorch as the reference. On a GPU `tf32` picks float32 convolutions and matrix products
    (False) or PyTorch's defaults (True: TF32 cuDNN convolutions, float32 matmul)."""

    def __init__(self, device: str, tf32: bool = False) -> None:
        import torch
        import torch.nn.functional as F

        self.torch, self.F, self.device = torch, F, device
        self.tf32 = tf32
        if device == "cuda":
            self.name = "torch_tf32" if tf32 else "torch_fp32"
            self.label = "PyTorch cuDNN " + ("default (TF32 conv)" if tf32 else "float32")
            torch.backends.cudnn.benchmark = True   # cuDNN's fastest algorithm for each shape
        else:
            self.name, self.label = "torch_cpu", "PyTorch CPU"
        self._opt = {}

    @contextlib.contextmanager
    def context(self):
        """Sets the TF32 switches for this variant, restoring them after."""
        b = self.torch.backends
        old = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
        b.cudnn.allow_tf32 = self.tf32
        b.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = old

    def asarray(self, a):
        if hasattr(a, "__cuda_array_interface__"):
            return self.torch.from_dlpack(a)
        return self.torch.from_numpy(np.ascontiguousarray(a))

    def copy(self, a):
        return self.asarray(a).clone()

    def labels(self, labels):
        return self.asarray(labels).long()

    def to_primary(self, a):
        a = a.detach()
        if a.is_cuda:
            import cupy

            return cupy.from_dlpack(a)
        return a.numpy()

    def conv_fwd(self, x, w, b, L: Conv):
        return self.F.conv2d(x, w, b, stride=L.stride, padding=L.pad, groups=L.groups)

    def _conv_back(self, dy, x, w, L, mask):
        s, p = [L.stride] * 2, [L.pad] * 2
        return self.torch.ops.aten.convolution_backward(dy, x, w, [L.k], s, p, [1, 1], False, [0, 0],
                                                        L.groups, mask)

    def conv_bwd(self, dy, x, w, L: Conv, *, need_dx=True, need_db=True):
        return self._conv_back(dy, x, w, L, [need_dx, True, need_db])

    def conv_dgrad(self, dy, x, w, L: Conv):
        return self._conv_back(dy, x, w, L, [True, False, False])[0]

    def conv_wgrad(self, dy, x, w, L: Conv):
        return self._conv_back(dy, x, w, L, [False, True, False])[1]

    def relu_fwd(self, x, keep=True):
        y = self.torch.relu(x)
        return y, y

    def relu_bwd(self, dy, ctx):
        return self.torch.ops.aten.threshold_backward(dy, ctx, 0)

    def lrn_fwd(self, x, keep=True):
        # PyTorch divides alpha by size; the paper does not.
        args = (LRN["size"], LRN["alpha"] * LRN["size"], LRN["beta"], LRN["k"])
        if not keep:
            with self.torch.no_grad():
                return self.F.local_response_norm(x, *args), None
        xr = x.detach().requires_grad_()
        with self.torch.enable_grad():
            y = self.F.local_response_norm(xr, *args)
        return y.detach(), (xr, y)

    def lrn_bwd(self, dy, ctx):
        xr, y = ctx
        return self.torch.autograd.grad(y, xr, dy, retain_graph=True)[0]

    def pool_fwd(self, x, keep=True):
        k, s = [POOL["size"]] * 2, [POOL["stride"]] * 2
        if not keep:
            return self.F.max_pool2d(x, k, s), None
        y, idx = self.torch.ops.aten.max_pool2d_with_indices(x, k, s, [0, 0], [1, 1], False)
        return y, (x, idx)

    def pool_bwd(self, dy, ctx):
        x, idx = ctx
        k, s = [POOL["size"]] * 2, [POOL["stride"]] * 2
        return self.torch.ops.aten.max_pool2d_with_indices_backward(dy, x, k, s, [0, 0], [1, 1], False, idx)

    def dropout_fwd(self, x, seed, keep=True):
        return self.torch.ops.aten.native_dropout(x, DROPOUT_P, True)

    def dropout_bwd(self, dy, ctx):
        return self.torch.ops.aten.native_dropout_backward(dy, ctx, 1.0 / (1.0 - DROPOUT_P))

    def linear_fwd(self, x, w, b):
        return self.F.linear(x, w, b)

    def linear_bwd(self, dy, x, w):
        return dy @ w, dy.t() @ x, dy.sum(0)

    def xent(self, logits, labels):
        xr = logits.detach().requires_grad_()
        with self.torch.enable_grad():
            loss = self.F.cross_entropy(xr, labels)
        (g,) = self.torch.autograd.grad(loss, xr)
        return loss.detach(), g

    def xent_kernel(self, logits, labels):
        return lambda: self.xent(logits, labels)[1]

    def sgd(self, params, grads, vels, lr=0.01):
        """torch.optim.SGD (its default multi-tensor path), with the gradients attached."""
        for p, g in zip(params, grads):
            p.grad = g
        key = tuple(id(p) for p in params)
        opt = self._opt.get(key)
        if opt is None:
            # One cached optimizer at a time: an old one holds 61M momentum values.
            opt = self.torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
            self._opt = {key: opt}
        opt.step()


def _windows(xp_pad, r, stride, p):
    """(n, c, p, p, r, r) view of every filter window."""
    v = np.lib.stride_tricks.sliding_window_view(xp_pad, (r, r), axis=(2, 3))
    return v[:, :, ::stride, ::stride][:, :, :p, :p]


class Numpy:
    """Plain numpy: the CPU reference when PyTorch is not installed."""
    name, label = "numpy", "numpy (im2col + matmul)"

    def context(self):
        return contextlib.nullcontext()

    def asarray(self, a):
        return np.asarray(a)

    def copy(self, a):
        return np.array(a)

    def labels(self, labels):
        return np.asarray(labels).astype(np.int64)

    def to_primary(self, a):
        return np.asarray(a)

    @staticmethod
    def _cols(x, L: Conv):
        n, c, h, _ = x.shape
        p = L.out_hw(h)
        xpad = np.pad(x, ((0, 0), (0, 0), (L.pad, L.pad), (L.pad, L.pad)))
        win = _windows(xpad, L.r, L.stride, p)          # n, c, p, p, r, r
        cg = c // L.groups
        # Per group: (n*p*p, cg*r*r) rows of one window each.
        return [np.ascontiguousarray(win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5)).reshape(n * p * p, -1)
                for g in range(L.groups)], p

    @staticmethod
    def _dy_rows(dy, L):
        n, k, p, _ = dy.shape
        kg = k // L.groups
        rows = dy.transpose(0, 2, 3, 1).reshape(n * p * p, k)
        return [rows[:, g * kg:(g + 1) * kg] for g in range(L.groups)]

    def conv_fwd(self, x, w, b, L: Conv):
        cols, p = self._cols(x, L)
        kg = L.k // L.groups
        out = np.concatenate([c @ w[g * kg:(g + 1) * kg].reshape(kg, -1).T for g, c in enumerate(cols)], axis=1)
        if b is not None:
            out += b
        return np.ascontiguousarray(out.reshape(x.shape[0], p, p, L.k).transpose(0, 3, 1, 2))

    def conv_dgrad(self, dy, x, w, L: Conv):
        n, c, h, _ = x.shape
        p, cg, kg, r, s = dy.shape[2], c // L.groups, L.k // L.groups, L.r, L.stride
        dxp = np.zeros((n, c, h + 2 * L.pad, h + 2 * L.pad), dtype=np.float32)
        for g, d in enumerate(self._dy_rows(dy, L)):
            dcols = (d @ w[g * kg:(g + 1) * kg].reshape(kg, -1)).reshape(n, p, p, cg, r, r)
            for i in range(r):
                for j in range(r):
                    dxp[:, g * cg:(g + 1) * cg, i:i + s * p:s, j:j + s * p:s] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dxp[:, :, L.pad:L.pad + h, L.pad:L.pad + h]

    def conv_wgrad(self, dy, x, w, L: Conv):
        cols, _ = self._cols(x, L)
        return np.concatenate([(d.T @ c).reshape(-1, *w.shape[1:]) for d, c in zip(self._dy_rows(dy, L), cols)])

    def conv_bwd(self, dy, x, w, L: Conv, *, need_dx=True, need_db=True):
        dx = self.conv_dgrad(dy, x, w, L) if need_dx else None
        db = dy.sum(axis=(0, 2, 3)) if need_db else None
        return dx, self.conv_wgrad(dy, x, w, L), db

    def relu_fwd(self, x, keep=True):
        y = np.maximum(x, 0)
        return y, y

    def relu_bwd(self, dy, ctx):
        return np.where(ctx > 0, dy, np.float32(0))

    @staticmethod
    def _window_sum(a, size):
        """Sum over `size` adjacent channels centred on each one (clipped at the ends)."""
        half = size // 2
        c = np.cumsum(np.pad(a, ((0, 0), (half + 1, half), (0, 0), (0, 0))), axis=1, dtype=np.float32)
        return c[:, size:] - c[:, :-size]

    def lrn_fwd(self, x, keep=True):
        scale = LRN["k"] + LRN["alpha"] * self._window_sum(x * x, LRN["size"])
        y = x * scale ** -LRN["beta"]
        return y.astype(np.float32), (x, y, scale)

    def lrn_bwd(self, dy, ctx):
        x, y, scale = ctx
        t = self._window_sum(dy * y / scale, LRN["size"])
        return (dy * scale ** -LRN["beta"] - 2 * LRN["alpha"] * LRN["beta"] * x * t).astype(np.float32)

    def pool_fwd(self, x, keep=True):
        p = (x.shape[2] - POOL["size"]) // POOL["stride"] + 1
        win = _windows(x, POOL["size"], POOL["stride"], p)
        return win.max(axis=(4, 5)), (x, win)

    def pool_bwd(self, dy, ctx):
        x, win = ctx
        y = win.max(axis=(4, 5))
        p, z, s = y.shape[2], POOL["size"], POOL["stride"]
        dx = np.zeros_like(x)
        taken = np.zeros(y.shape, dtype=bool)
        for i in range(z):                     # the first maximum in each window takes the gradient
            for j in range(z):
                hit = (win[..., i, j] == y) & ~taken
                taken |= hit
                dx[:, :, i:i + s * p:s, j:j + s * p:s] += np.where(hit, dy, np.float32(0))
        return dx

    def dropout_fwd(self, x, seed, keep=True):
        keep_mask = np.random.default_rng(seed).random(x.shape, dtype=np.float32) >= DROPOUT_P
        return x * keep_mask * np.float32(1 / (1 - DROPOUT_P)), keep_mask

    def dropout_bwd(self, dy, ctx):
        return dy * ctx * np.float32(1 / (1 - DROPOUT_P))

    def linear_fwd(self, x, w, b):
        return x @ w.T + b

    def linear_bwd(self, dy, x, w):
        return dy @ w, dy.T @ x, dy.sum(0)

    def xent(self, logits, labels):
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = logits.shape[0]
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), labels]))
        d = e / s
        d[np.arange(n), labels] -= 1
        return loss, (d / n).astype(np.float32)

    def xent_kernel(self, logits, labels):
        return lambda: self.xent(logits, labels)[1]

    def sgd(self, params, grads, vels, lr=0.01):
        for w, g, v in zip(params, grads, vels):
            v *= np.float32(0.9)
            v -= np.float32(5e-4 * lr) * w
            v -= np.float32(lr) * g
            w += v
