"""The CUDA kernels, emulated on the CPU and compared with the CPU backend: the check of their index,
tiling and reduction logic that runs without a GPU. Each run.sh compiles the real .cu sources as OpenMP
C++ (each block as blockDim threads; __syncthreads an OpenMP barrier; the layer harness also emulates
dynamic shared memory and warp shuffles) under ASan/UBSan, and prints ALL OK when every case matches.
  conv_cuda_emulation:  conv_cuda.cu, direct, Winograd and the FFT filter gradient, odd shapes and batch-128
                        AlexNet blocks
  layer_cuda_emulation: lrn_cuda.cu, pool_cuda.cu, softmax_cuda.cu, elementwise_cuda.cu, dropout_cuda.cu,
                        augment_cuda.cu"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.parametrize("harness", ["conv_cuda_emulation", "layer_cuda_emulation"])
def test_cuda_kernels_emulated_on_cpu_match_the_cpu_backend(harness):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    r = subprocess.run(["bash", str(HERE / harness / "run.sh")], capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "ALL OK" in r.stdout
