"""Seeded fuzzing of pyalexnet.ops and pyalexnet._C with bad input.

The rule under test: bad input gets a ValueError, TypeError, MemoryError or OverflowError with a message, never a
crash, a hang or a silent wrong answer. Each batch of cases runs in a child process (this file run as a script),
so a segfault or a hang fails the test naming the case that was running, instead of killing pytest. The child
caps its address space, so a huge allocation is a MemoryError there, not an OOM kill of the machine.

Where a call on odd but valid input succeeds (a non-contiguous or reversed view, a read-only or float64 array),
its answer is compared with the same call on contiguous float32 copies: a difference is a silent wrong answer.
"""
from __future__ import annotations

import os
import subprocess
import sys
import traceback

import numpy as np

ACCEPTED_ERRORS = (ValueError, TypeError, MemoryError, OverflowError)
CHILD_ADDRESS_SPACE = 6 << 30  # bytes: the child's allocations beyond this fail with MemoryError
BATCH_TIMEOUT_S = 60
SEEDS = (0, 1)


# --- inputs ---------------------------------------------------------------------------------------------------


def huge_view(shape):
    """A float32 array of `shape` (dimensions up to 2**40) with every stride 0: nothing is allocated."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape, (0,) * len(shape))


def non_contiguous(a):
    """`a`'s values in a view whose last axis steps over every other element of a larger array."""
    base = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else np.zeros(2, a.dtype)
    if a.ndim == 0:
        return a
    view = base[..., ::2]
    view[...] = a
    return view


