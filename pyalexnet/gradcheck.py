"""Central finite-difference checks of every layer's backward and of a whole (tiny) two-tower network.

The ops compute in float32, so the checks are built for float32: the loss is sum(output * r) for a
fixed random r, accumulated in float64 from the float32 outputs; a perturbed value is rounded to
float32 and the step actually taken (x+ - x-) is used as the denominator; and the criterion is a
relative one,

    rel = |analytic - numeric| / max(|analytic|, |numeric|, floor),
    floor = 1e-2 * the largest |analytic| or |numeric| among the points compared,

and a point passes when |analytic - numeric| <= tol * max(...) + a round-off allowance of 16 float32
ulps of sum|output * r| divided by the step, so that gradients far smaller than the loss are not
judged on round-off alone (the table shows the raw relative error and the worst error / allowed). A NaN or
infinite analytic gradient anywhere in a tensor fails it, compared there or not. As in
Caffe's GradientChecker, points where the step crosses a kink (a ReLU input changing sign, a max-pool
window changing its maximum) are skipped rather than counted.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _backend as B
from . import ops

__all__ = ["CheckResult", "check_function", "check_layers", "check_network", "run_all", "format_table"]

DEFAULT_TOL = 1e-2  # check_function's, for a loss of the caller's own
# The layer checks' tensors are small (at most a few hundred elements), so every element is compared, and at 1e-3
# the right backward of every layer stays within 0.04 of its allowance (every element, seeds 0-39), while one 1%
# off anywhere fails: at 1e-2 it passed by the tolerance's definition. The tiny network, a float32 forward through
# 20 layers, came within 0.9 of its allowance at 2e-3 on one of 12 seeds, so it keeps 1e-2.
LAYER_TOL = 1e-3
NETWORK_TOL = 1e-2
NETWORK_POINTS = 6


@dataclass
class CheckResult:
    """One gradient tensor's check: the largest relative error, the worst error over what the criterion
    allows (`passed`: at most 1, some points compared and no NaN/inf gradient), the points compared, how many
    had a gradient above round-off (`zeros_only`: none did), and the points skipped at kinks."""

    check: str          # the layer (or "network")
    tensor: str         # which gradient: dx, dw, db, or a parameter name
    max_rel_error: float
    worst_ratio: float  # max over points of |analytic - numeric| / what the criterion allows (<= 1 passes)
    points: int         # points compared
    skipped: int        # points skipped at kinks
    tol: float
    nonzero: int = 0    # compared points where either gradient was above the round-off allowance
    roundoff: int = 0   # compared points where the round-off allowance was larger than tol's share
    nonfinite: int = 0  # elements of the analytic gradient (all of them, not only the compared) NaN or infinite

    @property
    def passed(self) -> bool:
        return self.points > 0 and self.nonfinite == 0 and self.worst_ratio <= 1.0

    @property
    def zeros_only(self) -> bool:
        """Every compared point had a zero gradient both ways: the check could not have seen a wrong value
        there (a tensor whose gradient is zero wherever it was sampled)."""
        return self.points > 0 and self.nonzero == 0


class _Device:
    """Moves host float32 arrays to the backend under test and back."""

    def __init__(self, device: str) -> None:
        from .model import parse_devices  # the names AlexNet(devices=) takes, checked and normalised the same way

        if not isinstance(device, str) or "," in device:
            raise ValueError(f"device must be one device, 'cpu', 'cuda' ('gpu') or 'cuda:N', got {device!r}")
        self.device = parse_devices(device)[0]
        self.gpu = None if self.device == "cpu" else int(self.device[5:])
        self.xp = B.cupy_module() if self.gpu is not None else np

    def put(self, a):
        if self.gpu is None:
            return a
        with self.xp.cuda.Device(self.gpu):  # the ops run on their arrays' device
            return self.xp.asarray(a)

    def get(self, a):
        return B.to_host(a)


ROUNDING_ULPS = 16  # float32 ulps of the loss's magnitude that round-off may move it by


def _check_settings(points, tol, eps=1e-2, seed=0) -> tuple[int | None, float, float]:
    """points >= 1 (or None: every element), tol and eps > 0 (points=0 or tol=NaN reported every check as a FAIL
    with NaN errors), seed >= 0 (numpy's "expected non-negative integer" otherwise)."""
    points = None if points is None else B.integer(points, "points", low=1)
    B.integer(seed, "seed", low=0)
    tol, eps = B.real_number(tol, "tol"), B.real_number(eps, "eps")
    for name, value in (("tol", tol), ("eps", eps)):
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return points, tol, eps


def _errors(analytic, numeric, noise, tol: float) -> tuple[float, float, int, int]:
    """(max relative error, max error / allowed error, points with a gradient above round-off, points where
    round-off is allowed more than tol is) over the points."""
    # The floor from the compared points, both ways: from the whole analytic tensor, one wrong huge element
    # that was not compared (1e6, or inf) raised it so far that every compared point passed, 50% wrong or not.
    scale = float(np.max(np.maximum(np.abs(analytic), np.abs(numeric))))
    floor = max(1e-2 * scale, 1e-30)
    denom = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    diff = np.abs(analytic - numeric)
    nonzero = int(((np.abs(analytic) > noise) | (np.abs(numeric) > noise)).sum())
    return (float((diff / denom).max()), float((diff / (tol * denom + noise)).max()), nonzero,
            int((noise > tol * denom).sum()))


def _point_order(rng, grad) -> np.ndarray:
    """Elements in the order they are tried: one where the analytic gradient is non-zero, then one of all, in
    turn, each at random. Where most of a tensor's gradient is zero (fc7's weights in the tiny network: 12%
    non-zero), uniform picks compared only zeros and could not see a wrong value; the picks among all
    elements still catch a gradient wrongly left at zero."""
    everywhere = rng.permutation(grad.size)
    nonzero = rng.permutation(np.flatnonzero(grad))
    both = np.empty(nonzero.size + everywhere.size, np.int64)
    n = min(nonzero.size, everywhere.size)
    both[0:2 * n:2], both[1:2 * n:2] = nonzero[:n], everywhere[:n]
    both[2 * n:] = everywhere[n:]
    _, first = np.unique(both, return_index=True)
    return both[np.sort(first)]


def check_function(name: str, loss: Callable[[dict], tuple[float, float]], analytic: dict[str, np.ndarray],
                   inputs: dict[str, np.ndarray], *, pattern: Callable[[dict], Any] | None = None,
                   eps: float = 1e-2, points: int | None = 24, tol: float = DEFAULT_TOL, seed: int = 0) -> list[CheckResult]:
    """Compares `analytic` gradients of a scalar loss with central differences.

    loss(inputs) -> (value, magnitude), two numbers: magnitude (e.g. sum |output * r|) sizes the round-off
    allowance (anything else is a TypeError).

    inputs: host float32 C-contiguous arrays (perturbed in place, restored). analytic: {input name: gradient},
    each of its input's shape (another shape is a ValueError).
    pattern(inputs) -> something comparable with ==: when the perturbed inputs change it, the point
    sits at a kink and is skipped. points: elements compared per tensor (all if fewer, or None; chosen at random,
    every other one where the analytic gradient is non-zero), skipping at most 4*points. eps: the step relative to the tensor's root mean
    square (and to a quarter of the element when that is larger).
    """
    points, tol, eps = _check_settings(points, tol, eps, seed)
    _check_arguments(name, loss, analytic, inputs)
    rng = np.random.default_rng(seed)
    base = pattern(inputs) if pattern else None
    # Largest step first (round-off matters least); smaller ones only where the step crosses a kink.
    steps = (eps, eps / 4, eps / 16) if pattern else (eps,)
    results = []
    for key, grad in analytic.items():
        flat = inputs[key].reshape(-1)
        # Steps relative to the tensor's size: a weight of 0.004 and a pixel of 100 need different ones.
        size = max(float(np.sqrt(np.mean(np.square(flat, dtype=np.float64)))), 1e-30)
        g = np.asarray(grad, np.float64).reshape(-1)
        order = _point_order(rng, g)
        wanted = g.size if points is None else points
        got, want, noise, skipped = [], [], [], 0
        for i in order:
            if len(got) == wanted or skipped >= 4 * wanted:
                break
            numeric = _central_difference(loss, inputs, flat, i, steps, size, pattern, base)
            if numeric is None:
                skipped += 1
                continue
            got.append(g[i])
            want.append(numeric[0])
            noise.append(numeric[1])
        got, want, noise = np.array(got), np.array(want), np.array(noise)
        err, ratio, nonzero, roundoff = (_errors(got, want, noise, tol) if len(got)
                                         else (float("nan"), float("nan"), 0, 0))
        nonfinite = int((~np.isfinite(g)).sum())  # a NaN or inf a few points would likely not sample
        results.append(CheckResult(name, key, err, ratio, len(got), skipped, tol, nonzero, roundoff, nonfinite))
    return results


def _check_arguments(name, loss, analytic, inputs) -> None:
    """check_function's contract, said where broken: a gradient of another shape than its input was read on
    as many points as it had (shape (3,) for a 50-element input compared 3 of them, silently)."""
    if not callable(loss):
        raise TypeError(f"check_function({name!r}): loss must be a function inputs -> (value, magnitude), "
                        f"got {type(loss).__name__}")
    for what, d in (("analytic", analytic), ("inputs", inputs)):
        if not isinstance(d, Mapping):
            raise TypeError(f"check_function({name!r}): {what} must be a dict of arrays by input name, "
                            f"got {type(d).__name__}")
    unknown = [k for k in analytic if k not in inputs]
    if unknown:
        raise ValueError(f"check_function({name!r}): analytic gradients for {', '.join(map(repr, unknown))}, "
                         f"which inputs has not (it has {', '.join(map(repr, inputs)) or 'none'})")
    for key, grad in analytic.items():
        x = inputs[key]
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"check_function({name!r}): inputs[{key!r}] must be a host float32 numpy array, got "
                            + (f"an array of {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__))
        if not (x.flags.c_contiguous and x.flags.writeable):  # perturbed in place through reshape(-1)
            raise ValueError(f"check_function({name!r}): inputs[{key!r}] must be a writeable C-contiguous array "
                             "(it is perturbed in place): pass np.ascontiguousarray(...) of it")
        shape = np.shape(grad)
        if shape != x.shape:
            raise ValueError(f"check_function({name!r}): analytic[{key!r}] has shape {shape}, but inputs[{key!r}] "
                             f"has shape {x.shape}: a gradient has its input's shape")


def _loss_pair(loss, inputs) -> tuple[float, float]:
    """loss(inputs) as its contract says, (value, magnitude): two real numbers."""
    out = loss(inputs)
    if isinstance(out, (tuple, list)) and len(out) == 2:
        try:
            if all(np.ndim(v) == 0 for v in out):
                return float(out[0]), float(out[1])
        except (TypeError, ValueError):
            pass
    got = (f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list))
           else f"{type(out).__name__} {out!r}" if np.ndim(out) == 0 else f"a {type(out).__name__}")
    raise TypeError(f"loss(inputs) must return (value, magnitude), two numbers, got {got}: magnitude (e.g. "
                    "sum |output * r|) sizes the round-off allowance")


