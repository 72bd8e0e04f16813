"""Small helpers shared by the console scripts (no heavy imports)."""

from __future__ import annotations

import argparse
import os
import sys


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter (CUDA probing on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: Modules of the ``[train]`` extra, per command that needs them.
TRAINING_MODULES = ("tensorflow", "keras")
EXPORT_MODULES = ("tensorflow", "keras", "onnx", "tf2onnx")


def missing_training_extra(modules: tuple[str, ...] = TRAINING_MODULES) -> str | None:
    """A one-line message when a module of the ``[train]`` extra is not installed, else ``None``.

    Found without importing TensorFlow (``importlib.util.find_spec``), so the check is instant.
    """
    import importlib.util

    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or blocked install
            found = False
        if not found:
            missing.append(name)
    if not missing:
        return None
    return (
        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; this command needs the "
        f"training extra: pip install 'weaksegtf[train]' (the base install is the TensorFlow-free inference path)"
    )


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