def reversed_view(a):
    """`a`'s values in a view with negative strides on every axis."""
    if a.ndim == 0:
        return a
    flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
    return flipped[(slice(None, None, -1),) * a.ndim]


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def misaligned(a):
    """`a`'s values at an odd byte offset (a valid, unaligned numpy view)."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = np.frombuffer(raw.data, a.dtype, a.size, offset=1).reshape(a.shape)
    view[...] = a
    return view


# Perturbations that keep the values: the call must succeed or fail exactly as on contiguous float32 copies.
SAME_VALUES = {
    "non_contiguous": non_contiguous,
    "reversed": reversed_view,
    "read_only": read_only,
    "float64": lambda a: a.astype(np.float64),
    "misaligned": misaligned,
}


def bad_arrays(a, rng):
    """Perturbations of array `a` that must be refused or give an answer of their own shape."""
    out = {
        "float16": a.astype(np.float16),
        "int32": a.astype(np.int32),
        "bool": a.astype(bool),
        "complex64": a.astype(np.complex64),
        "object": a.astype(object),
        "big_endian": a.astype(">f4"),
        "extra_dim": a[None],
        "scalar": np.float32(1.5),
        "zero_d": np.array(1.5, np.float32),
        "list": a.tolist(),
        "none": None,
        "string": "x",
    }
    if a.ndim:
        out["dropped_dim"] = a.reshape(-1) if a.ndim > 1 else np.array(a[0])
        for axis in range(a.ndim):
            zero = list(a.shape)
            zero[axis] = 0
            out[f"zero_dim{axis}"] = np.zeros(zero, np.float32)
            grown = list(a.shape)
            grown[axis] += int(rng.integers(1, 3))
            out[f"grown_dim{axis}"] = rng.standard_normal(grown).astype(np.float32)
            for huge in (2**31, 2**40):
                shape = list(a.shape)
                shape[axis] = huge
                out[f"huge{huge.bit_length() - 1}_dim{axis}"] = huge_view(shape)
        # no elements, but the other dimensions huge: loops over them alone must not run (for minutes, with the
        # GIL released) nor size a workspace by them
        for axis in range(a.ndim):
            shape = [2**20] * a.ndim  # (at most 4 dimensions here: 2^60 elements but for the zero, within numpy's limit)
            shape[axis] = 0
            out[f"empty_huge_dim{axis}"] = np.zeros(shape, a.dtype if a.dtype != object else np.float32)
    return out


BAD_INTEGERS = [-1, 0, 2**31, 2**40, 2**63, 2**64, True, 1.5, float("nan"), "3", None, np.int64(-5), np.uint64(2**63)]
BAD_REALS = [float("nan"), float("inf"), -float("inf"), 1e39, -1.0, 0.0, 1e-45, True, "1", None, np.float32("nan"),
             2**70, -1e-30]


# --- the calls ------------------------------------------------------------------------------------------------


def images(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def op_cases(rng):
    """(name, function, arrays, hypers): a valid call of every op, with its array arguments by position and its
    hyper-parameters by keyword; the fuzzer perturbs one of them at a time."""
    from pyalexnet import ops
    from pyalexnet.data import augment

    x = images(rng, (2, 4, 7, 7))
    w = images(rng, (6, 2, 3, 3))
    b = images(rng, (6,))
    dy_conv = images(rng, (2, 6, 4, 4))
    lrn_y = ops.lrn(x, size=3)
    pool_y = ops.max_pool(x, size=3, stride=2)
    logits = images(rng, (5, 10))
    labels = rng.integers(0, 10, 5)
    mask = ops.dropout(x, p=0.5, seed=3)[1]
    fc_x, fc_w = images(rng, (3, 8)), images(rng, (5, 8))
    return [
        ("conv2d", lambda x_, w_, b_, **k: ops.conv2d(x_, w_, b_, **k), [x, w, b],
         dict(stride=2, padding=1, groups=2)),
        ("conv2d_backward", lambda dy_, x_, w_, **k: ops.conv2d_backward(dy_, x_, w_, **k), [dy_conv, x, w],
         dict(stride=2, padding=1, groups=2)),
        ("lrn", lambda x_, **k: ops.lrn(x_, **k), [x], dict(size=3, alpha=1e-2, beta=0.75, k=2.0)),
        ("lrn_backward", lambda dy_, x_, y_, **k: ops.lrn_backward(dy_, x_, y_, **k), [x * 0.5, x, lrn_y],
         dict(size=3, alpha=1e-4, beta=0.75, k=2.0)),
        ("max_pool", lambda x_, **k: ops.max_pool(x_, **k), [x], dict(size=3, stride=2)),
        ("max_pool_backward", lambda dy_, x_, y_, **k: ops.max_pool_backward(dy_, x_, y_, **k),
         [pool_y * 2, x, pool_y], dict(size=3, stride=2)),
        ("dropout", lambda x_, **k: ops.dropout(x_, **k), [x], dict(p=0.5, seed=7)),
        ("dropout_backward", lambda dy_, m_, **k: ops.dropout_backward(dy_, m_, **k), [x, mask], dict(p=0.5)),
        ("softmax", lambda x_: ops.softmax(x_), [logits], {}),
        ("softmax_cross_entropy", lambda x_, l_: ops.softmax_cross_entropy(x_, l_), [logits, labels], {}),
        ("linear", lambda x_, w_, b_: ops.linear(x_, w_, b_), [fc_x, fc_w, images(rng, (5,))], {}),
        ("linear_backward", lambda dy_, x_, w_: ops.linear_backward(dy_, x_, w_), [images(rng, (3, 5)), fc_x, fc_w],
         {}),
        ("relu", lambda x_: ops.relu(x_), [x], {}),
        ("relu_backward", lambda dy_, y_: ops.relu_backward(dy_, y_), [x, ops.relu(x)], {}),
        ("data.augment", lambda im, mean, off, fl, li, idx, **k: augment(im, 6, mean, offsets=off, flips=fl,
                                                                          lighting=li, index=idx),
         [rng.integers(0, 256, (3, 9, 8, 3)).astype(np.uint8), images(rng, (9, 8, 3)),
          np.array([[1, 0], [3, 2]], np.int32), np.array([1, 0], np.uint8), images(rng, (2, 3)),
          np.array([2, 0], np.int64)], {}),
        ("sgd_update", sgd_on_copies, [fc_w, fc_w * 0.1, fc_w * 0.01], dict(lr=0.1, momentum=0.9,
                                                                             weight_decay=5e-4)),
    ]


def sgd_on_copies(w, dw, v, **hyper):
    """sgd_update on the arrays given (it updates w and v in place), returning them to compare."""
    from pyalexnet import ops

    ops.sgd_update(w, dw, v, **hyper)
    return w, v


def c_cases(rng):
    """(name, function, arrays, hypers, written): valid calls of the _C functions; `written` are the positions
    of the arrays the call writes (the fuzzer also aliases them with inputs)."""
    from pyalexnet import _C

    x = images(rng, (2, 4, 7, 7))
    pool_y = np.empty((2, 4, 3, 3), np.float32)
    _C.max_pool_forward(x, pool_y, 3, 2)
    winners = np.zeros((2, 4, 3, 3), np.uint8)
    n_ws = _C.lrn_workspace_floats([2, 4, 7, 7], 3, False)
    w = images(rng, (6, 2, 3, 3))
    conv_ws = np.zeros(max(1, _C.conv2d_workspace_size([2, 4, 7, 7], [6, 2, 3, 3], 2, 1, 2, "forward", False)),
                       np.float32)
    data_ws = np.zeros(max(1, _C.conv2d_workspace_size([2, 4, 7, 7], [6, 2, 3, 3], 2, 1, 2, "backward_data", False)),
                       np.float32)
    filter_ws = np.zeros(max(1, _C.conv2d_workspace_size([2, 4, 7, 7], [6, 2, 3, 3], 2, 1, 2, "backward_filter",
                                                         False)), np.float32)
    bias_ws = np.zeros(max(1, _C.conv2d_workspace_size([2, 6, 4, 4], [6, 6, 1, 1], 1, 0, 1, "backward_bias", False)),
                       np.float32)
    logits = images(rng, (5, 10))
    empty = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    return [
        ("relu_forward", _C.relu_forward, [x, empty(*x.shape)], {}, [1]),
        ("relu_backward", _C.relu_backward, [x, x, empty(*x.shape)], {}, [2]),
        ("lrn_forward", _C.lrn_forward, [x, empty(*x.shape)], dict(size=3, alpha=1e-2, beta=0.75, k=2.0), [1]),
        ("lrn_backward", _C.lrn_backward, [x, x, x, empty(*x.shape), np.zeros(max(n_ws, 1), np.float32)],
         dict(size=3, alpha=1e-2, beta=0.75, k=2.0), [3, 4]),
        ("max_pool_forward", _C.max_pool_forward, [x, empty(2, 4, 3, 3)], dict(size=3, stride=2), [1]),
        ("max_pool_backward", _C.max_pool_backward, [pool_y, x, pool_y, empty(*x.shape)], dict(size=3, stride=2),
         [3]),
        ("max_pool_forward_with_indices", _C.max_pool_forward_with_indices,
         [x, empty(2, 4, 3, 3), np.zeros((2, 4, 3, 3), np.uint8)], dict(size=3, stride=2), [1, 2]),
        ("max_pool_backward_from_indices", _C.max_pool_backward_from_indices, [pool_y, winners, empty(*x.shape)],
         dict(size=3, stride=2), [2]),
        ("dropout_forward", _C.dropout_forward, [x, empty(*x.shape), np.zeros(x.shape, np.uint8)],
         dict(seed=5, p=0.5), [1, 2]),
        ("dropout_backward", _C.dropout_backward, [x, np.ones(x.shape, np.uint8), empty(*x.shape)], dict(p=0.5),
         [2]),
        ("softmax_forward", _C.softmax_forward, [logits, empty(5, 10)], {}, [1]),
        ("softmax_cross_entropy", _C.softmax_cross_entropy,
         [logits, rng.integers(0, 10, 5), empty(5), empty(5, 10), np.zeros(3), np.zeros(1, np.uint32)], {},
         [2, 3, 4, 5]),
        ("conv2d_forward", lambda x_, w_, b_, y_, ws_, **k: _C.conv2d_forward(x_, w_, b_, y_, ws_, **k),
         [x, w, images(rng, (6,)), empty(2, 6, 4, 4), conv_ws], dict(stride=2, padding=1, groups=2), [3, 4]),
        ("conv2d_backward_data", _C.conv2d_backward_data, [images(rng, (2, 6, 4, 4)), w, empty(*x.shape), data_ws],
         dict(stride=2, padding=1, groups=2), [2, 3]),
        ("conv2d_backward_filter", _C.conv2d_backward_filter, [images(rng, (2, 6, 4, 4)), x, empty(6, 2, 3, 3),
                                                               filter_ws], dict(stride=2, padding=1, groups=2), [2, 3]),
        ("conv2d_backward_bias", _C.conv2d_backward_bias, [images(rng, (2, 6, 4, 4)), empty(6), bias_ws], {}, [1, 2]),
        ("augment", _C.augment,
         [rng.integers(0, 256, (3, 9, 8, 3)).astype(np.uint8), images(rng, (9, 8, 3)), np.array([2, 0], np.int64),
          np.array([[1, 0], [3, 2]], np.int32), np.array([1, 0], np.uint8), images(rng, (2, 3)),
          empty(2, 3, 6, 6)], {}, [6]),
        ("sgd_update", lambda w_, dw_, v_, **k: _C.sgd_update([w_], [dw_], [v_], **k),
         [images(rng, (5, 8)), images(rng, (5, 8)), images(rng, (5, 8))],
         dict(lr=0.1, momentum=0.9, weight_decay=5e-4), [0, 2]),
    ]


def shape_cases():
    """The shape and size helpers of _C, with shapes and sizes from the edges of their ranges."""
    from pyalexnet import _C

    edges = [0, 1, 3, 2**31 - 1, 2**31, 2**40, 2**62, -1, -2**62]
    cases = []
    for i, big in enumerate(edges):
        cases.append((f"conv2d_shape_x{i}", lambda v=big: _C.conv2d_shape([1, 4, v, v], [2, 4, 3, 3], 1, 1, 1)))
        cases.append((f"conv2d_shape_pad{i}", lambda v=big: _C.conv2d_shape([1, 4, 5, 5], [2, 4, 3, 3], 1, v, 1)))
        cases.append((f"conv2d_shape_w{i}", lambda v=big: _C.conv2d_shape([1, 4, 5, 5], [2, 4, v, v], 1, 2**20, 1)))
        cases.append((f"conv2d_shape_groups{i}", lambda v=big: _C.conv2d_shape([1, 4, 5, 5], [2, 4, 3, 3], 1, 1, v)))
        for p in ("forward", "backward_data", "backward_filter", "backward_bias"):
            cases.append((f"conv2d_workspace_{p}{i}", lambda v=big, p=p: _C.conv2d_workspace_size(
                [v, 4, 5, 5], [2, 4, 3, 3], 1, 1, 1, p, False)))
            cases.append((f"conv2d_workspace_C_{p}{i}", lambda v=big, p=p: _C.conv2d_workspace_size(
                [1, v, 5, 5], [2, v, 3, 3], 1, 1, 1, p, False)))
        cases.append((f"lrn_workspace{i}", lambda v=big: _C.lrn_workspace_floats([v, 4, v, 5], 3, False)))
        cases.append((f"lrn_workspace_size{i}", lambda v=big: _C.lrn_workspace_floats([2, 4, 5, 5], v, False)))
        cases.append((f"max_pool_output_shape{i}", lambda v=big: _C.max_pool_output_shape([1, 1, v, v], 3, 2)))
        cases.append((f"max_pool_output_size{i}", lambda v=big: _C.max_pool_output_shape([1, 1, 9, 9], v, 1)))
    cases.append(("philox_bad", lambda: _C.philox4x32_10([1, 2, 3], [1, 2])))
    cases.append(("philox_negative", lambda: _C.philox4x32_10([-1, 2, 3, 4], [1, 2])))
    return cases


class FakeCudaArray:
    """An object exposing a hand-written __cuda_array_interface__ (no GPU memory behind it)."""

    def __init__(self, interface):
        self.__cuda_array_interface__ = interface


def cuda_interface_cases(rng):
    """Malformed __cuda_array_interface__ dicts reaching _C: (label, call, words its refusal must contain).
    Refused for what is wrong with them, before any device lookup or launch: a CPU-only build refuses every
    GPU array later anyway, which must not be what refuses these."""
    from pyalexnet import _C

    valid = dict(shape=(2, 3), typestr="<f4", data=(256, False), version=3)
    missing = object()
    variants = {
        "strides_shorter_than_shape": dict(strides=(4,)),
        "strides_longer_than_shape": dict(strides=(12, 4, 4)),
        "strides_not_integers": dict(strides=(None, 4)),
        "negative_dimension": dict(shape=(-1, 3)),
        "dimension_beyond_int64": dict(shape=(2**64, 3)),
        "elements_beyond_2_62": dict(shape=(2**40, 2**40)),
        "shape_of_strings": dict(shape=("2", 3)),
        "shape_not_a_tuple": dict(shape=6),
        "typestr_not_a_str": dict(typestr=4),
        "typestr_truncated": dict(typestr="f"),
        "no_typestr": dict(typestr=missing),
        "no_shape": dict(shape=missing),
        "no_data": dict(data=missing),
        "data_none": dict(data=None),
        "data_one_entry": dict(data=(256,)),
        "data_negative_pointer": dict(data=(-256, False)),
        "data_pointer_beyond_64_bits": dict(data=(2**65, False)),
        "data_null_with_elements": dict(data=(0, False)),
        "masked": dict(mask=FakeCudaArray(dict(shape=(2, 3), typestr="|b1", data=(512, False), version=3))),
        "not_a_dict": None,
    }
    cases = []
    for name, change in variants.items():
        if change is None:
            interface = 5
        else:
            interface = {k: v for k, v in {**valid, **change}.items() if v is not missing}
        for call_name, call in (
                ("relu_forward", lambda f: _C.relu_forward(f, f)),
                ("relu_forward_numpy_x", lambda f: _C.relu_forward(np.zeros((2, 3), np.float32), f)),
                ("softmax_forward", lambda f: _C.softmax_forward(f, np.zeros((2, 3), np.float32))),
                ("sgd_update", lambda f: _C.sgd_update([f], [f], [f], 0.1, 0.9, 0.0))):
            # a typestr naming no dtype is refused as a dtype, as a numpy array's would be
            words = "float32" if name == "typestr_truncated" else "__cuda_array_interface__"
            cases.append((f"{call_name}[{name}]", lambda call=call, i=interface: call(FakeCudaArray(i)), words))
    return cases


def value_cases(rng):
    """Arguments whose values, not shapes, are out of range: labels outside [0, classes), winner bytes that
    name no element of their window, dropout masks other than 0/1; and numpy masked arrays, which must be
    refused (a third entry: words the refusal must contain), not computed on with their masked elements."""
    from pyalexnet import _C, ops

    x = images(rng, (2, 3, 7, 7))
    logits = images(rng, (4, 5))
    cases = []
    for label in (-1, 5, 2**31 - 1, 2**40, -2**62):
        for dtype in (np.int32, np.int64):
            if np.iinfo(dtype).min > label or np.iinfo(dtype).max < label:
                continue
            labels = np.array([0, label, 1, 2], dtype)
            cases.append((f"softmax_cross_entropy[label={label},{np.dtype(dtype).name}]",
                          lambda labels=labels: ops.softmax_cross_entropy(logits, labels)))
            cases.append((f"_C.softmax_cross_entropy[label={label},{np.dtype(dtype).name}]",
                          lambda labels=labels: _C.softmax_cross_entropy(
                              logits, labels, np.empty(4, np.float32), np.empty((4, 5), np.float32), np.zeros(3),
                              np.zeros(1, np.uint32))))
    y, winners = ops.max_pool(x, size=3, stride=2, return_indices=True)
    for byte in (9, 200, 255):
        bad = winners.copy()
        bad.reshape(-1)[rng.integers(0, bad.size)] = byte
        cases.append((f"max_pool_backward[winner={byte}]",
                      lambda bad=bad: ops.max_pool_backward(y, x, indices=bad, size=3, stride=2)))
        cases.append((f"_C.max_pool_backward_from_indices[winner={byte}]",
                      lambda bad=bad: _C.max_pool_backward_from_indices(y, bad, np.empty_like(x), 3, 2)))
    pictures = rng.integers(0, 256, (3, 9, 8, 3)).astype(np.uint8)
    augment_args = dict(images=pictures, mean_image=np.zeros((9, 8, 3), np.float32),
                        index=np.array([2, 0], np.int64), offsets=np.array([[1, 0], [3, 2]], np.int32),
                        flips=np.array([1, 0], np.uint8), lighting=np.zeros((2, 3), np.float32),
                        out=np.empty((2, 3, 6, 6), np.float32))
    for name, value in [("index", np.array([3, 0], np.int64)), ("index", np.array([-1, 0], np.int64)),
                        ("index", np.array([2**62, 0], np.int64)), ("offsets", np.array([[4, 0], [0, 0]], np.int32)),
                        ("offsets", np.array([[-1, 0], [0, 0]], np.int32)),
                        ("offsets", np.array([[0, 2**31 - 1], [0, 0]], np.int32)),
                        ("flips", np.array([2, 0], np.uint8))]:
        cases.append((f"_C.augment[{name}={value.tolist()}]",
                      lambda name=name, value=value: _C.augment(**{**augment_args, name: value}), name))
    mask = np.full(x.shape, 2, np.uint8)
    hidden = rng.random(x.shape) < 0.3
    masked_x = np.ma.masked_array(x, mask=hidden)
    masked_logits = np.ma.masked_array(logits, mask=rng.random(logits.shape) < 0.3)
    masked_calls = [
        ("relu", lambda: ops.relu(masked_x)),
        ("lrn", lambda: ops.lrn(masked_x)),
        ("max_pool", lambda: ops.max_pool(masked_x)),
        ("conv2d", lambda: ops.conv2d(masked_x, images(rng, (2, 3, 3, 3)))),
        ("softmax", lambda: ops.softmax(masked_logits)),
        ("softmax_cross_entropy", lambda: ops.softmax_cross_entropy(masked_logits, np.zeros(4, np.int64))),
        ("_C.relu_forward", lambda: _C.relu_forward(masked_x, np.empty_like(x))),
        ("_C.softmax_forward_output", lambda: _C.softmax_forward(logits, np.ma.masked_array(np.empty_like(logits)))),
        # linear's product is numpy's (no binding reads it): refused in ops, with the bindings' words
        ("linear", lambda: ops.linear(masked_logits, images(rng, (2, logits.shape[1])))),
        ("linear_backward", lambda: ops.linear_backward(images(rng, (logits.shape[0], 2)), masked_logits,
                                                        images(rng, (2, logits.shape[1])))),
    ]
    for name, call in masked_calls:
        cases.append((f"{name}[masked_array]", call, "masked"))
    cases.append(("dropout_backward[mask=2]", lambda: ops.dropout_backward(x, mask, p=0.5)))
    return cases


# --- odd but valid geometry, against float64 numpy references ------------------------------------------------

from numpy.lib.stride_tricks import sliding_window_view as windows  # noqa: E402


def conv_ref(x, w, b, s, p, g):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    cols = windows(xp, (R, S), axis=(2, 3))[:, :, ::s, ::s]  # N C P Q R S
    Kg = K // g
    y = np.concatenate([np.einsum("ncpqrs,kcrs->nkpq", cols[:, i*Cg:(i+1)*Cg], w[i*Kg:(i+1)*Kg].astype(np.float64))
                        for i in range(g)], axis=1)
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv_bwd_ref(dy, x, w, s, p, g):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P, Q = dy.shape[2:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    cols = windows(xp, (R, S), axis=(2, 3))[:, :, ::s, ::s]
    Kg = K // g
    dy64 = dy.astype(np.float64)
    dw = np.concatenate([np.einsum("ncpqrs,nkpq->kcrs", cols[:, i*Cg:(i+1)*Cg], dy64[:, i*Kg:(i+1)*Kg]) for i in range(g)])
    dxp = np.zeros_like(xp)
    for r in range(R):
        for c in range(S):
            for i in range(g):
                dxp[:, i*Cg:(i+1)*Cg, r:r + s*(P-1) + 1:s, c:c + s*(Q-1) + 1:s] += np.einsum(
                    "nkpq,kc->ncpq", dy64[:, i*Kg:(i+1)*Kg], w[i*Kg:(i+1)*Kg, :, r, c])
    dx = dxp[:, :, p:p + H, p:p + W]
    return dx, dw, dy64.sum(axis=(0, 2, 3))


def pool_ref(x, size, stride):
    win = windows(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]
    flat = win.reshape(win.shape[:4] + (-1,))
    y = flat.max(-1)
    arg = flat.argmax(-1)
    return y, arg


def pool_bwd_ref(dy, x, size, stride):
    y, arg = pool_ref(x, size, stride)
    dx = np.zeros(x.shape, np.float64)
    N, C, OH, OW = y.shape
    for oh in range(OH):
        for ow in range(OW):
            dh, dw = np.divmod(arg[:, :, oh, ow], size)
            n, c = np.indices((N, C))
            np.add.at(dx, (n, c, oh*stride + dh, ow*stride + dw), dy[:, :, oh, ow])
    return dx


def lrn_ref(x, size, alpha, beta, k):
    x64 = x.astype(np.float64)
    C = x.shape[1]
    h = size // 2
    sq = x64 ** 2
    s = np.stack([sq[:, max(0, c-h):c+h+1].sum(1) for c in range(C)], 1)
    return x64 / (k + alpha * s) ** beta


def close(got, want, name):
    """None, or a description of the largest difference beyond float32 rounding of a sum of products."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, want {want.shape}"
    if not got.size:
        return None
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    return f"{name}: off by {err:.3g} (scale {scale:.3g})" if err > 2e-4 * scale else None


