"""What ``run_training`` checks before it trains and records after: the output folder, the model card, provenance.

Kept apart from the training loop so that a read-only or occupied ``--out``,
``epochs=0`` or repeated class names fail in milliseconds, before any image
is read or any step is trained. No TensorFlow here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from weaksegtf.errors import ConfigError
from weaksegtf.model_card import build_model_card
from weaksegtf.output_guard import OutputFolder
from weaksegtf.provenance import provenance
from weaksegtf.training.config import TrainingConfig

COMMAND = "weakseg-train"
#: Every file a training run may write into its folder.
TRAINING_OUTPUTS = ("model.keras", "history.csv", "metrics.json", "predictions.png")
_CARD_SETTINGS = ("mpp", "mpp_source", "macenko", "class_colors")
# TrainingConfig fields that run_training's provenance does not list: the model card has its own key in
# metrics.json, and the other three were train_weak_segmenter's alone ("config" in metrics.json has them all).
_NOT_IN_PROVENANCE = ("model_card", "num_classes", "label_class_weights", "precise_batch_norm")


def check_class_names(class_names: Sequence[str]) -> list[str]:
    """Distinct, non-empty class names, at least two; a ConfigError naming the repeat otherwise."""
    if class_names is None:
        raise ConfigError("class names are missing; expected at least two non-empty names, background first")
    names = [str(name).strip() for name in class_names]
    if len(names) < 2 or any(not name for name in names):
        raise ConfigError(f"class names {list(class_names)} are not usable; expected at least two non-empty names, background first")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"class names {names} repeat {', '.join(map(repr, repeated))}; expected one distinct name per class")
    return names


def check_epochs(epochs: Any) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive int, got {epochs!r}")
    return epochs


def provenance_settings(out_dir: str | Path, config: TrainingConfig) -> dict[str, Any]:
    """The settings a ``run_training`` call records in its provenance: ``out_dir`` and the config's."""
    settings = {"out_dir": out_dir, **config.to_dict()}
    return {key: value for key, value in settings.items() if key not in _NOT_IN_PROVENANCE}


@dataclass
class TrainingOutputs:
    """A checked training request: its output folder, its model card and its settings."""

    folder: OutputFolder
    model_card: dict[str, Any]
    settings: dict[str, Any]

    def provenance(self) -> dict[str, Any]:
        """Provenance for ``metrics.json`` (versions, command line, time, seed, every setting)."""
        return provenance(**self.settings)

    def commit(self, *written: Path | None) -> list[str]:
        """Record the files written (``None`` entries skipped); remove this command's stale ones."""
        return self.folder.commit([Path(path).name for path in written if path is not None])


def check_training_request(
    out_dir: str | Path,
    *,
    class_names: Sequence[str],
    epochs: int,
    tile_size_px: int,
    model_card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    settings: Mapping[str, Any] | None = None,
    command: str = COMMAND,
) -> TrainingOutputs:
    """Check everything about a training run that needs no data, before any work.

    Args:
        out_dir: str or path. The output folder: new, empty, or (with
            ``overwrite``) holding only what weaksegtf wrote (see ``OutputFolder``).
        class_names: sequence of str. Distinct names, background first.
        epochs: int. At least 1.
        tile_size_px: int. Training tile side.
        model_card: mapping, optional. ``mpp``, ``mpp_source``, ``macenko`` and
            ``class_colors`` for the model card. Defaults to ``None``.
        overwrite: bool. Accept a non-empty folder. Defaults to ``False``.
        settings: mapping, optional. Recorded in the provenance. Defaults to ``None``.
        command: str. Recorded as the writer of the outputs. Defaults to ``"weakseg-train"``.

    Raises:
        ConfigError: bad class names, epochs, or model-card values.
        OutputError: ``out_dir`` is a file, not writable, or not empty without ``overwrite``.
    """
    names = check_class_names(class_names)
    check_epochs(epochs)
    card_settings = dict(model_card or {})
    unknown = sorted(set(card_settings) - set(_CARD_SETTINGS))
    if unknown:
        raise ConfigError(f"model_card has unknown keys {unknown}; expected some of {list(_CARD_SETTINGS)}")
    card = build_model_card(names, tile_size_px=tile_size_px, **card_settings)
    folder = OutputFolder(Path(out_dir), command, overwrite=overwrite)
    folder.check(TRAINING_OUTPUTS)
    return TrainingOutputs(folder, card, dict(settings or {}))


def check_training_outputs(out_dir: str | Path, config: TrainingConfig) -> TrainingOutputs:
    """:func:`check_training_request` for ``config``'s class names, epochs, tile size, model card and ``overwrite``."""
    return check_training_request(
        out_dir, class_names=config.class_names, epochs=config.epochs, tile_size_px=config.tile_size_px,
        model_card=config.model_card, overwrite=config.overwrite, settings=provenance_settings(out_dir, config),
    )


def write_history_csv(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """``history.csv``: one row per epoch (from 1), one column per logged value."""
    keys = sorted(history)
    rows = zip(*(history[k] for k in keys))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch, row in enumerate(rows, start=1):
            writer.writerow([epoch, *(f"{float(v):.6g}" for v in row)])
    return path
