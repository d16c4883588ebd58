"""The functional API: forward and backward of every AlexNet layer.

All image tensors are NCHW float32. numpy in gives numpy out (CPU backend);
CuPy in gives CuPy out on the same GPU (CUDA backend, CuPy's current stream).
Other floating dtypes are converted to float32; non-contiguous inputs are made
contiguous; bad shapes, dtypes or devices raise TypeError/ValueError naming the
argument. The signatures here are a contract that the model, the tests and the
benchmarks rely on.
"""
from ._conv import CONV_ALGORITHMS, conv2d, conv2d_backward
from ._elementwise import relu, relu_backward, sgd_update
from ._layers import (dropout, dropout_backward, linear, linear_backward, lrn, lrn_backward, max_pool,
                      max_pool_backward, softmax, softmax_cross_entropy, softmax_cross_entropy_queued)

__all__ = [
    "conv2d", "conv2d_backward", "CONV_ALGORITHMS",
    "linear", "linear_backward",
    "relu", "relu_backward",
    "lrn", "lrn_backward",
    "max_pool", "max_pool_backward",
    "dropout", "dropout_backward",
    "softmax", "softmax_cross_entropy", "softmax_cross_entropy_queued",
    "sgd_update",
]