def geometry_cases(rng):
    """Random valid calls at the edges of the geometry (1x1 images, filters as large as the padded input,
    strides beyond the filter, windows beyond the channel count, ties, wide rows): each answer against a
    float64 numpy reference. A wrong answer here has no error to show for it."""
    from pyalexnet import ops

    cases = []
    for i in range(40):
        g = int(rng.integers(1, 4))
        N, Cg, Kg = int(rng.integers(0, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        H, W = (int(v) for v in rng.integers(1, 70 if i % 5 == 0 else 14, 2))
        p, s = int(rng.integers(0, 4)), int(rng.integers(1, 6))
        R, S = int(rng.integers(1, min(H + 2 * p, 7) + 1)), int(rng.integers(1, min(W + 2 * p, 7) + 1))
        algorithm = ("auto", "direct", "winograd", "fft")[i % 4]
        x, w = images(rng, (N, g * Cg, H, W)), images(rng, (g * Kg, Cg, R, S))
        b = images(rng, (g * Kg,)) if i % 2 else None
        label = f"conv2d[x{x.shape},w{w.shape},stride={s},padding={p},groups={g},{algorithm}]"

        def conv_check(x=x, w=w, b=b, s=s, p=p, g=g, algorithm=algorithm):
            kind, y = outcome(lambda: ops.conv2d(x, w, b, stride=s, padding=p, groups=g, algorithm=algorithm))
            if kind == "error":
                return None if algorithm in ("winograd", "fft") else f"refused a valid call: {y!r}"
            problem = close(y, conv_ref(x, w, b, s, p, g), "y")
            if problem:
                return problem
            dy = images(rng, y.shape)
            grads = ops.conv2d_backward(dy, x, w, stride=s, padding=p, groups=g, algorithm=algorithm)
            for name, got, want in zip(("dx", "dw", "db"), grads, conv_bwd_ref(dy, x, w, s, p, g)):
                problem = close(got, want, name)
                if problem:
                    return problem
            return None
        cases.append((label, conv_check))

    for i in range(40):
        N, C = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        size = int(rng.integers(1, 18 if i % 3 else 5))
        stride = int(rng.integers(1, size + 1))
        H = int(rng.integers(size, size + (300 if i % 7 == 0 else 20)))
        W = int(rng.integers(size, size + (300 if i % 5 == 0 else 20)))
        # few distinct values: ties, where the first maximum in row-major order must win
        x = (rng.integers(-2, 3, (N, C, H, W)) if i % 2 else rng.standard_normal((N, C, H, W))).astype(np.float32)
        label = f"max_pool[x{x.shape},size={size},stride={stride}]"

        def pool_check(x=x, size=size, stride=stride):
            y_want, winners_want = pool_ref(x, size, stride)
            y = ops.max_pool(x, size=size, stride=stride)
            if not np.array_equal(y, y_want):
                return "y differs from the windows' maxima"
            dy = images(rng, y.shape)
            dx_want = pool_bwd_ref(dy, x, size, stride)
            problem = close(ops.max_pool_backward(dy, x, y, size=size, stride=stride), dx_want, "dx from y")
            if problem or size > 16:
                return problem
            y2, winners = ops.max_pool(x, size=size, stride=stride, return_indices=True)
            if not (np.array_equal(y2, y) and np.array_equal(winners, winners_want)):
                return "return_indices: y or the winner bytes differ from the first maxima"
            return close(ops.max_pool_backward(dy, x, indices=winners, size=size, stride=stride), dx_want,
                         "dx from indices")
        cases.append((label, pool_check))

    for i in range(25):
        N, C, H, W = int(rng.integers(1, 3)), int(rng.integers(1, 14)), int(rng.integers(1, 6)), int(rng.integers(1, 40))
        size = 2 * int(rng.integers(0, C + 2)) + 1
        alpha, beta, k = float(rng.uniform(0, 0.5)), float(rng.uniform(-1, 2)), float(rng.uniform(0.5, 3))
        x = images(rng, (N, C, H, W))
        label = f"lrn[x{x.shape},size={size},alpha={alpha:.3g},beta={beta:.3g},k={k:.3g}]"

        def lrn_check(x=x, size=size, alpha=alpha, beta=beta, k=k):
            hyper = dict(size=size, alpha=alpha, beta=beta, k=k)
            y = ops.lrn(x, **hyper)
            problem = close(y, lrn_ref(x, size, alpha, beta, k), "y")
            if problem:
                return problem
            # dx against the float64 reference's directional derivative along a random direction
            dy, direction = images(rng, x.shape), images(rng, x.shape)
            dx = ops.lrn_backward(dy, x, y, **hyper)
            eps, x64 = 1e-6, x.astype(np.float64)  # (in float32, x + eps * direction would round the step away)
            slope = (np.sum(dy * lrn_ref(x64 + eps * direction, size, alpha, beta, k))
                     - np.sum(dy * lrn_ref(x64 - eps * direction, size, alpha, beta, k))) / (2 * eps)
            return close(np.sum(dx.astype(np.float64) * direction), slope, "dx . direction")
        cases.append((label, lrn_check))

    for i in range(15):
        N, K = int(rng.integers(1, 5)), int(rng.integers(1, 1200 if i % 3 == 0 else 12))
        logits = (images(rng, (N, K)) * float(rng.choice([1, 30, 1e4]))).astype(np.float32)
        labels = rng.integers(0, K, N)

        def softmax_check(logits=logits, labels=labels):
            z = logits.astype(np.float64) - logits.max(1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            problem = close(ops.softmax(logits), p, "softmax")
            if problem:
                return problem
            loss, dlogits = ops.softmax_cross_entropy(logits, labels)
            want_loss = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]))
            onehot = np.eye(logits.shape[1])[labels]
            return close(loss, want_loss, "loss") or close(dlogits, (p - onehot) / len(labels), "dlogits")
        cases.append((f"softmax_cross_entropy[logits{logits.shape}]", softmax_check))
    return cases


