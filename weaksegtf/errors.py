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


class ModelFileError(WeaksegError, ValueError):
    """A model file is missing, unreadable, or not a weaksegtf model (``.keras`` or exported ``.onnx``)."""


class OutputError(WeaksegError, OSError):
    """An output cannot be written safely: a file where a folder is expected (or the reverse), a locked,
    read-only or full folder, a symbolic link where a file will be written, or a folder holding files that
    the command would replace without ``--overwrite``, did not write itself, or wrote for another input or
    another model. Nothing was left half-written."""


class ClusterError(WeaksegError, RuntimeError):
    """A Dask cluster cannot be used: ``dask.distributed`` is not installed, the scheduler cannot be reached, or
    the cluster lost the run's tasks. Slides finished until then stay complete; running again resumes."""


class ExportError(WeaksegError, RuntimeError):
    """An export could not be written or run; nothing was left on disk."""


class ParityError(ExportError):
    """An exported model disagrees with its source beyond the tolerance; nothing was left on disk.

    ``report`` holds the numbers that failed (a ``weaksegtf.export.ParityReport``).
    """

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
