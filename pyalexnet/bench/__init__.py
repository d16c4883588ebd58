"""Kernel and training-step benchmarks of pyalexnet against PyTorch/cuDNN (or numpy on a CPU).

Run `pyalexnet bench --help` (or `python -m benchmarks` from a source tree).
"""
from .cli import DESCRIPTION, add_arguments, main, run

__all__ = ["DESCRIPTION", "add_arguments", "main", "run"]