# --- the child: runs one batch and reports each case ------------------------------------------------------------


def same_answer(a, b):
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
                and all(same_answer(p, q) for p, q in zip(a, b)))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def outcome(fn):
    """('ok', result) or ('error', exception); anything but an accepted exception propagates."""
    try:
        return "ok", fn()
    except ACCEPTED_ERRORS as e:
        return "error", e


def fresh(arrays):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]


def generate(batch, seed):
    """(label, check) pairs; check() returns None or a problem description."""
    rng = np.random.default_rng(seed)
    cases = []

    def expect_refused_or_ok(fn):
        def check():
            kind, value = outcome(fn)
            if kind == "error" and not str(value).strip():
                return f"{type(value).__name__} with an empty message"
            return None
        return check

    def expect_refused_naming(fn, words):
        """An accepted error whose message has `words` (not a later, unrelated refusal such as a CPU-only
        build's "no CUDA backend", which would hide that the input itself was taken)."""
        def check():
            kind, value = outcome(fn)
            if kind == "ok":
                return "accepted"
            if words not in str(value):
                return f"refused, but not for its {words}: {type(value).__name__}: {str(value)[:200]}"
            return None
        return check

    def expect_same_as_contiguous(fn, arrays, position, perturb, hyper):
        def check():
            args = fresh(arrays)
            args[position] = perturb(args[position])
            kind, value = outcome(lambda: fn(*args, **hyper))
            if kind == "error":
                return None if str(value).strip() else f"{type(value).__name__} with an empty message"
            reference = fresh(arrays)
            ref_kind, ref_value = outcome(lambda: fn(*reference, **hyper))
            if ref_kind != "ok":
                return f"succeeded, but on contiguous copies it raised {ref_value!r}"
            # _C writes its outputs: compare them (the perturbed array too, after the call, when it was written)
            got = value if value is not None else tuple(np.asarray(a) for a in args)
            want = ref_value if ref_value is not None else tuple(np.asarray(a) for a in reference)
            if not same_answer(got, want):
                return "a different answer than on contiguous float32 copies (silent wrong answer)"
            return None
        return check

    if batch in ("ops", "c"):
        table = op_cases(rng) if batch == "ops" else c_cases(rng)
        for entry in table:
            name, fn, arrays, hyper = entry[:4]
            written = entry[4] if len(entry) > 4 else []
            for pos, a in enumerate(arrays):
                if not isinstance(a, np.ndarray):
                    continue
                for pname, perturb in SAME_VALUES.items():
                    cases.append((f"{name}[arg{pos}:{pname}]",
                                  expect_same_as_contiguous(fn, arrays, pos, perturb, hyper)))
                for pname, bad in bad_arrays(a, rng).items():
                    def call(fn=fn, arrays=arrays, pos=pos, bad=bad, hyper=hyper):
                        args = fresh(arrays)
                        args[pos] = bad
                        return fn(*args, **hyper)
                    cases.append((f"{name}[arg{pos}:{pname}]", expect_refused_or_ok(call)))
            for key in hyper:
                values = BAD_INTEGERS if isinstance(hyper[key], int) else BAD_REALS
                for v in values:
                    def call(fn=fn, arrays=arrays, key=key, v=v, hyper=hyper):
                        return fn(*fresh(arrays), **{**hyper, key: v})
                    cases.append((f"{name}[{key}={v!r}]", expect_refused_or_ok(call)))
            # outputs sharing memory with inputs (or with each other): refused, or the same answer
            for out_pos in written:
                for in_pos in range(len(arrays)):
                    if in_pos == out_pos or not isinstance(arrays[in_pos], np.ndarray):
                        continue
                    def aliased(fn=fn, arrays=arrays, out_pos=out_pos, in_pos=in_pos, hyper=hyper, written=written):
                        args = fresh(arrays)
                        a, o = args[in_pos], args[out_pos]
                        if a.dtype == o.dtype and a.shape == o.shape:
                            args[out_pos] = a  # exactly the same array
                        elif a.dtype == o.dtype and a.size >= o.size:
                            args[out_pos] = a.reshape(-1)[a.size - o.size:].reshape(o.shape)  # overlapping tail
                        else:
                            return None
                        kind, value = outcome(lambda: fn(*args, **hyper))
                        if kind == "error":
                            return None if str(value).strip() else f"{type(value).__name__} with an empty message"
                        # taken (in place): every output as the call on separate arrays writes it
                        reference = fresh(arrays)
                        fn(*reference, **hyper)
                        for pos in written:
                            if not same_answer(np.asarray(args[pos]), np.asarray(reference[pos])):
                                return f"taken with output {out_pos} on input {in_pos}, but output {pos} differs " \
                                       "from the call on separate arrays (silent wrong answer)"
                        return None
                    cases.append((f"{name}[out{out_pos}=in{in_pos}]", aliased))
    elif batch == "shapes":
        for label, fn in shape_cases():
            cases.append((label, expect_refused_or_ok(fn)))
        for label, fn, *words in value_cases(rng) + cuda_interface_cases(rng):
            cases.append((label, expect_refused_naming(fn, words[0]) if words else expect_refused_or_ok(fn)))
    elif batch == "geometry":
        cases.extend(geometry_cases(rng))
    else:
        raise SystemExit(f"unknown batch {batch!r}")
    return cases


