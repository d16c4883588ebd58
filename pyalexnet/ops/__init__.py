"""The functional API: forward and backward of every AlexNet layer.

All image tensors are NCHW float32. numpy in gives numpy out (CPU backend);
CuPy in gives CuPy out on the same GPU (CUDA backend, CuPy's current stream).
Other floating dtypes are converted to float32; non-contiguous inputs are made
contiguous; bad shapes, dtypes or devices raise TypeError/ValueError naming the
argument. The signatures here are a contract that the model, the tests and the
benchmarks rely on.
"""
import importlib as _il
import importlib.util as _ilu

from ._elementwise import relu, relu_backward, sgd_update

__all__ = [
    "conv2d", "conv2d_backward",
    "linear", "linear_backward",
    "relu", "relu_backward",
    "lrn", "lrn_backward",
    "max_pool", "max_pool_backward",
    "dropout", "dropout_backward",
    "softmax", "softmax_cross_entropy",
    "sgd_update",
]


def _pending(name: str, issue: str):
    def op(*args, **kwargs):
        raise NotImplementedError(f"pyalexnet.ops.{name} is not implemented yet ({issue})")

    op.__name__ = name
    return op


# Ops whose module has not landed yet raise NotImplementedError; once the module
# exists it is imported normally, so a real error in it is never hidden.
_GROUPS = {
    "_conv": (("conv2d", "conv2d_backward"), "convolution kernels"),
    "_layers": (("dropout", "dropout_backward", "linear", "linear_backward", "lrn", "lrn_backward", "max_pool",
                 "max_pool_backward", "softmax", "softmax_cross_entropy"), "layer kernels"),
}
for _mod, (_names, _issue) in _GROUPS.items():
    if _ilu.find_spec(f"{__name__}.{_mod}") is not None:
        _m = _il.import_module(f"{__name__}.{_mod}")
        for _n in _names:
            globals()[_n] = getattr(_m, _n)
    else:
        for _n in _names:
            globals()[_n] = _pending(_n, _issue)
