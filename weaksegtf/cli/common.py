"""Small helpers shared by the console scripts (no heavy imports)."""

from __future__ import annotations

import os
import sys


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter (CUDA probing on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fail(message: str) -> int:
    """Print a one-line error (no stack trace) and return the exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2
