"""The `pyalexnet` command. Each subcommand is a module in pyalexnet.commands with
HELP (one line), DESCRIPTION (optional), add_arguments(parser) and run(args) -> int; args.argv holds the
command's own arguments as given (after its name), for a record of the command line."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
import warnings

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
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every command's module: a Ctrl-C here was a traceback
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse's own words, with the likely mistake named, under the command's own usage line
        hint = ""
        if getattr(args, "command", None) == "train" and len(extra) == 1 and not extra[0].startswith("-"):
            hint = f" (a data set is given with --data: pyalexnet train --data {extra[0]})"
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    args.argv = argv[argv.index(args.command) + 1:]  # the options before it are the top parser's (-h) only
    if sys.stdout is None:  # started with stdout closed (`>&-`): print() dropped every result, flush() was a traceback
        print(f"pyalexnet {args.command}: error: standard output is closed: redirect it (> FILE, or > /dev/null to "
              "discard it)", file=sys.stderr)
        return 2
    _printable_output()
    try:
        with _warnings_as_lines(args.command):
            rc = int(args._run(args) or 0)
        sys.stdout.flush()  # a reader gone away is found here (below), not while Python exits
        return rc
    except KeyboardInterrupt as exc:
        print(f"interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`pyalexnet predict ... | head`): stop quietly, as a program killed by SIGPIPE
        # does, not "error: [Errno 32] Broken pipe". Output still buffered goes nowhere, so exiting does not fail
        # to flush it and print another error.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout that is not a file (captured)
            pass
        return 141
    except (ValueError, TypeError, OSError, NotImplementedError, MemoryError) as exc:
        # Errors a user can act on (OSError: a file where a folder is expected, a folder where a file is,
        # no permission): one clear line, not a traceback.
        print(f"pyalexnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _printable_output() -> None:
    """Where stdout cannot encode every character (LC_ALL=C without Python's UTF-8 mode, PYTHONIOENCODING=ascii),
    non-ASCII class names and paths print as escapes: they were a UnicodeEncodeError after the evaluation, its
    results lost. A file name's undecodable bytes still print as those bytes (surrogateescape)."""
    import codecs

    def escape(exc):
        try:
            return codecs.lookup_error("surrogateescape")(exc)
        except UnicodeError:
            return codecs.backslashreplace_errors(exc)

    stream = sys.stdout
    if hasattr(stream, "reconfigure") and codecs.lookup(stream.encoding or "ascii").name != "utf-8":
        codecs.register_error("pyalexnet-escape", escape)
        stream.reconfigure(errors="pyalexnet-escape")


@contextlib.contextmanager
def _warnings_as_lines(command: str):
    """Warnings (an unreadable image skipped, ...) as one line each, without the Python source line and
    file position the default format shows."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"pyalexnet {command}: warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


if __name__ == "__main__":
    sys.exit(main())
