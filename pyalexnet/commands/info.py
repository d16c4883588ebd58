"""pyalexnet info: what this install can run on."""
import json
import os

HELP = "show the backends this install has, the GPUs found, or why none is used"


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print the backend_info() dict as JSON")


_C_SPACE = " \t\n\v\f\r"  # C's isspace() in the "C" locale


def _strtoul(text: str) -> tuple[int | None, str]:
    """C's strtoul(text, &end, 10) for what libgomp accepts: (value, the rest), value None where strtoul
    reads no digits, overflows, or gives what libgomp's `(long) value <= 0` refuses (0, any '-' number)."""
    rest = text.lstrip(_C_SPACE)
    sign = rest[:1] if rest[:1] in "+-" else ""
    rest = rest[len(sign):]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    if not digits:
        return None, text
    value = int(rest[:digits])
    if sign == "-" or value == 0 or value >= 2 ** 63:  # ERANGE past 2**64 - 1; negative as a long below 2**63
        return None, rest[digits:]
    return value, rest[digits:]


def omp_num_threads(value: str) -> int | None:
    """The outermost level's thread count libgomp takes from OMP_NUM_THREADS=value, else None (it then
    ignores the variable and uses every core). As libgomp's parse_unsigned_long_list: a positive decimal
    number (a '+', blanks around it allowed), or a comma-separated list of them, one per nesting level."""
    entries = value.split(",")
    counts = [_strtoul(entry) for entry in entries]
    if any(n is None or rest.strip(_C_SPACE) for n, rest in counts):
        return None
    return counts[0][0]


def format_info(info: dict) -> str:
    lines = [f"pyalexnet {info['version']}"]
    cuda = "yes" if info["built_with_cuda"] else "no"
    if info["built_with_cuda"]:
        cuda += f" (CUDA {info['cuda_build_version']}, architectures {info['cuda_architectures']})"
    lines.append(f"  CUDA backend built : {cuda}")
    threads = f"{info['cpu_threads']} thread{'s' * (info['cpu_threads'] != 1)}"
    # Where the count comes from: OpenMP reads OMP_NUM_THREADS when libgomp takes it, else takes every core.
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp is None:
        threads += " (every core; OMP_NUM_THREADS sets it)"
    elif omp_num_threads(omp) is None:
        threads += f" (OMP_NUM_THREADS={omp!r} not used)"
    elif "," in omp:
        threads += f" (OMP_NUM_THREADS={omp!r}: its first entry, the outermost level)"
    else:
        threads += " (OMP_NUM_THREADS)"
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