def child(batch, seed):
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))
    problems = 0
    for label, check in generate(batch, seed):
        print(f"START {label}", flush=True)
        try:
            problem = check()
        except BaseException as e:  # an exception of a kind the rule does not accept
            problem = f"raised {type(e).__name__}: {str(e)[:300]}"
            if not isinstance(e, Exception):
                raise
        if problem:
            problems += 1
            print(f"PROBLEM {label}: {problem}", flush=True)
    print("DONE", flush=True)
    return 0


# --- the tests ------------------------------------------------------------------------------------------------


def run_batch(batch, seed):
    env = dict(os.environ)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), batch, str(seed)], capture_output=True,
                              text=True, timeout=BATCH_TIMEOUT_S, env=env)
        stdout, stderr, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr, rc = "", "timeout"
    lines = stdout.splitlines()
    problems = [ln for ln in lines if ln.startswith("PROBLEM ")]
    if rc != 0 or "DONE" not in lines:
        last = next((ln[6:] for ln in reversed(lines) if ln.startswith("START ")), "(before the first case)")
        problems.append(f"CRASH in {last}: exit {rc}; stderr tail: {stderr[-1500:]}")
    return problems


def test_ops_bad_input():
    problems = [p for seed in SEEDS for p in run_batch("ops", seed)]
    assert not problems, "\n".join(problems)


def test_c_bad_input():
    problems = [p for seed in SEEDS for p in run_batch("c", seed)]
    assert not problems, "\n".join(problems)


def test_odd_geometry_against_numpy():
    problems = [p for seed in SEEDS for p in run_batch("geometry", seed)]
    assert not problems, "\n".join(problems)


def test_shape_helpers_bad_input():
    problems = run_batch("shapes", 0)
    assert not problems, "\n".join(problems)


if __name__ == "__main__":
    try:
        sys.exit(child(sys.argv[1], int(sys.argv[2])))
    except Exception:
        traceback.print_exc()
        sys.exit(3)
