"""Subcommands of the `pyalexnet` command (see pyalexnet/cli.py)."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type= of an option that counts something (--steps, --images): said as the option, not as the
    function it feeds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
