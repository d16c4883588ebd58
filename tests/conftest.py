"""Shared fixtures. Tests marked `gpu` skip, with the reason, where the CUDA backend cannot run."""
import signal

import numpy as np
import pytest

import pyalexnet

# The Ctrl-C tests send this process SIGINT. A shell that starts pytest as a background job has it ignore SIGINT,
# and Python then installs no handler: those tests saw no KeyboardInterrupt there (and training, rightly, keeps
# ignoring it). Tests that want it ignored set that themselves.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
