"""Load torchvision-format ResNet-18 weights (or a Keras weights file) into the encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import keras
import numpy as np

from weaksegtf.errors import WeightsError

# Keys of a torchvision ResNet-18 that the cut encoder does not hold.
_UNUSED_PREFIXES = ("layer4.", "fc.")
_KNOWN_PREFIXES = ("model.", "resnet.", "encoder.", "backbone.", "module.")


def _encoder_parameter_names(encoder: keras.Model) -> dict[str, list[tuple[str, keras.Variable]]]:
    """torchvision key -> Keras variable, for every conv and batch-norm layer."""
    mapping = {}
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            mapping[f"{layer.name}.weight"] = ("conv", layer.kernel)
        elif isinstance(layer, keras.layers.BatchNormalization):
            mapping[f"{layer.name}.weight"] = ("copy", layer.gamma)
            mapping[f"{layer.name}.bias"] = ("copy", layer.beta)
            mapping[f"{layer.name}.running_mean"] = ("copy", layer.moving_mean)
            mapping[f"{layer.name}.running_var"] = ("copy", layer.moving_variance)
    return mapping


def _strip_prefix(state_dict: Mapping[str, np.ndarray], prefix: str | None, source: str) -> dict:
    if prefix is None:
        candidates = [""] + [p for p in _KNOWN_PREFIXES] + [
            key[: -len("conv1.weight")] for key in state_dict if key.endswith("conv1.weight") and "layer" not in key
        ]
        prefix = next((p for p in candidates if f"{p}conv1.weight" in state_dict), None)
        if prefix is None:
            sample = sorted(state_dict)[:5]
            raise WeightsError(
                f"{source} does not look like a ResNet-18 state_dict: no 'conv1.weight' key "
                f"(with or without a prefix such as 'model.'); first keys are {sample}"
            )
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def load_state_dict_into_encoder(
    encoder: keras.Model,
    state_dict: Mapping[str, np.ndarray],
    prefix: str | None = None,
    source: str = "state_dict",
) -> None:
    """Copy a torchvision ResNet-18 ``state_dict`` (numpy arrays) into the encoder.

    Conv kernels go from PyTorch ``(out, in, kh, kw)`` to Keras
    ``(kh, kw, in, out)``; batch norm ``weight, bias, running_mean,
    running_var`` become ``gamma, beta, moving_mean, moving_variance``.
    ``layer4.*``, ``fc.*`` and ``*.num_batches_tracked`` are ignored. Any
    missing key, unexpected key or shape mismatch raises ``WeightsError``
    naming the source, and nothing is copied.
    """
    weights = _strip_prefix(state_dict, prefix, source)
    weights = {
        key: value for key, value in weights.items()
        if not key.startswith(_UNUSED_PREFIXES) and not key.endswith("num_batches_tracked")
    }
    mapping = _encoder_parameter_names(encoder)
    missing = sorted(set(mapping) - set(weights))
    unexpected = sorted(set(weights) - set(mapping))
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not match ResNet-18 up to layer3: "
            f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
            f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}"
        )
    converted = []
    for key, (kind, variable) in mapping.items():
        value = np.asarray(weights[key], dtype=np.float32)
        if kind == "conv":
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
        if tuple(value.shape) != tuple(variable.shape):
            expected = tuple(variable.shape)
            if kind == "conv":
                expected = (expected[3], expected[2], expected[0], expected[1])
            raise WeightsError(
                f"{source}: '{key}' has shape {tuple(np.asarray(weights[key]).shape)}, expected {expected}"
            )
        converted.append((variable, value))
    for variable, value in converted:
        variable.assign(value)


def load_torchvision_weights(encoder: keras.Model, path: str | Path, prefix: str | None = None) -> None:
    """Load a torchvision-format ResNet-18 ``.pth`` file into the encoder.

    The file may hold a bare ``state_dict`` or a checkpoint dict with a
    ``state_dict``/``model`` entry; keys may carry a prefix such as
    ``model.`` or ``resnet.`` (detected automatically unless ``prefix`` is
    given). Requires PyTorch (``pip install weaksegtf[torch]``).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the install
        raise WeightsError(
            f"reading {path} needs PyTorch; install it with pip install 'weaksegtf[torch]'"
        ) from error
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path} is not a readable PyTorch file: {error}") from error
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path} holds a {type(checkpoint).__name__}, expected a state_dict")
    state_dict = {
        key: value.detach().cpu().numpy() for key, value in checkpoint.items() if hasattr(value, "detach")
    }
    load_state_dict_into_encoder(encoder, state_dict, prefix=prefix, source=str(path))


def load_encoder_weights(encoder: keras.Model, path: str | Path, prefix: str | None = None) -> None:
    """Load encoder weights from a ``.pth`` (torchvision) or a Keras ``.weights.h5`` file."""
    path = Path(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        load_torchvision_weights(encoder, path, prefix=prefix)
    elif path.name.endswith(".weights.h5"):
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        try:
            encoder.load_weights(path)
        except Exception as error:
            raise WeightsError(f"{path} does not match the ResNet-18 encoder: {error}") from error
    else:
        raise WeightsError(f"{path}: unknown weights format; expected .pth or .weights.h5")
