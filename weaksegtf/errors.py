"""The exceptions weaksegtf raises for bad input.

Every message says what was received and what was expected, and names the
file when there is one, so that a wrong input never surfaces as a stack trace
from deep inside TensorFlow.
"""

from __future__ import annotations


class WeaksegError(Exception):
    """Base class of every error weaksegtf raises on purpose."""


class DataError(WeaksegError, ValueError):
    """An image, mask, label or label table is missing, unreadable or inconsistent."""


class WeightsError(WeaksegError, ValueError):
    """A weights file does not match the architecture it is loaded into."""


class ConfigError(WeaksegError, ValueError):
    """Arguments that cannot work together, such as a mode without the data it needs."""


class SlideError(WeaksegError, ValueError):
    """A slide is unreadable, is not a slide, or lacks information such as its mpp."""
