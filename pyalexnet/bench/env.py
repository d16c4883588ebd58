"""What a result was measured on: device, clocks, driver and library versions."""
from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np


def _run(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


NVSMI_FIELDS = ("name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,"
                "clocks_throttle_reasons.active,power.draw,power.limit,temperature.gpu,persistence_mode")


def gpu_clocks(index: int = 0) -> dict | None:
    """nvidia-smi's view of the GPU now (clocks, power, throttling), or None without nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return None
    out = _run(["nvidia-smi", f"--id={index}", f"--query-gpu={NVSMI_FIELDS}", "--format=csv,noheader"])
    if out is None:   # older drivers name the throttle field differently: ask without it
        fields = NVSMI_FIELDS.replace("clocks_throttle_reasons.active,", "")
        out = _run(["nvidia-smi", f"--id={index}", f"--query-gpu={fields}", "--format=csv,noheader"])
    else:
        fields = NVSMI_FIELDS
    if out is None:
        return None
    return dict(zip(fields.split(","), (v.strip() for v in out.splitlines()[0].split(","))))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    # --dirty: a copied working tree (a GPU machine's) can carry a .git whose HEAD predates its files.
    return _run(["git", "-C", str(here), "describe", "--always", "--dirty=+modified"])


def environment(device: str, torch=None, cp=None) -> dict:
    from .. import backend_info

    info = backend_info()
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device_kind": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "numpy": np.__version__,
        "pyalexnet": info["version"],
        "pyalexnet_commit": git_commit(),
        "pyalexnet_openmp": info["openmp"],
        "pyalexnet_cpu_simd": info["cpu_simd"],  # the CPU kernels' ISA: AVX-512 vs AVX2 is ~2x in the GEMM
        "pyalexnet_cpu_threads": info["cpu_threads"],
        "pyalexnet_built_with_cuda": info["built_with_cuda"],
        "pyalexnet_cuda_build": info["cuda_build_version"],
        "cuda_runtime": info["cuda_runtime_version"],
        "cuda_driver": info["cuda_driver_version"],
        "cupy": info["cupy"],
        "torch": None,
    }
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        env["torch_cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if device == "cuda" and cp is not None:
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        env.update({
            "device_name": name,
            "compute_capability": f"{props['major']}.{props['minor']}",
            "multiprocessors": props["multiProcessorCount"],
            "l2_cache_bytes": props["l2CacheSize"],
            "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
            "cupy_tf32": os.environ.get("CUPY_TF32", "0"),
            "nvidia_smi_before": gpu_clocks(dev.id),
        })
    else:
        env["device_name"] = env["cpu"]
    return env
