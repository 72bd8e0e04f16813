"""What ``run_training`` checks before it trains and records after: the output folder, the model card, provenance.

Kept apart from the training loop so that a read-only or occupied ``--out``,
``epochs=0`` or repeated class names fail in milliseconds, before any image
is read or any step is trained. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from weaksegtf.errors import ConfigError
from weaksegtf.model_card import build_model_card
from weaksegtf.output_guard import OutputFolder
from weaksegtf.provenance import provenance

COMMAND = "weakseg-train"
#: Every file a training run may write into its folder.
TRAINING_OUTPUTS = ("model.keras", "history.csv", "metrics.json", "predictions.png")
_CARD_SETTINGS = ("mpp", "mpp_source", "macenko", "class_colors")
# run_training arguments that are data, not settings, and stay out of provenance.
_DATA_ARGUMENTS = ("train_masks", "train_labels", "val", "train_lowres", "model_card")


def check_class_names(class_names: Sequence[str]) -> list[str]:
    """Distinct, non-empty class names, at least two; a ConfigError naming the repeat otherwise."""
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


def training_settings(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a ``run_training`` call (its ``locals()`` at entry), without the data sets."""
    settings = {key: value for key, value in arguments.items() if key not in _DATA_ARGUMENTS}
    if settings.get("joint_table") is not None and not isinstance(settings["joint_table"], (str, Path)):
        settings["joint_table"] = type(settings["joint_table"]).__name__
    if settings.get("strategy") is not None and not isinstance(settings["strategy"], str):
        settings["strategy"] = type(settings["strategy"]).__name__  # a tf.distribute.Strategy object
    return settings


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
