"""pyalexnet info: what this install can run on."""
import json

HELP = "show the backends this install has, the GPUs found, or why none is used"


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print the backend_info() dict as JSON")


def format_info(info: dict) -> str:
    lines = [f"pyalexnet {info['version']}"]
    cuda = "yes" if info["built_with_cuda"] else "no"
    if info["built_with_cuda"]:
        cuda += f" (CUDA {info['cuda_build_version']}, architectures {info['cuda_architectures']})"
    lines.append(f"  CUDA backend built : {cuda}")
    lines.append(f"  CPU backend        : yes, OpenMP {'on' if info['openmp'] else 'off'}, {info['cpu_threads']} thread{'s' * (info['cpu_threads'] != 1)} "
                 "(OMP_NUM_THREADS), "
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
