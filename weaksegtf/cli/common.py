"""Small helpers shared by the console scripts (no heavy imports)."""

from __future__ import annotations

import argparse
import os
import sys


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter (CUDA probing on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fail(message: str) -> int:
    """Print a one-line error (no stack trace) and return the exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def add_version_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` a ``--version`` option printing the package version and Python (no heavy import)."""
    import platform

    import weaksegtf

    parser.add_argument(
        "--version",
        action="version",
        version=f"{parser.prog} (weaksegtf {weaksegtf.__version__}, Python {platform.python_version()})",
    )
    return parser
