"""Shared fixtures. Tests marked `gpu` skip, with the reason, where the CUDA backend cannot run."""
import numpy as np
import pytest

import pyalexnet


def pytest_collection_modifyitems(config, items):
    if pyalexnet.cuda_available():
        return
    skip = pytest.mark.skip(reason=f"no GPU backend: {pyalexnet.backend_info()['reason']}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cp():
    """CuPy, for tests marked gpu (they are skipped before this runs when there is no GPU)."""
    import cupy

    return cupy
