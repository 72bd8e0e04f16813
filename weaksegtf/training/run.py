"""``run_training``: train from a ``MaskSet``, a ``LabelSet`` and a validation ``MaskSet``, and write the results."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weaksegtf.constants import IGNORE_VALUE
from weaksegtf.errors import DataError
from weaksegtf.io import write_text_atomic
from weaksegtf.training.config import TrainingConfig, augmentation_mode, training_config
from weaksegtf.training.fit import train_weak_segmenter
from weaksegtf.training.modes import BACKGROUND_MODES
from weaksegtf.training.outputs import check_training_outputs, write_history_csv
from weaksegtf.training.prediction import evaluate_images, inference_tile_px
from weaksegtf.training.strategy import check_strategy, resolve_strategy
from weaksegtf.training.training_data import TrainingData


@dataclass
class TrainingResult:
    """What a training run wrote and measured."""

    model_path: Path
    history_path: Path
    metrics_path: Path
    overlay_path: Path | None
    metrics: dict = field(default_factory=dict)


def run_training(
    train_masks,
    train_labels,
    val,
    out_dir: str | Path,
    config: TrainingConfig | None = None,
    *,
    train_lowres=None,
    **settings: Any,
) -> TrainingResult:
    """Train from a ``MaskSet``, a ``LabelSet`` and a validation ``MaskSet`` and write the results.

    Masked images are cut into ``tile_size_px`` tiles for training. Labelled
    images are, by default (``label_tiles="whole"``), each one classification
    patch, fed whole (shrunk only if a side exceeds ``label_max_size_px``), as
    Ciga & Martel's classification patches are; ``label_tiles="grid"`` cuts
    them into tiles that all inherit the image's label, for label sets whose
    images are already patch-sized (a tile of a larger image may hold none of
    its class). With ``background_patches`` (default), tiles of the masked
    images that are at least 90% background join the label stream with the
    background label. Validation runs after every epoch on whole images in
    inference mode, and the written model is the best epoch's
    (``best_epoch``). ``train_lowres`` is a ``LabelSet`` whose labels are
    low-resolution labels (rows of ``joint_table``): each of its images is one
    block and is used whole, so they must share one size, a multiple of 16.
    With ``self_training`` (whole labelled images, a mode with masks and
    labels), a second training runs from scratch on the masks plus the
    labelled images' label-constrained pseudo-masks drawn by the first model
    (:mod:`weaksegtf.pseudo_labels`, ``pseudo_confidence``), as mode S (the
    pseudo-masks carry the labels), with the same validation; the second
    model is the one written.

    Writes ``model.keras``, ``history.csv``, ``metrics.json`` and
    ``predictions.png`` (image | truth | prediction) into ``out_dir``.
    ``metrics.json`` holds the run's counts, losses and validation scores, the
    model card, the provenance and the whole ``config``. The ``model_card``
    setting (``mpp``, ``mpp_source``, ``macenko``, ``class_colors``) is
    completed with the class names and tile size and saved inside
    ``model.keras`` (``weaksegtf.model_card``). ``out_dir`` must be new or empty
    unless ``overwrite`` (``weaksegtf.output_guard.OutputFolder``); that, the
    class names, ``epochs`` and every other setting are checked before any image is read.

    The ``strategy`` (``"none"``, ``"mirrored"``, ``"multiworker"`` or a
    ``tf.distribute.Strategy``; see :func:`train_weak_segmenter`) is created
    before any image is read, as ``MultiWorkerMirroredStrategy`` must be; with
    self-training both trainings use it. ``batch_size`` is the global batch of
    each stream, split among the replicas.

    Args:
        train_masks: ``MaskSet`` or ``None``.
        train_labels: ``LabelSet`` or ``None``.
        val: validation ``MaskSet`` or ``None``.
        out_dir: str or path. The output folder.
        config: ``TrainingConfig``, optional. ``class_names`` is required.
            Defaults to ``TrainingConfig()``; ``verbose`` defaults to ``2`` here.
        train_lowres: ``LabelSet`` of low-resolution blocks, or ``None``.
        **settings: ``TrainingConfig`` fields overriding ``config``; a misspelt
            name raises ``ConfigError`` naming the closest ones.

    Example:
    >>> config = TrainingConfig(class_names=["background", "benign", "malignant"], epochs=15)  # doctest: +SKIP
    >>> result = run_training(masks, labels, val, "runs/sc", config, learning_rate=1e-3)  # doctest: +SKIP
    """
    config = training_config(config, settings)
    if config.verbose is None:
        config = config.replace(verbose=2)  # one line per epoch
    config.check_self_training(has_masks=bool(train_masks), has_labels=bool(train_labels))
    outputs = check_training_outputs(out_dir, config)
    strategy = resolve_strategy(config.strategy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = read_training_data(train_masks, train_labels, train_lowres, config)
    validation = (val.images, val.masks) if val is not None and len(val) else None

    start = time.perf_counter()
    first_round = None
    if config.self_training:
        model, history, first_round = self_train(data, config, validation)
    else:
        model, history = _train(data, config, validation)
    train_seconds = time.perf_counter() - start

    model_path = out_dir / "model.keras"
    tmp_model = out_dir / "model.tmp.keras"
    model.model_card = outputs.model_card
    model.save(tmp_model)
    os.replace(tmp_model, model_path)
    history_path = write_history_csv(history.history, out_dir / "history.csv")
    metrics = training_metrics(config, data, model, history, train_seconds)
    metrics["self_training"] = first_round
    metrics["strategy"] = check_strategy(config.strategy)
    metrics["replicas"] = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    overlay_path = None
    if validation is not None:
        overlay_path = validation_outputs(model, history, val, config, out_dir, metrics)
    metrics["model_card"], metrics["provenance"] = outputs.model_card, outputs.provenance()
    metrics["config"] = config.to_dict()
    metrics_path = out_dir / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2))
    outputs.commit(model_path, history_path, metrics_path, overlay_path)
    return TrainingResult(model_path, history_path, metrics_path, overlay_path, metrics)


def _train(data: TrainingData, config: TrainingConfig, validation):
    """:func:`train_weak_segmenter` on ``data``."""
    return train_weak_segmenter(
        data.mask_images, data.masks, data.label_images, data.labels, config, validation=validation,
        background_images=data.background_images, lowres_images=data.lowres_images, block_labels=data.block_labels,
    )


def read_training_data(train_masks, train_labels, train_lowres, config: TrainingConfig) -> TrainingData:
    """The arrays of a run: mask tiles, label items (whole images or tiles), background tiles, low-resolution blocks."""
    from weaksegtf.data import background_tiles, label_set_to_arrays, label_set_to_images, mask_set_to_arrays

    data = TrainingData()
    masked = train_masks is not None and len(train_masks)
    if masked:
        data.mask_images, data.masks = mask_set_to_arrays(train_masks, config.tile_size_px)
    if train_labels is not None and len(train_labels):
        if config.label_tiles == "whole":
            data.label_images, data.labels = label_set_to_images(train_labels, config.label_max_size_px)
        else:
            data.label_images, data.labels = label_set_to_arrays(train_labels, config.tile_size_px)
    if config.background_patches and masked and config.mode in BACKGROUND_MODES:
        data.background_images = background_tiles(train_masks, config.tile_size_px)
    if train_lowres is not None and len(train_lowres):
        data.lowres_images, data.block_labels = whole_blocks(train_lowres)
    return data


def self_train(data: TrainingData, config: TrainingConfig, validation):
    """Self-training: a first model, then ``config.self_training_rounds`` trainings on masks + pseudo-masks.

    The first model is trained in the run's mode (``teacher="S+C"``) or on the
    masks alone (``teacher="S"``). Each model draws label-constrained
    pseudo-masks of the labelled images (:func:`pseudo_round`); a model is
    trained from scratch on the masks plus them, as mode S (the pseudo-masks
    carry the labels), and draws the pseudo-masks of the next round. Returns the
    last ``(model, history)`` and a record of the first round (its validation,
    the first pseudo-masks' share and tiles) with ``later_rounds`` records.
    """
    if config.teacher == "S":
        first = data.replace(label_images=None, labels=None, background_images=None)
        model, history = _train(first, config.replace(mode="S", self_training=False), validation)
    else:
        model, history = _train(data, config, validation)
    records = []
    for _ in range(config.self_training_rounds):
        model, history, record = pseudo_round(model, history, data, config, validation)
        records.append(record)
    return model, history, {**records[0], "teacher": config.teacher, "later_rounds": records[1:]}


def pseudo_round(model, history, data: TrainingData, config: TrainingConfig, validation):
    """One round: ``model`` draws the pseudo-masks, a new model trains on masks + pseudo-masks.

    Returns the new ``(model, history)`` and a record of the teacher: its best
    epoch and validation, the pseudo-masks' annotated share and tiles, its history.
    """
    from weaksegtf.data import mask_set_to_arrays
    from weaksegtf.pseudo_labels import pseudo_mask_set

    if config.verbose:
        print(f"self-training: pseudo-masks of {data.count('label_images')} labelled images, then a new training",
              flush=True)
    pseudo = pseudo_mask_set(model, data.label_images, data.labels, config.pseudo_confidence,
                             inference_tile_px(config.tile_size_px))
    pseudo_x, pseudo_y = mask_set_to_arrays(pseudo, config.tile_size_px)
    annotated = (pseudo_y != IGNORE_VALUE).mean((1, 2)) > 0  # tiles with something to learn
    selection = history.whole_image_validation
    chosen = selection is not None and config.best_epoch
    record = {
        "best_epoch": selection.best_epoch if chosen else None,
        "validation": selection.best_metrics if chosen else None,
        "pseudo_confidence": config.pseudo_confidence,
        "pseudo_annotated_share": float(np.mean([(m != IGNORE_VALUE).mean() for m in pseudo.masks])),
        "n_pseudo_tiles": int(annotated.sum()),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    student = data.replace(mask_images=np.concatenate([data.mask_images, pseudo_x[annotated]]),
                           masks=np.concatenate([data.masks, pseudo_y[annotated]]), label_images=None, labels=None,
                           background_images=None)
    model, history = _train(student, config.replace(mode="S", self_training=False), validation)
    return model, history, record


def training_metrics(config: TrainingConfig, data: TrainingData, model, history, train_seconds: float) -> dict:
    """The first part of ``metrics.json``: what the run trained on, with which model, losses and schedule."""
    return {
        "mode": config.mode,
        "n_mask_tiles": data.count("mask_images"),
        "label_tiles": config.label_tiles,
        "n_label_items": data.count("label_images"),
        "n_background_tiles": data.count("background_images"),
        "n_lowres_images": data.count("lowres_images"),
        "architecture": config.architecture,
        "decoder": model.decoder,
        "upsampling": model.upsampling,
        "segmentation_loss": config.segmentation_loss,
        "lowres_loss": config.lowres_loss if data.lowres_images is not None else None,
        "epochs": config.epochs,
        "steps_per_epoch": history.params.get("steps"),
        "train_seconds": round(train_seconds, 1),
        "class_names": list(config.class_names),
        "class_weights": model.class_weights,
        "label_class_weights": model.label_class_weights,
        "classification_weight": model.classification_weight,
        "allowed_class_weight": model.allowed_class_weight,
        "present_class_share": model.present_class_share,
        "learning_rate": config.learning_rate,
        "lr_schedule": config.lr_schedule,
        "augment": augmentation_mode(config.augment),
    }


def validation_outputs(model, history, val, config: TrainingConfig, out_dir: Path, metrics: dict) -> Path:
    """Add the validation scores (the best epoch's, or the last's) to ``metrics``; write ``predictions.png``."""
    from weaksegtf.visualize import comparison_grid

    selection = history.whole_image_validation
    metrics["best_epoch"] = selection.best_epoch if config.best_epoch else None
    if config.best_epoch:
        val_metrics, predictions = selection.best_metrics, selection.best_predictions
    else:
        val_metrics, predictions = evaluate_images(
            model, val.images, val.masks, config.class_names, inference_tile_px(config.tile_size_px)
        )
    metrics["validation"] = val_metrics
    return comparison_grid(
        list(val.images), list(val.masks), list(predictions), config.class_names, out_dir / "predictions.png",
        titles=list(val.names),
    )


def whole_blocks(label_set) -> tuple[np.ndarray, np.ndarray]:
    """Images and low-resolution labels of a ``LabelSet`` whose images are whole blocks."""
    sizes = sorted({image.shape[:2] for image in label_set.images})
    if len(sizes) != 1 or sizes[0][0] % 16 or sizes[0][1] % 16:
        raise DataError(
            f"low-resolution images are whole blocks and must share one size with sides multiples of 16; "
            f"got sizes {sizes[:4]}"
        )
    return np.stack(label_set.images), np.asarray(label_set.labels, np.int32)
