"""The CUDA LRN, max-pooling and softmax kernels, emulated on the CPU (each block as blockDim OpenMP threads,
warp shuffles through per-warp barriers) and compared with the CPU backend, under ASan/UBSan: the check of
their index, tiling and reduction logic that runs without a GPU (tests/layer_cuda_emulation/run.sh)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "layer_cuda_emulation" / "run.sh"


@pytest.mark.slow
def test_cuda_layer_kernels_emulated_on_cpu_match_the_cpu_backend():
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    r = subprocess.run(["bash", str(RUN)], capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "ALL OK" in r.stdout
