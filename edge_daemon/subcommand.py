"""What the feature packages' subcommands share: logging set up, then the config loaded."""

from __future__ import annotations

import argparse
from typing import Callable

from .config import Config


def with_config(
    command: Callable[[Config, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """An argparse ``func`` that sets up logging, loads ``--config`` and runs ``command``."""

    def run(args: argparse.Namespace) -> int:
        from .config import load_config
        from .journal import setup_logging

        setup_logging("WARNING", debug=args.debug)
        code: int = command(load_config(args.config), args)
        return code

    return run
