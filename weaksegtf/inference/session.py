"""One onnxruntime session per model and process, on the providers actually in use.

onnxruntime falls back to the CPU without a word when a CUDA provider cannot
load (a missing cuDNN, say), so the providers in use are read back from the
session, compared with the request, and reported.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError, ModelFileError
from weaksegtf.export.metadata import INPUT_NAME, OnnxMetadata, read_onnx_metadata

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: Short names accepted by ``--providers``.
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": "TensorrtExecutionProvider",
                    "rocm": "ROCMExecutionProvider", "coreml": "CoreMLExecutionProvider",
                    "dml": "DmlExecutionProvider", "openvino": "OpenVINOExecutionProvider"}

_SESSIONS: dict[tuple, "ModelSession"] = {}


def default_providers() -> list[str]:
    """CUDA then CPU when this onnxruntime build has CUDA, else CPU."""
    import onnxruntime as ort

    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


def resolve_providers(providers: Sequence[str] | str | None) -> tuple[list[str], bool]:
    """Full provider names from names or aliases (``"cuda,cpu"``); ``None`` means :func:`default_providers`.

    Returns:
        The names and whether they were chosen explicitly.

    Raises:
        ConfigError: a provider this onnxruntime build does not have.
    """
    import onnxruntime as ort

    if providers is None or providers == "" or providers == "auto":
        return default_providers(), False
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    names = [PROVIDER_ALIASES.get(p.strip().lower(), p.strip()) for p in providers]
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(
            f"execution provider {', '.join(missing)} is not in this onnxruntime build "
            f"(onnxruntime {ort.__version__} has {', '.join(available)}); install onnxruntime-gpu "
            f"for CUDA (pip install 'weaksegtf[gpu]') or choose from the available ones"
        )
    return names, True


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelSession:
    """An exported model open in onnxruntime, with its metadata.

    Build it with :func:`load_session`.

    Args:
        path: Path. The ``.onnx`` file.
        session: onnxruntime.InferenceSession.
        metadata: OnnxMetadata. Classes, colours, mpp, tile size, normalisation.
        providers_requested: list of str. Providers asked for, in order.
        providers_in_use: list of str. Providers the session reports.
        threads: int. onnxruntime intra-op threads.
        model_sha256: str. SHA-256 of the ``.onnx`` file.
        warning: str, optional. Set when the first requested provider is not in use.
    """

    path: Path
    session: Any
    metadata: OnnxMetadata
    providers_requested: list[str]
    providers_in_use: list[str]
    threads: int
    model_sha256: str
    warning: str | None = None

    def run(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Mask logits ``(B, H, W, C)`` of a float32 RGB batch ``(B, H, W, 3)`` in [0, 255]."""
        return self.session.run(["mask_logits"], {INPUT_NAME: images})[0]

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "sha256": self.model_sha256,
            "weights_sha256": self.metadata.weights_sha256,
            "providers_requested": self.providers_requested,
            "providers_in_use": self.providers_in_use, "threads": self.threads,
            "provider_warning": self.warning,
        }


def load_session(
    path: Path | str,
    providers: Sequence[str] | str | None = None,
    threads: int | None = None,
) -> ModelSession:
    """Open (once per process) an exported ``.onnx`` model for inference.

    A second call with the same file (unchanged on disk), providers and
    threads returns the same session.

    Args:
        path: str or path. A model written by ``weakseg-export``.
        providers: list of str, or a comma-separated string, optional.
            Execution providers in order of preference; aliases ``cpu``,
            ``cuda``, ``tensorrt``, ... are accepted. Defaults to ``None``:
            CUDA when available, else CPU.
        threads: int, optional. onnxruntime intra-op threads. Defaults to
            ``None``: the cores this process may use.

    Raises:
        ModelFileError: the file is missing, not ONNX, or has no weaksegtf metadata.
        ConfigError: an unavailable provider, a bad thread count, or an
            explicitly requested provider that onnxruntime did not take.

    Example:
    >>> model = load_session("model.onnx", providers="cpu", threads=2)  # doctest: +SKIP
    >>> model.providers_in_use  # doctest: +SKIP
    ['CPUExecutionProvider']
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model {path} does not exist; expected an .onnx file written by weakseg-export")
    names, explicit = resolve_providers(providers)
    threads = default_threads() if threads is None else int(threads)
    if threads <= 0:
        raise ConfigError(f"threads must be positive, got {threads}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, tuple(names), threads)
    if key in _SESSIONS:
        return _SESSIONS[key]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Idle onnxruntime threads would otherwise spin and take the CPU from the
    # threads that read and prepare the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=names)
    except Exception as error:  # onnxruntime raises its own unexported exception types
        raise ModelFileError(f"cannot open {path} as an ONNX model: {error}") from None
    metadata = read_onnx_metadata(session)
    outputs = [o.name for o in session.get_outputs()]
    if "mask_logits" not in outputs:
        raise ModelFileError(f"{path} has outputs {outputs}; expected 'mask_logits' (a weakseg-export model)")
    in_use = list(session.get_providers())
    warning = None
    if names[0] not in in_use:
        warning = f"requested {names[0]} but onnxruntime runs {path.name} on {', '.join(in_use)}"
        if explicit:
            raise ConfigError(warning + "; check the CUDA and cuDNN libraries, or pass --providers cpu")
        print(f"warning: {warning}", file=sys.stderr)
    model = ModelSession(path, session, metadata, names, in_use, threads, file_sha256(path), warning)
    _SESSIONS[key] = model
    return model
