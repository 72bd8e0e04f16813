"""The model card: what a model needs at deployment, written once and stored inside ``model.keras``.

Classes, their colours, the training resolution (mpp), the tile size and the
stain reference become known during preparation and training. Training puts
them in ``WeakSegmenter(model_card=...)``, so they travel inside the ``.keras``
file; ``weakseg-export`` copies them into the ONNX metadata (its flags only
override), and ``weakseg-infer`` reads them from there. A user never retypes them.

The mpp comes, first match wins, from ``weakseg-train --mpp``, from
``weakseg-prepare``'s ``summary.json`` (``patch_mpp``) or the GlaS adapter's
``split.json`` (``mpp``) beside the training folders. No TensorFlow here: the
card of a ``.keras`` file is read from its ``config.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from weaksegtf.errors import ConfigError, DataError

MODEL_CARD_VERSION = 1
#: Files beside (or one level above) a training folder that declare how it was made.
PREPARE_SUMMARY = "summary.json"
GLAS_SPLIT = "split.json"
STAIN_REFERENCE = "stain_normalizer.json"


def check_mpp(mpp: Any, what: str = "mpp") -> float | None:
    """``mpp`` as a float, or ``None``; a ConfigError unless it is a positive finite number."""
    if mpp is None:
        return None
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or not math.isfinite(mpp) or mpp <= 0:
        raise ConfigError(f"{what} must be a positive number of microns per pixel, got {mpp!r}")
    return float(mpp)


def build_model_card(
    class_names: Sequence[str],
    *,
    tile_size_px: int | None = None,
    mpp: float | None = None,
    macenko: Mapping[str, Any] | None = None,
    class_colors: Sequence[Sequence[int]] | None = None,
    mpp_source: str | None = None,
) -> dict[str, Any]:
    """A JSON-ready model card.

    Args:
        class_names: sequence of str. One name per class, background first.
        tile_size_px: int, optional. Training tile side. Defaults to ``None``.
        mpp: float, optional. Microns per pixel of the training tiles. Defaults to ``None`` (unknown).
        macenko: dict, optional. Macenko stain reference (``MacenkoNormalizer.save`` JSON). Defaults to ``None``.
        class_colors: sequence of (r, g, b), optional. Defaults to ``weaksegtf.visualize.DEFAULT_COLORS``.
        mpp_source: str, optional. Where the mpp came from, for the reader. Defaults to ``None``.

    Raises:
        ConfigError: a non-positive mpp, or colours that do not match the classes.

    Example:
    >>> build_model_card(["background", "gland"], tile_size_px=128, mpp=1.24)["mpp"]
    1.24
    """
    from weaksegtf.visualize import palette

    names = [str(name) for name in class_names]
    if class_colors is not None and (len(class_colors) != len(names) or any(len(c) != 3 for c in class_colors)):
        raise ConfigError(f"got {len(class_colors)} class colours {list(class_colors)} for {len(names)} classes; expected (r, g, b) each")
    colors = palette(len(names), class_colors)[: len(names)]
    return {
        "model_card_version": MODEL_CARD_VERSION,
        "class_names": names,
        "class_colors": [[int(v) for v in color] for color in colors],
        "mpp": check_mpp(mpp),
        "mpp_source": mpp_source,
        "tile_size_px": None if tile_size_px is None else int(tile_size_px),
        "macenko": None if macenko is None else dict(macenko),
    }


def read_model_card(model_path: str | Path) -> dict[str, Any]:
    """The card inside a weaksegtf ``.keras`` file, ``{}`` for a model trained before cards existed (no TensorFlow)."""
    from weaksegtf.export.segmenter_file import read_keras_config

    card = read_keras_config(model_path).get("config", {}).get("model_card")
    return dict(card) if isinstance(card, dict) else {}


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}; expected the JSON file weaksegtf wrote there") from None
    if not isinstance(document, dict):
        raise DataError(f"{path} holds a {type(document).__name__}; expected a JSON object")
    return document


def prepared_set_info(folder: str | Path) -> dict[str, Any]:
    """What the tool that made a training folder recorded: ``{"mpp", "macenko", "source"}`` or ``{}``.

    Looks in ``folder`` and its parent for ``weakseg-prepare``'s ``summary.json``
    (``patch_mpp``, and ``stain_normalizer.json`` beside it) or the GlaS
    adapter's ``split.json`` (``mpp``).
    """
    folder = Path(folder)
    for place in (folder, folder.parent):
        summary, split = place / PREPARE_SUMMARY, place / GLAS_SPLIT
        if summary.is_file():
            document = _read_json(summary)
            if "patch_mpp" in document:
                from weaksegtf.preprocessing.macenko_normalizer import read_stain_reference

                stain = place / STAIN_REFERENCE
                return {
                    "mpp": check_mpp(document.get("patch_mpp"), f"patch_mpp in {summary}"),
                    "macenko": read_stain_reference(stain) if stain.is_file() else None,
                    "source": str(summary),
                }
        if split.is_file():
            document = _read_json(split)
            if "mpp" in document:
                return {"mpp": check_mpp(document.get("mpp"), f"mpp in {split}"), "macenko": None, "source": str(split)}
    return {}


def card_settings_from_folders(mpp: float | None, folders: Iterable[str | Path | None]) -> dict[str, Any]:
    """``model_card`` settings of a training run: ``--mpp`` wins, else what the training folders declare.

    Returns:
        ``{"mpp": float or None, "mpp_source": str or None, "macenko": dict or None}``.

    Raises:
        ConfigError: two training folders declare different resolutions or stain references
            (and no ``mpp`` settles the resolution).
    """
    infos = [prepared_set_info(f) for f in folders if f is not None]
    infos = [info for info in infos if info]
    macenkos = {json.dumps(info["macenko"], sort_keys=True) for info in infos if info.get("macenko") is not None}
    if len(macenkos) > 1:
        listed = ", ".join(info["source"] for info in infos)
        raise ConfigError(f"the training folders were stain-normalised to different references ({listed}); expected one reference")
    macenko = next((info["macenko"] for info in infos if info.get("macenko") is not None), None)
    if mpp is not None:
        return {"mpp": check_mpp(mpp, "--mpp"), "mpp_source": "--mpp", "macenko": macenko}
    declared = {info["mpp"] for info in infos if info.get("mpp") is not None}
    if len(declared) > 1:
        listed = ", ".join(f"{info['mpp']} um/px in {info['source']}" for info in infos)
        raise ConfigError(f"the training folders declare different resolutions ({listed}); expected one mpp, or pass --mpp")
    if not declared:
        return {"mpp": None, "mpp_source": None, "macenko": macenko}
    source = next(info["source"] for info in infos if info.get("mpp") is not None)
    return {"mpp": declared.pop(), "mpp_source": source, "macenko": macenko}
