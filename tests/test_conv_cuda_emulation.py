"""The CUDA convolution kernels, emulated on the CPU (each block as 256 OpenMP threads) and compared
with the CPU backend: the check of their index and tiling math that runs without a GPU."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "conv_cuda_emulation" / "run.sh"


@pytest.mark.slow
def test_cuda_conv_kernels_emulated_on_cpu_match_the_cpu_backend():
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    r = subprocess.run(["bash", str(RUN)], capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "ALL OK" in r.stdout
