"""The ``shardsync`` command line (``shardsync`` console script, ``python -m worker.cli``)."""

from worker.cli.main import cli, main

__all__ = ["cli", "main"]
