"""The `pyalexnet` command. Each subcommand is a module in pyalexnet.commands with
HELP (one line), DESCRIPTION (optional), add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# In the order `pyalexnet --help` lists them.
COMMANDS = ["train", "eval", "predict", "prepare", "gradcheck", "bench", "info"]


def _available():
    for name in COMMANDS:
        modname = f"pyalexnet.commands.{name}"
        if importlib.util.find_spec(modname) is not None:
            yield name, importlib.import_module(modname)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyalexnet",
        description="AlexNet (Krizhevsky, Sutskever and Hinton, 2012) on hand-written CUDA and CPU kernels.",
        epilog="Run `pyalexnet COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _available():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt as exc:
        print(f"interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, NotImplementedError, MemoryError) as exc:
        # Errors a user can act on: one clear line, not a traceback.
        print(f"pyalexnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
