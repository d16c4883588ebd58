"""The per-op rows: every layer's forward and backward at AlexNet's shapes, each timed for pyalexnet
and the reference(s) on the same inputs, with its work (FLOPs or minimum bytes moved)."""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import spec
from .spec import F32, Conv
from .timing import make_copy



class Drawer:
    """Random inputs (never zeros) on the harness's array module: numpy, or CuPy on a GPU.
    Uniform values with the given standard deviation: as good as normal ones for timing, and
    several times faster to draw for the 61M-parameter rows."""

    def __init__(self, xp, seed: int = 0) -> None:
        self.xp = xp
        self.rng = np.random.default_rng(seed) if xp is np else xp.random.RandomState(seed)

    def normal(self, shape, scale=1.0):
        u = self.rng.random(shape, dtype=np.float32) if self.xp is np else self.rng.random_sample(shape, dtype=np.float32)
        u -= np.float32(0.5)
        u *= np.float32(scale * 12 ** 0.5)      # uniform on [-sqrt(3), sqrt(3)) * scale: unit variance
        return u

    def labels(self, n, classes):
        return self.rng.randint(0, classes, n) if self.xp is not np else self.rng.integers(0, classes, n)


@dataclass
class Row:
    name: str
    group: str                 # conv, lrn, pool, relu, dropout, softmax, linear, sgd
    shape: str
    bound: str                 # "compute" (FLOPs) or "memory" (bytes)
    work: int                  # FLOPs or minimum bytes moved
    inputs: Callable[[Drawer], dict]
    build: Callable[[object, dict], Callable[[], object]]   # (backend, its inputs) -> the timed call
    compare: bool = True       # outputs comparable across implementations (not dropout's masks)
    note: str = ""
    # Set on the rows that time one of our conv algorithms forced, or our pool backward that recomputes the
    # winners: only ours runs, and its ratios use the references' times from the named row (same shapes,
    # same run), so they are not timed twice.
    reference_row: str | None = None


def _numel(shape):
    return math.prod(shape)


def _shape_str(shape):
    return "x".join(str(d) for d in shape)


def _conv_algorithms(L: Conv, x_shape) -> list[tuple[str, tuple[str, ...]]]:
    """(algorithm, the passes it changes) for each algorithm other than "auto" that pyalexnet has for this
    layer's shape (none where only one): "direct" and "winograd" where Winograd applies (3x3, stride 1),
    "fft" (filter gradient only) wherever the library accepts it (stride 1, padded planes up to 32x32)."""
    from .. import ops

    names = [a for a in getattr(ops, "CONV_ALGORITHMS", ()) if a != "auto"]
    out = []
    if L.r == 3 and L.stride == 1:
        out += [(a, ("fwd", "dgrad", "wgrad")) for a in names if a in ("direct", "winograd")]
    if "fft" in names:
        from .._backend import _C

        try:
            _C.conv2d_shape(tuple(x_shape), L.weight_shape(), L.stride, L.pad, L.groups, algorithm="fft")
            out.append(("fft", ("wgrad",)))
        except ValueError:  # conv1: stride 4, 228x228 padded
            pass
    return out


