"""pyalexnet: AlexNet (Krizhevsky, Sutskever and Hinton, 2012) on hand-written CUDA and CPU kernels."""
__version__ = "0.1.0"

from ._backend import backend_info, cuda_available
from . import data, gradcheck, ops, viz
from .model import AlexNet
from .training import (StepResult, TrainingDiverged, TrainResult, evaluate, load_checkpoint, save_checkpoint,
                       sgd_step, sgd_velocities, train)

__all__ = ["__version__", "backend_info", "cuda_available", "ops", "data", "viz", "gradcheck", "AlexNet", "train", "evaluate",
           "TrainResult", "TrainingDiverged", "load_checkpoint", "save_checkpoint", "sgd_step", "sgd_velocities",
           "StepResult"]