def _central_difference(loss, inputs, flat, i, steps, size, pattern, base):
    """(d loss / d flat[i], its round-off allowance) with the first step that crosses no kink, or None.

    A step is eps times the tensor's rms `size`, or times a quarter of the element where that is larger (so float32
    keeps the step's bits). It was eps * size * |element| / 4, in units squared: 12% of an element of a tensor
    of rms 50, and exact gradients of large-valued tensors failed."""
    orig = flat[i]
    try:
        for eps in steps:
            step = np.float32(eps * max(size, abs(float(orig)) / 4))
            plus, minus = np.float32(orig + step), np.float32(orig - step)
            flat[i] = plus
            lp, mp = _loss_pair(loss, inputs)
            if pattern and not _same(pattern(inputs), base):
                continue
            flat[i] = minus
            lm, mm = _loss_pair(loss, inputs)
            if pattern and not _same(pattern(inputs), base):
                continue
            h = float(plus) - float(minus)
            return (lp - lm) / h, ROUNDING_ULPS * 2.0**-24 * max(mp, mm) / h
        return None
    finally:
        flat[i] = orig


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return bool(np.array_equal(a, b))


def _dot(y, r) -> tuple[float, float]:
    yr = np.asarray(y, np.float64) * r
    return float(yr.sum()), float(np.abs(yr).sum())


