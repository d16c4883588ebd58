"""Whole training steps (forward, loss, backward, SGD update) of the two-tower network.

Three kinds of step are timed:
- "composed": the network written out op by op on one backend (ours, PyTorch or numpy), with a
  timing mark after each layer's forward and backward, which gives the per-layer breakdown;
- "model": pyalexnet.AlexNet, the package's own network, timed whole;
- "autograd": the same network as a torch.nn.Module trained with loss.backward() and torch.optim.SGD,
  PyTorch as people use it, timed whole.
"""
from __future__ import annotations

import statistics

from . import spec
from .rows import _short
from .spec import Conv, Linear


def _draw_params(drawer, stages):
    out = []
    for _, w, b in spec.parameter_shapes(stages):
        out += [drawer.normal(w, 0.01), drawer.normal(b, 0.1)]
    return out


def composed_step(be, params, vels, x, labels, mark, stages=spec.PAPER, seed=0):
    n = x.shape[0]
    h, saved = x, []
    for i, st in enumerate(stages):
        L, w, b = st.layer, params[2 * i], params[2 * i + 1]
        ctx = {}
        if isinstance(L, Linear):
            if h.ndim == 4:
                ctx["shape4"] = tuple(h.shape)
                h = h.reshape(n, -1)
            ctx["x"] = h
            h = be.linear_fwd(h, w, b)
        else:
            ctx["x"] = h
            h = be.conv_fwd(h, w, b, L)
        if st.relu:
            h, ctx["relu"] = be.relu_fwd(h)
        if st.lrn:
            h, ctx["lrn"] = be.lrn_fwd(h)
        if st.pool:
            h, ctx["pool"] = be.pool_fwd(h)
        if st.dropout:
            h, ctx["dropout"] = be.dropout_fwd(h, seed + i)
        saved.append(ctx)
        mark(f"{L.name} fwd")
    _, d = be.xent(h, labels)
    mark("loss")
    grads = [None] * len(params)
    for i in reversed(range(len(stages))):
        st, ctx = stages[i], saved[i]
        L, w = st.layer, params[2 * i]
        if st.dropout:
            d = be.dropout_bwd(d, ctx["dropout"])
        if st.pool:
            d = be.pool_bwd(d, ctx["pool"])
        if st.lrn:
            d = be.lrn_bwd(d, ctx["lrn"])
        if st.relu:
            d = be.relu_bwd(d, ctx["relu"])
        if isinstance(L, Linear):
            d, dw, db = be.linear_bwd(d, ctx["x"], w)
            if "shape4" in ctx:
                d = d.reshape(ctx["shape4"])
        else:
            # Training never needs the image's gradient.
            d, dw, db = be.conv_bwd(d, ctx["x"], w, L, need_dx=i > 0)
        grads[2 * i], grads[2 * i + 1] = dw, db
        mark(f"{L.name} bwd")
    be.sgd(params, grads, vels)
    mark("sgd update")


def _timed_runs(timer, one_step, repeats):
    """Runs one_step(mark) `repeats` times after a warm-up; per-segment and total medians."""
    per_segment: dict[str, list[float]] = {}
    totals = []
    for _ in range(repeats):
        timer.flush()
        m = timer.marker()
        one_step(m)
        d = m.durations()
        totals.append(sum(ms for _, ms in d))
        for name, ms in d:
            per_segment.setdefault(name, []).append(ms)
    return totals, per_segment


def _summary(totals, n, per_segment=None):
    med = statistics.median(totals)
    out = {"status": "ok", "median_ms": med, "min_ms": min(totals), "max_ms": max(totals), "repeats": len(totals),
           "images_per_s": n / (med * 1e-3)}
    if per_segment:
        out["segments"] = [{"name": k, "median_ms": statistics.median(v)} for k, v in per_segment.items()]
    return out


def _guard(fn):
    try:
        return fn()
    except Exception as exc:  # reported, not fatal: the rest of the benchmark still runs
        return {"status": "error", "error": _short(exc)}


def run_composed(be, timer, drawer, n, *, repeats, warmup, stages=spec.PAPER, image=spec.IMAGE) -> dict:
    def go():
        with be.context():
            params = [be.asarray(p) for p in _draw_params(drawer, stages)]
            vels = [be.copy(p) * 0 for p in params]
            x = be.asarray(drawer.normal((n, *image)))
            labels = be.labels(drawer.labels(n, spec.NUM_CLASSES))
            step = lambda mark: composed_step(be, params, vels, x, labels, mark, stages)   # noqa: E731
            for _ in range(warmup):
                step(lambda name: None)
            timer.sync()
            totals, seg = _timed_runs(timer, step, repeats)
            return _summary(totals, n, seg)
    return _guard(go)


def torch_module(torch, stages=spec.PAPER):
    nn = torch.nn
    layers = []
    for st in stages:
        L = st.layer
        if isinstance(L, Conv):
            layers.append(nn.Conv2d(L.c, L.k, L.r, L.stride, L.pad, groups=L.groups))
        else:
            if not any(isinstance(m, nn.Flatten) for m in layers):
                layers.append(nn.Flatten())
            layers.append(nn.Linear(L.fin, L.fout))
        if st.relu:
            layers.append(nn.ReLU(inplace=False))
        if st.lrn:
            layers.append(nn.LocalResponseNorm(spec.LRN["size"], spec.LRN["alpha"] * spec.LRN["size"],
                                               spec.LRN["beta"], spec.LRN["k"]))
        if st.pool:
            layers.append(nn.MaxPool2d(spec.POOL["size"], spec.POOL["stride"]))
        if st.dropout:
            layers.append(nn.Dropout(spec.DROPOUT_P))
    return nn.Sequential(*layers)


def run_torch_autograd(be, timer, drawer, n, *, repeats, warmup, stages=spec.PAPER, image=spec.IMAGE) -> dict:
    def go():
        torch, F = be.torch, be.F
        with be.context():
            model = torch_module(torch, stages).to("cuda" if be.device == "cuda" else "cpu").train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            x = be.asarray(drawer.normal((n, *image)))
            labels = be.labels(drawer.labels(n, spec.NUM_CLASSES))

            def step(mark):
                opt.zero_grad()
                F.cross_entropy(model(x), labels).backward()
                opt.step()
                mark("step")
            for _ in range(warmup):
                step(lambda name: None)
            timer.sync()
            totals, _ = _timed_runs(timer, step, repeats)
            return _summary(totals, n)
    return _guard(go)


def run_model(timer, drawer, xp, n, device, *, preset, repeats, warmup) -> dict:
    """pyalexnet.AlexNet's own training step (both towers on one device), the one train() takes
    (pyalexnet.sgd_step): forward, loss, backward, the batch's mistakes counted, SGD update of every
    parameter."""
    def go():
        import pyalexnet

        model = pyalexnet.AlexNet(spec.NUM_CLASSES, devices="cpu" if device == "cpu" else "cuda:0",
                                  seed=0, preset=preset)
        vels = pyalexnet.sgd_velocities(model)
        x = drawer.normal((n, 3, model.input_size, model.input_size))
        labels = drawer.labels(n, spec.NUM_CLASSES).astype(xp.int32)

        def step(mark):
            pyalexnet.sgd_step(model, x, labels, vels, lr=0.01)
            mark("step")
        for _ in range(warmup):
            step(lambda name: None)
        timer.sync()
        totals, _ = _timed_runs(timer, step, repeats)
        out = _summary(totals, n)
        out.update(preset=preset, parameters=model.num_parameters(), input_size=model.input_size)
        return out
    return _guard(go)