def build_rows(n: int) -> list[Row]:
    sh = spec.shapes(n)
    rows: list[Row] = []
    stages = {st.layer.name: st for st in spec.PAPER}

    # Convolutions: forward, input gradient, filter gradient.
    for st in spec.PAPER:
        L = st.layer
        if not isinstance(L, Conv):
            continue
        xs, ys = sh.conv_in[L.name], sh.conv_out[L.name]
        flops = 2 * L.macs(n, xs[2])
        desc = f"{_shape_str(xs)} * {_shape_str(L.weight_shape())} s{L.stride} p{L.pad} g{L.groups}"

        def fwd_in(d, xs=xs, L=L):
            return {"x": d.normal(xs), "w": d.normal(L.weight_shape(), 0.01), "b": d.normal((L.k,), 0.1)}

        def bwd_in(d, xs=xs, ys=ys, L=L):
            return {"dy": d.normal(ys), "x": d.normal(xs), "w": d.normal(L.weight_shape(), 0.01)}

        calls = {  # pass -> (its inputs, its call; an algorithm, when one is given, forces ours)
            "fwd": (fwd_in, lambda be, a, *algo, L=L: be.conv_fwd(a["x"], a["w"], a["b"], L, *algo)),
            "dgrad": (bwd_in, lambda be, a, *algo, L=L: be.conv_dgrad(a["dy"], a["x"], a["w"], L, *algo)),
            "wgrad": (bwd_in, lambda be, a, *algo, L=L: be.conv_wgrad(a["dy"], a["x"], a["w"], L, *algo)),
        }
        for pas, (inputs, call) in calls.items():
            rows.append(Row(f"{L.name}.{pas}", "conv", desc, "compute", flops, inputs,
                            lambda be, a, call=call: lambda: call(be, a)))
        # Every algorithm the library has for this shape, forced, next to its own choice above: what the
        # choice rule is tuned from (only the passes an algorithm changes: "fft" is a filter gradient).
        for algo, passes in _conv_algorithms(L, xs):
            for pas in passes:
                inputs, call = calls[pas]
                rows.append(Row(f"{L.name}.{pas} {algo}", "conv-algorithm", desc, "compute", flops, inputs,
                                lambda be, a, call=call, algo=algo: lambda: call(be, a, algo),
                                reference_row=f"{L.name}.{pas}"))

    def fwd_bwd(prefix, group, shape, out_shape, fwd, bwd, fwd_bytes, bwd_bytes, compare=True, x_scale=1.0):
        def x_in(d):
            return {"x": d.normal(shape, x_scale)}

        def xdy_in(d):
            return {"x": d.normal(shape, x_scale), "dy": d.normal(out_shape)}

        def build_bwd(be, a):
            _, ctx = fwd(be, a["x"], True)
            return lambda: bwd(be, a["dy"], ctx)

        desc = _shape_str(shape)
        rows.append(Row(f"{prefix}.fwd", group, desc, "memory", fwd_bytes, x_in,
                        lambda be, a: lambda: fwd(be, a["x"], False)[0], compare))
        rows.append(Row(f"{prefix}.bwd", group, desc, "memory", bwd_bytes, xdy_in, build_bwd, compare))

    # LRN after conv1 and conv2 (on ReLU outputs: scaled so the sum term matters).
    for i, name in ((1, "conv1"), (2, "conv2")):
        s = sh.conv_out[name]
        # The backward must read x and dy and write dx: y = x * d^-beta follows from x (the CUDA kernel
        # recomputes it rather than reading it).
        fwd_bwd(f"lrn{i}", "lrn", s, s, lambda be, x, keep: be.lrn_fwd(x, keep), lambda be, dy, c: be.lrn_bwd(dy, c),
                2 * _numel(s) * F32, 3 * _numel(s) * F32, x_scale=10.0)
    # Max-pooling in its three places, as training runs it: the forward also stores each window's winner
    # (one byte per output, PyTorch's own backend its int64 indices), so the backward reads dy and those bytes
    # and writes dx, never x. The backward that recomputes the winners from x (reading x and dy, writing dx)
    # follows as "poolN.bwd recompute", ours alone, against the references' times of the row above.
    for i, name in ((1, "conv1"), (2, "conv2"), (5, "conv5")):
        s, p = sh.conv_out[name], sh.pool_out[name]
        fwd_bwd(f"pool{i}", "pool", s, p, lambda be, x, keep: be.pool_fwd(x, keep), lambda be, dy, c: be.pool_bwd(dy, c),
                (_numel(s) + _numel(p)) * F32 + _numel(p), (_numel(s) + _numel(p)) * F32 + _numel(p))

        def recompute_in(d, s=s, p=p):
            return {"x": d.normal(s), "dy": d.normal(p)}

        def recompute_build(be, a):
            y = be.pool_fwd_plain(a["x"])
            return lambda: be.pool_bwd_recompute(a["dy"], a["x"], y)

        rows.append(Row(f"pool{i}.bwd recompute", "pool-recompute", _shape_str(s), "memory",
                        (2 * _numel(s) + _numel(p)) * F32, recompute_in, recompute_build,
                        reference_row=f"pool{i}.bwd"))
    # ReLU at its largest (conv1's output).
    s = sh.conv_out["conv1"]
    fwd_bwd("relu1", "relu", s, s, lambda be, x, keep: be.relu_fwd(x, keep), lambda be, dy, c: be.relu_bwd(dy, c),
            2 * _numel(s) * F32, 3 * _numel(s) * F32)
    # Dropout after fc6: the minimum counts the mask at one byte per unit.
    s = (n, spec.PAPER[5].layer.fout)
    fwd_bwd("dropout6", "dropout", s, s, lambda be, x, keep: be.dropout_fwd(x, 6, keep),
            lambda be, dy, c: be.dropout_bwd(dy, c), 9 * _numel(s), 9 * _numel(s), compare=False)

    # Softmax cross-entropy: loss and the logits' gradient in one call.
    def xent_in(d):
        return {"logits": d.normal((n, spec.NUM_CLASSES), 3.0), "labels": d.labels(n, spec.NUM_CLASSES)}

    def xent_build(be, a):
        labels = be.labels(a["labels"])
        return lambda: be.xent(a["logits"], labels)[1]

    def xent_kernel_build(be, a):
        return be.xent_kernel(a["logits"], be.labels(a["labels"]))

    xent_bytes = 2 * n * spec.NUM_CLASSES * F32 + n * 4
    rows.append(Row("softmax_xent.kernel", "softmax", f"{n}x{spec.NUM_CLASSES}", "memory", xent_bytes, xent_in,
                    xent_kernel_build))
    rows.append(Row("softmax_xent.op", "softmax-op", f"{n}x{spec.NUM_CLASSES}", "memory", xent_bytes, xent_in,
                    xent_build, note="ops.softmax_cross_entropy: the kernels, then one read-back of the loss and "
                    "the labels' range (a sync per call, so a bad label is a ValueError at the call); PyTorch's "
                    "cross_entropy does not read back."))

    # Fully connected layers: y = x w^T + b; backward gives dx and dw (two products) and db.
    for name in ("fc6", "fc7", "fc8"):
        L = stages[name].layer
        desc = f"{n}x{L.fin} * {L.fout}x{L.fin}"

        def lin_in(d, L=L):
            return {"x": d.normal((n, L.fin)), "w": d.normal((L.fout, L.fin), 0.01), "b": d.normal((L.fout,), 0.1),
                    "dy": d.normal((n, L.fout))}

        rows.append(Row(f"{name}.fwd", "linear", desc, "compute", 2 * L.macs(n), lin_in,
                        lambda be, a: lambda: be.linear_fwd(a["x"], a["w"], a["b"])))
        rows.append(Row(f"{name}.bwd", "linear", desc, "compute", 4 * L.macs(n), lin_in,
                        lambda be, a: lambda: be.linear_bwd(a["dy"], a["x"], a["w"])))

    # The SGD update over all 61M parameters, one call for all tensors as a training step makes it.
    pshapes = [s for _, w, b in spec.parameter_shapes() for s in (w, b)]

    def sgd_in(d):
        return {"w": [d.normal(s, 0.01) for s in pshapes], "g": [d.normal(s, 0.01) for s in pshapes],
                "v": [d.normal(s, 0.001) for s in pshapes]}

    def sgd_build(be, a):
        w = [be.copy(t) for t in a["w"]]        # updated in place: each implementation its own copy
        v = [be.copy(t) for t in a["v"]]
        g = [be.asarray(t) for t in a["g"]]
        return lambda: be.sgd(w, g, v)

    rows.append(Row("sgd.all", "sgd", f"{spec.parameter_count():,} params in {len(pshapes)} tensors", "memory",
                    5 * spec.parameter_count() * F32, sgd_in, sgd_build, compare=False))
    return rows


