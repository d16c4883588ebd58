"""pyalexnet bench: per-op and training-step benchmarks against PyTorch/cuDNN (numpy on a CPU)."""
import sys

HELP = "benchmark every layer and a training step against PyTorch/cuDNN (or numpy), on cpu or cuda"


def _bench():
    from .. import bench

    return bench


DESCRIPTION = _bench().DESCRIPTION


def add_arguments(p):
    _bench().add_arguments(p)


def run(args) -> int:
    # The command line as typed, for the results' record.
    args.argv = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "bench" else getattr(args, "argv", [])
    return _bench().run(args)
