"""Subcommands of the `pyalexnet` command (see pyalexnet/cli.py)."""