def check_layers(device: str = "cpu", *, points: int | None = None, tol: float = LAYER_TOL,
                 seed: int = 0) -> list[CheckResult]:
    """Every layer type's backward against central differences, on small random shapes: every element of each
    gradient (points=None), or `points` of them."""
    _check_settings(points, tol, seed=seed)
    dev = _Device(device)
    rng = np.random.default_rng(seed)

    def randn(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    results: list[CheckResult] = []

    def layer(name, forward, backward, inputs, out_shape, pattern=None, eps=1e-2):
        """forward(dev arrays) -> y; backward(dev r, dev arrays) -> {name: grad}."""
        r = rng.standard_normal(out_shape)

        def loss(inp):
            return _dot(dev.get(forward({k: dev.put(v) for k, v in inp.items()})), r)

        grads = backward(dev.put(r.astype(np.float32)), {k: dev.put(v) for k, v in inputs.items()})
        analytic = {k: dev.get(v) for k, v in grads.items()}
        results.extend(check_function(name, loss, analytic, inputs, pattern=pattern, eps=eps, points=points,
                                      tol=tol, seed=seed))

    # conv2d: stride and padding as in conv1, groups as in conv2/4/5.
    for label, kw, cin in (("conv2d", dict(stride=2, padding=1), 3), ("conv2d groups=2", dict(padding=1, groups=2), 4)):
        x, w, b = randn(2, cin, 7, 7), randn(4, cin // kw.get("groups", 1), 3, 3, scale=0.5), randn(4)
        oshape = ops.conv2d(x, w, b, **kw).shape
        layer(label, lambda a, kw=kw: ops.conv2d(a["x"], a["w"], a["b"], **kw),
              lambda r, a, kw=kw: dict(zip(("x", "w", "b"), ops.conv2d_backward(r, a["x"], a["w"], **kw))),
              dict(x=x, w=w, b=b), oshape)

    x, w, b = randn(3, 7), randn(5, 7), randn(5)
    layer("linear", lambda a: ops.linear(a["x"], a["w"], a["b"]),
          lambda r, a: dict(zip(("x", "w", "b"), ops.linear_backward(r, a["x"], a["w"]))), dict(x=x, w=w, b=b), (3, 5))

    x = randn(2, 3, 4, 4)
    layer("relu", lambda a: ops.relu(a["x"]), lambda r, a: {"x": ops.relu_backward(r, ops.relu(a["x"]))},
          dict(x=x), x.shape, pattern=lambda a: a["x"] > 0)

    # LRN with a large alpha, so the normalisation term matters at unit-sized inputs.
    lrn_kw = dict(size=5, alpha=0.1, beta=0.75, k=2.0)
    x = randn(2, 7, 3, 3)
    layer("lrn", lambda a: ops.lrn(a["x"], **lrn_kw),
          lambda r, a: {"x": ops.lrn_backward(r, a["x"], ops.lrn(a["x"], **lrn_kw), **lrn_kw)}, dict(x=x), x.shape)

    x = randn(2, 2, 7, 7)

    def pool_route(a):
        # Where each window's maximum sits: a different answer means the step crossed a tie.
        xd = dev.put(a["x"])
        y = ops.max_pool(xd, size=3, stride=2)
        return dev.get(ops.max_pool_backward(dev.put(np.ones(y.shape, np.float32)), xd, y, size=3, stride=2))

    layer("max_pool", lambda a: ops.max_pool(a["x"], size=3, stride=2),
          lambda r, a: {"x": ops.max_pool_backward(r, a["x"], ops.max_pool(a["x"], size=3, stride=2), size=3, stride=2)},
          dict(x=x), (2, 2, 3, 3), pattern=pool_route)
    # The training path: the backward from the winners the forward stored.
    layer("max_pool (stored indices)", lambda a: ops.max_pool(a["x"], size=3, stride=2),
          lambda r, a: {"x": ops.max_pool_backward(r, a["x"], size=3, stride=2,
                                                   indices=ops.max_pool(a["x"], size=3, stride=2,
                                                                        return_indices=True)[1])},
          dict(x=x), (2, 2, 3, 3), pattern=pool_route)

    x = randn(4, 6)
    layer("dropout (fixed mask)", lambda a: ops.dropout(a["x"], p=0.5, seed=7)[0],
          lambda r, a: {"x": ops.dropout_backward(r, ops.dropout(a["x"], p=0.5, seed=7)[1], p=0.5)}, dict(x=x), x.shape)

    logits, labels = randn(4, 6), np.array([0, 5, 2, 2], np.int64)
    dev_labels = dev.put(labels)

    def ce_loss(a):
        value = float(dev.get(ops.softmax_cross_entropy(dev.put(a["logits"]), dev_labels)[0]))
        return value, abs(value)

    dlogits = dev.get(ops.softmax_cross_entropy(dev.put(logits), dev_labels)[1])
    results.extend(check_function("softmax_cross_entropy", ce_loss, {"logits": dlogits}, dict(logits=logits),
                                  points=points, tol=tol, seed=seed))
    return results


def _network_pattern(model) -> list:
    """Every ReLU's on/off map and every max-pool's routing in the model's last training forward."""
    out = []
    for name, c in sorted(model._cache.items()):
        if not isinstance(c, dict):
            continue
        if "relu" in c:
            out.append(B.to_host(c["relu"] > 0))
        if "pool_indices" in c:
            # Each window's winner, as the forward stored it: a different winner means the step crossed a tie.
            with model.place_of(name + ".weight").active():
                # Read back on the tower's stream, where the indices were computed: the caller's stream does
                # not wait for the tower's (non-blocking) one.
                out.append(B.to_host(c["pool_indices"]))
    return out


def check_network(device: str = "cpu", *, points: int = NETWORK_POINTS, tol: float = NETWORK_TOL, seed: int = 0,
                  batch: int = 3) -> list[CheckResult]:
    """Gradients of a tiny two-tower AlexNet (both towers on `device`, dropout on with fixed masks)
    w.r.t. every parameter, against central differences of sum(logits * r)."""
    _check_settings(points, tol, seed=seed)
    from .model import AlexNet

    dev = _Device(device)
    # He initialisation: with N(0, 0.01) the tiny network's gradients would be round-off sized.
    model = AlexNet(7, preset="tiny", devices=(dev.device, dev.device), seed=seed, init="he")
    rng = np.random.default_rng(seed + 1)
    s = model.input_size
    x = dev.put((rng.standard_normal((batch, 3, s, s)) * 50).astype(np.float32))  # pixel-sized inputs
    r = rng.standard_normal((batch, model.num_classes))
    host = {k: dev.get(v).copy() for k, v in model.parameters().items()}
    for k, v in host.items():
        if k.endswith(".bias"):
            # Random biases: with zero biases a unit whose inputs are all dead sits exactly on its ReLU's kink.
            v[...] = rng.uniform(0.05, 0.2, v.shape)
    step = 5  # fixed dropout masks

    def load(inp):
        for k, v in inp.items():
            model.parameters()[k][...] = dev.put(v)

    seen = {}

    def loss(inp):
        load(inp)
        value = _dot(dev.get(model.forward(x, train=True, step=step)), r)
        seen["pattern"] = _network_pattern(model)  # of the forward just run: check_function asks right after
        return value

    def pattern(inp):
        return seen["pattern"]

    loss(host)
    load(host)
    model.forward(x, train=True, step=step)
    model.backward(dev.put(r.astype(np.float32)))
    analytic = {k: dev.get(v) for k, v in model.gradients().items()}
    results = check_function("network (tiny, two towers)", loss, analytic, host, pattern=pattern, eps=3e-3,
                             points=points, tol=tol, seed=seed)
    load(host)
    return results


def run_all(device: str = "cpu", *, points: int | None = None, tol: float | None = None, seed: int = 0,
            network: bool = True) -> list[CheckResult]:
    """check_layers, then (network=True) check_network. By default the layers compare every element at
    LAYER_TOL and the network 6 points at NETWORK_TOL; `points` limits the layers' and gives the network a
    quarter of it (at least 2: each of its points takes two forward passes of the whole network per step
    tried), `tol` sets both."""
    results = check_layers(device, points=points, tol=LAYER_TOL if tol is None else tol, seed=seed)
    if network:
        results += check_network(device, points=NETWORK_POINTS if points is None else max(2, points // 4),
                                 tol=NETWORK_TOL if tol is None else tol, seed=seed)
    return results


def format_table(results: list[CheckResult]) -> str:
    """The CheckResults as the text table `pyalexnet gradcheck` prints: one row per gradient tensor, with
    "pass", "pass, zeros only" or "FAIL" in its last column."""
    rows = [("layer", "gradient", "max rel. error", "error/allowed", "points", "non-zero", "kinks skipped", "result")]
    for r in results:
        result = (f"FAIL ({r.nonfinite} NaN/inf)" if r.nonfinite else "FAIL" if not r.passed
                  else "pass, zeros only" if r.zeros_only else "pass")
        rows.append((r.check, r.tensor, f"{r.max_rel_error:.2e}", f"{r.worst_ratio:.2f}", str(r.points),
                     str(r.nonzero), str(r.skipped), result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
