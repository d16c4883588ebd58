"""pyalexnet: AlexNet (Krizhevsky, Sutskever and Hinton, 2012) on hand-written CUDA and CPU kernels."""
__version__ = "0.1.0"

from ._backend import backend_info, cuda_available
from . import ops
from .model import AlexNet

__all__ = ["__version__", "backend_info", "cuda_available", "ops", "AlexNet"]
