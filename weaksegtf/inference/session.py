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
from weaksegtf.model_card import INPUT_NAME, OnnxMetadata, read_onnx_metadata

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


#: How to get CUDA into onnxruntime; the same commands as docs/install.md ("GPU inference").
GPU_INSTALL_ADVICE = ("for CUDA, replace the CPU wheel: pip uninstall --yes onnxruntime && "
                      "pip install 'onnxruntime-gpu[cuda,cudnn]' (see docs/install.md, GPU inference)")


def resolve_providers(providers: Sequence[str] | str | None) -> tuple[list[str], bool]:
    """Full provider names from names or aliases (``"cuda,cpu"``); ``None`` means :func:`default_providers`.

    Providers this onnxruntime build lacks are dropped with a warning on
    stderr when others in the list remain (``cuda,cpu`` on a machine without
    CUDA runs on the CPU), and refused when none remains (``cuda`` alone).

    Returns:
        The names and whether they were chosen explicitly.

    Raises:
        ConfigError: no requested provider is in this onnxruntime build.
    """
    import onnxruntime as ort

    if providers is None or providers == "" or providers == "auto":
        return default_providers(), False
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    names = [PROVIDER_ALIASES.get(p.strip().lower(), p.strip()) for p in providers]
    if not names:
        raise ConfigError(f"no execution provider in {providers!r}; expected names such as cuda,cpu")
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    usable = [n for n in names if n in available]
    advice = GPU_INSTALL_ADVICE if any(n in (CUDA, "TensorrtExecutionProvider") for n in missing) else (
        "choose from the available ones")
    if not usable:
        raise ConfigError(
            f"execution provider {', '.join(missing)} is not in this onnxruntime build "
            f"(onnxruntime {ort.__version__} has {', '.join(available)}); {advice}"
        )
    if missing:
        print(f"warning: execution provider {', '.join(missing)} is not in this onnxruntime build "
              f"(onnxruntime {ort.__version__}); running on {', '.join(usable)}. {advice[0].upper()}{advice[1:]}",
              file=sys.stderr)
    return usable, True


def check_model_contract(path: Path, session: Any, metadata: OnnxMetadata) -> None:
    """Refuse a model whose inputs and outputs are not what weakseg-infer feeds and reads.

    Expected: one input ``image``, float32, rank 4, NHWC with 3 channels last;
    an output ``mask_logits``, float32, rank 4, with as many channels last as
    the metadata has classes. Dimensions the graph leaves symbolic are checked
    by running one zero tile.

    Raises:
        ModelFileError: naming the file, what it has and what was expected.
    """
    inputs = session.get_inputs()
    described = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ModelFileError(f"{path} takes inputs {described}; expected one input '{INPUT_NAME}' of shape "
                             f"(batch, height, width, 3) float32 (a weakseg-export model)")
    image = inputs[0]
    shape = list(image.shape)
    nchw = len(shape) == 4 and shape[1] == 3 and not isinstance(shape[3], int)
    if image.type != "tensor(float)" or len(shape) != 4 or (isinstance(shape[3], int) and shape[3] != 3) or nchw:
        raise ModelFileError(f"{path} takes {described}; expected '{INPUT_NAME}' as float32 NHWC "
                             f"(batch, height, width, 3), RGB channels last")
    outputs = {o.name: o for o in session.get_outputs()}
    if "mask_logits" not in outputs:
        raise ModelFileError(f"{path} has outputs {list(outputs)}; expected 'mask_logits' (a weakseg-export model)")
    logits = outputs["mask_logits"]
    classes = metadata.num_classes
    if logits.type != "tensor(float)" or len(logits.shape) != 4:
        raise ModelFileError(f"{path} gives mask_logits {logits.type} {list(logits.shape)}; expected float32 "
                             f"(batch, height, width, {classes})")
    channels = logits.shape[3]
    if isinstance(channels, int) and channels != classes:
        raise ModelFileError(f"{path} gives mask_logits with {channels} classes but its metadata names {classes} "
                             f"({', '.join(metadata.class_names)}); expected one channel per class")
    if not isinstance(channels, int) or not isinstance(image.shape[3], int):
        side = [d if isinstance(d, int) and d > 0 else int(metadata.tile_size_px or 64) for d in image.shape[1:3]]
        batch = image.shape[0] if isinstance(image.shape[0], int) and image.shape[0] > 0 else 1
        try:
            result = session.run(["mask_logits"], {INPUT_NAME: np.zeros((batch, *side, 3), np.float32)})[0]
        except Exception as error:  # onnxruntime raises its own unexported exception types
            raise ModelFileError(f"{path} fails on a zero ({batch}, {side[0]}, {side[1]}, 3) float32 tile: "
                                 f"{str(error).splitlines()[0] if str(error) else type(error).__name__}; expected "
                                 f"a weakseg-export model taking NHWC RGB tiles") from None
        if result.ndim != 4 or result.shape[3] != classes:
            raise ModelFileError(f"{path} gives mask_logits of shape {result.shape} but its metadata names "
                                 f"{classes} classes ({', '.join(metadata.class_names)}); expected "
                                 f"(batch, height, width, {classes})")


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
        ModelFileError: inputs or outputs that are not a weakseg-export
            model's (see :func:`check_model_contract`).
        ConfigError: no available provider, a bad thread count, or a single
            explicitly requested provider that onnxruntime did not take (with
            a fallback such as ``cuda,cpu`` it warns instead).

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
    check_model_contract(path, session, metadata)
    in_use = list(session.get_providers())
    warning = None
    if names[0] not in in_use:
        warning = f"requested {names[0]} but onnxruntime runs {path.name} on {', '.join(in_use)}"
        if explicit and len(names) == 1:
            raise ConfigError(warning + "; check the CUDA and cuDNN libraries (docs/install.md, GPU inference), "
                              "or pass --providers cuda,cpu to fall back to the CPU")
        print(f"warning: {warning}", file=sys.stderr)
    model = ModelSession(path, session, metadata, names, in_use, threads, file_sha256(path), warning)
    _SESSIONS[key] = model
    return model


def forget_session(model: ModelSession) -> None:
    """Drop ``model`` from :func:`load_session`'s per-process cache; its memory goes with the last reference.

    A long-lived Dask worker calls it when a run's plugin is removed, so models of
    earlier runs do not pile up in the worker.
    """
    for key in [key for key, cached in _SESSIONS.items() if cached is model]:
        del _SESSIONS[key]
