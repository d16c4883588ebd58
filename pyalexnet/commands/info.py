"""pyalexnet info: what this install can run on."""
import json
import os

HELP = "show the backends this install has, the GPUs found, or why none is used"


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print the backend_info() dict as JSON")


def format_info(info: dict) -> str:
    lines = [f"pyalexnet {info['version']}"]
    cuda = "yes" if info["built_with_cuda"] else "no"
    if info["built_with_cuda"]:
        cuda += f" (CUDA {info['cuda_build_version']}, architectures {info['cuda_architectures']})"
    lines.append(f"  CUDA backend built : {cuda}")
    threads = f"{info['cpu_threads']} thread{'s' * (info['cpu_threads'] != 1)}"
    # Where the count comes from: OpenMP reads OMP_NUM_THREADS when it is a positive integer, else takes every core.
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    threads += (" (OMP_NUM_THREADS)" if omp.isdigit() and int(omp) > 0 else
                " (every core; OMP_NUM_THREADS sets it)" if not omp else f" (OMP_NUM_THREADS={omp!r} not used)")
    lines.append(f"  CPU backend        : yes, OpenMP {'on' if info['openmp'] else 'off'}, {threads}, "
                 f"{info['cpu_simd'].upper()} GEMM")
    lines.append(f"  CUDA driver        : {info['cuda_driver_version'] or 'not found'}")
    lines.append(f"  CuPy               : {info['cupy'] or 'not installed'}")
    for g in info["gpus"]:
        lines.append(f"  GPU {g['index']}              : {g['name']} (sm_{g['compute_capability'].replace('.', '')}, "
                     f"{g['memory_gib']} GiB, {g['multiprocessors']} SMs)")
    lines.append("  GPU backend        : " + ("usable" if info["reason"] is None else f"not used: {info['reason']}"))
    return "\n".join(lines)


def run(args) -> int:
    from .. import backend_info

    info = backend_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