def _to_backend(be, value):
    if isinstance(value, list):
        return [_to_backend(be, v) for v in value]
    if hasattr(value, "dtype") and value.dtype.kind == "f":
        return be.asarray(value)
    return value


def _flatten(out):
    return [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]


def rel_error(xp, ours, ref) -> float:
    """max |ours - ref| / max |ref| over every output (the gradient tuple's parts together)."""
    worst = 0.0
    for a, b in zip(ours, ref):
        a, b = xp.asarray(a, dtype=xp.float32), xp.asarray(b, dtype=xp.float32)
        scale = float(xp.abs(b).max()) or 1.0
        worst = max(worst, float(xp.abs(a - b).max()) / scale)
    return worst


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def time_row(row: Row, backends, timer, drawer: Drawer, xp, verbose=False) -> dict:
    """Times one row on every backend; a failing implementation is reported in its row."""
    result = {"name": row.name, "group": row.group, "shape": row.shape, "bound": row.bound,
              "flops": row.work if row.bound == "compute" else None,
              "bytes": row.work if row.bound == "memory" else None,
              "note": row.note, "reference_row": row.reference_row, "impl": {}}
    try:
        inputs = row.inputs(drawer)
    except Exception as exc:  # inputs too large for the device (a large --batch): this row fails, not the run
        if verbose:
            traceback.print_exc()
        failed = {"status": "error", "error": "drawing the inputs: " + _short(exc)}
        result["impl"] = {be.name: dict(failed) for be in backends if not row.reference_row or be.name == "ours"}
        return result
    first_out = {}
    for be in backends:
        if row.reference_row and be.name != "ours":
            continue
        entry: dict = {}
        try:
            with be.context():
                args = {k: _to_backend(be, v) for k, v in inputs.items()}
                fn = row.build(be, args)
                out = fn()                          # the first call: it must run before it is timed
                timer.sync()
                if row.compare:
                    first_out[be.name] = [be.to_primary(o) for o in _flatten(out)]
                del out
                entry.update(timer.measure(fn))
                entry["status"] = "ok"
            del fn, args
        except Exception as exc:  # a failing implementation is reported in its row, not fatal to the run
            entry = {"status": "error", "error": _short(exc)}
            if verbose:
                traceback.print_exc()
        result["impl"][be.name] = entry
    if row.bound == "memory":
        # The fairest ceiling for a small tensor: a copy of the same bytes (half read, half written),
        # which pays the same launch and latency costs as the kernel.
        try:
            copy, how = make_copy(timer, xp, row.work // 2)
            copy()
            result["same_size_copy"] = {"how": how, "status": "ok", **timer.measure(copy)}
            del copy
        except Exception as exc:  # no room for the copy's two buffers: no `% same-size copy`, said in the JSON
            result["same_size_copy"] = {"status": "error", "error": _short(exc)}
    if row.compare and "ours" in first_out and len(first_out) > 1:
        ref = next(k for k in first_out if k != "ours")
        try:
            result["max_rel_error"] = {"vs": ref, "value": rel_error(xp, first_out["ours"], first_out[ref])}
        except Exception as exc:
            result["max_rel_error"] = {"vs": ref, "value": None, "error": _short(exc)}
    return result
