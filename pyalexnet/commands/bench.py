"""pyalexnet bench: per-op and training-step benchmarks against PyTorch/cuDNN (numpy on a CPU)."""

HELP = "benchmark every layer and a training step against PyTorch/cuDNN (or numpy), on cpu or cuda"


def _bench():
    from .. import bench

    return bench


DESCRIPTION = _bench().DESCRIPTION


def add_arguments(p):
    _bench().add_arguments(p)


def run(args) -> int:
    return _bench().run(args)  # args.argv (set by pyalexnet.cli.main): the command line, for the results' record
