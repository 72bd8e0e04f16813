"""Provenance: what produced an output, recorded next to it.

``provenance()`` returns one JSON-ready dict (package and key dependency
versions, Python, the command line, a UTC timestamp, the seed and any other
settings) that ``metrics.json``, export outputs and ``summary.json`` embed, so
a result can be traced back to the code and the options that made it.

No TensorFlow import: versions come from the installed distributions'
metadata (``importlib.metadata``), which is cheap and works on the
TensorFlow-free inference install.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import sys
from typing import Any

import weaksegtf

# Distributions whose version changes results; absent ones are recorded as None.
KEY_DISTRIBUTIONS: tuple[str, ...] = (
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "opencv-python-headless",
    "openslide-python",
    "openslide-bin",
    "tifffile",
    "Pillow",
    "tensorflow",
    "keras",
    "onnx",
    "tf2onnx",
)


def distribution_versions(names: tuple[str, ...] = KEY_DISTRIBUTIONS) -> dict[str, str | None]:
    """Return ``{distribution: installed version or None}`` without importing any of them."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def json_ready(value: Any) -> Any:
    """Turn paths, tuples, numpy scalars and other objects into JSON values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(item) for item in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            return json_ready(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def provenance(argv: list[str] | None = None, **settings: Any) -> dict:
    """Describe the code and options that produce an output, as a JSON-ready dict.

    Args:
        argv: list of str, the command line. Defaults to ``sys.argv``.
        **settings: the run's seed, hyperparameters and other options, stored
            under ``"settings"`` (paths and numpy values become JSON values).
            ``seed`` is also copied to the top level. Defaults to none.

    Returns:
        ``{"weaksegtf": version, "python": version, "platform": str,
        "dependencies": {distribution: version or None}, "command": [args],
        "timestamp_utc": ISO 8601, "seed": int or None, "settings": {...}}``.

    Example:
        >>> record = provenance(["weakseg-train", "--epochs", "3"], seed=0, epochs=3)
        >>> record["settings"]["epochs"]
        3
    """
    command = list(sys.argv if argv is None else argv)
    return {
        "weaksegtf": weaksegtf.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "dependencies": distribution_versions(),
        "command": [str(part) for part in command],
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": json_ready(settings.get("seed")),
        "settings": json_ready(settings),
    }
