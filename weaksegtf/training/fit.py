"""``train_weak_segmenter``: a ``WeakSegmenter`` built, compiled and fitted on arrays, in a data mode."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from weaksegtf.constants import IGNORE_VALUE
from weaksegtf.training.config import (
    LR_SCHEDULES,
    SETTING_NAMES,
    TrainingConfig,
    check_choice,
    check_setting_names,
    training_config,
)
from weaksegtf.training.modes import check_validation, select_data
from weaksegtf.training.prediction import inference_tile_px
from weaksegtf.training.streams import shard_by_data, training_dataset
from weaksegtf.training.strategy import resolve_strategy
from weaksegtf.training.training_data import TrainingData


def train_weak_segmenter(
    mask_images: np.ndarray | None,
    masks: np.ndarray | None,
    label_images: np.ndarray | Sequence[np.ndarray] | None,
    labels: np.ndarray | None,
    config: TrainingConfig | None = None,
    *,
    validation: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    callbacks: list | None = None,
    **settings: Any,
):
    """Train a ``WeakSegmenter`` on tile arrays; returns ``(model, history)``.

    Args:
        mask_images, masks: ``(N, H, W, 3)`` uint8 tiles and ``(N, H, W)`` class
            indices (255 = not annotated), or ``None``.
        label_images, labels: ``(M, H, W, 3)`` uint8 tiles (or a list of whole
            images of any sizes) and ``(M,)`` labels, or ``None``.
        config: ``TrainingConfig``, optional. Every setting (``num_classes`` or
            ``class_names`` is required). Defaults to ``TrainingConfig()``.
        validation: optional ``(images, masks)``: whole images (a list of any
            sizes, or an array) scored after every epoch in inference mode
            (:class:`weaksegtf.training.whole_image_validation.WholeImageValidation`);
            with ``best_epoch``, the best epoch's weights are kept.
        callbacks: list, optional. Keras callbacks, run after the training's own.
        **settings: ``TrainingConfig`` fields overriding ``config``
            (``num_classes=3, epochs=2``), and the arrays ``background_images``,
            ``lowres_images``, ``block_labels`` and ``mask_labels`` (see
            :class:`weaksegtf.training.TrainingData`). Mode ``"LR"`` needs the
            low-resolution set; in the other modes it is a third stream.

    The model is built, compiled and trained inside the scope of the config's
    ``strategy``: Keras splits every global batch of the training stream
    (``batch_size`` items per stream and step, as on one device) among the
    replicas, and each worker of a multi-worker run keeps its own share of it
    (``AutoShardPolicy.DATA``: every worker builds the same seeded stream). One
    step then gives the weights one device would reach on the whole batch
    (:class:`weaksegtf.models.WeakSegmenter`). The defaults follow section 2.3
    of Ciga & Martel (Adam, lr 1e-4, batch 20).

    Raises:
        ConfigError: a misspelt setting (the message names the closest ones), a
            refused value, or data that does not fit the mode.
        DataError: arrays with wrong shapes or values out of range.

    Example:
    >>> model, history = train_weak_segmenter(tiles, masks, None, None, num_classes=3, mode="S")  # doctest: +SKIP
    """
    check_setting_names(settings, SETTING_NAMES + TrainingData.EXTRA)
    data = TrainingData(mask_images, masks, label_images, labels, **TrainingData.take_extra(settings))
    config = training_config(config, settings)
    num_classes = config.class_count
    data, joint_table = select_data(data, config.mode, num_classes, config.joint_table)
    weights = loss_weights(data, config, num_classes)
    if validation is not None:
        check_validation(validation[0], validation[1], num_classes)
    import keras

    strategy = resolve_strategy(config.strategy)
    # Everything that creates or updates variables runs in the strategy's scope, the callbacks
    # (precise batch norm, validation, best-epoch restore) too: there, assigning a mirrored
    # variable updates every replica's copy.
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        keras.utils.set_random_seed(config.seed)
        model = build_segmenter(config, num_classes, joint_table, *weights)
        dataset, steps = training_dataset(data, config, 1 if strategy is None else strategy.num_replicas_in_sync)
        if strategy is not None:
            dataset = shard_by_data(dataset)
        steps_per_epoch = config.steps_per_epoch or steps
        schedule = learning_rate_schedule(config.learning_rate, config.lr_schedule, config.epochs * steps_per_epoch)
        model.compile(optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999))
        own_callbacks, selection = epoch_callbacks(model, data, config, validation)
        history = model.fit(
            dataset,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=own_callbacks + list(callbacks or []),
            verbose="auto" if config.verbose is None else config.verbose,
        )
    history.whole_image_validation = selection
    return model, history


def loss_weights(data: TrainingData, config: TrainingConfig, num_classes: int) -> tuple[list | None, list | None]:
    """The mask loss's class weights and the label loss's, with ``"auto"`` worked out from ``data``.

    ``"auto"``: the mask loss's are inverse pixel frequencies in the masks (for
    ``segmentation_loss="weighted_ce"`` only, ``None`` otherwise); the label
    loss's inverse label frequencies over the classification items,
    background tiles included.
    """
    from weaksegtf.losses import class_weights_from_counts

    class_weights, label_class_weights = config.class_weights, config.label_class_weights
    if isinstance(class_weights, str):
        class_weights = None
        if data.masks is not None and config.segmentation_loss == "weighted_ce":
            valid = data.masks[data.masks != IGNORE_VALUE]
            class_weights = class_weights_from_counts(np.bincount(valid, minlength=num_classes)).tolist()
    if isinstance(label_class_weights, str):
        label_class_weights = None
        if data.label_images is not None:
            counts = np.bincount(np.asarray(data.labels, np.int64).reshape(-1), minlength=num_classes)
            counts[0] += data.count("background_images")
            label_class_weights = class_weights_from_counts(counts).tolist()
    return class_weights, label_class_weights


def build_segmenter(config: TrainingConfig, num_classes: int, joint_table, class_weights, label_class_weights):
    """The ``WeakSegmenter`` of ``config``, with its encoder weights loaded (if any)."""
    from weaksegtf.models import WeakSegmenter
    from weaksegtf.models.torch_weights import load_encoder_weights

    model = WeakSegmenter(
        num_classes=num_classes, class_names=config.class_names, class_weights=class_weights, update=config.update,
        architecture=config.architecture, unet_filters=config.unet_filters,
        segmentation_loss=config.segmentation_loss, joint_table=joint_table, lowres_loss=config.lowres_loss,
        lowres_group_size=config.lowres_group_size, lowres_weight=config.lowres_weight,
        label_class_weights=label_class_weights, classification_weight=config.classification_weight,
        allowed_class_weight=config.allowed_class_weight, present_class_share=config.present_class_share,
        decoder=config.decoder, upsampling=config.upsampling,
    )
    if config.encoder_weights is not None:
        load_encoder_weights(model.encoder, config.encoder_weights)
    return model


def epoch_callbacks(model, data: TrainingData, config: TrainingConfig, validation) -> tuple[list, Any]:
    """The training's own callbacks and its ``WholeImageValidation`` (or ``None``).

    Order matters: batch-norm statistics first, so validation and the kept epoch use them.
    """
    callbacks, selection = [], None
    if config.precise_batch_norm and data.count("mask_images"):
        from weaksegtf.training.precise_batch_norm import PreciseBatchNorm

        callbacks.append(PreciseBatchNorm(data.mask_images, config.batch_size, config.seed))
    if validation is not None:
        from weaksegtf.training.whole_image_validation import WholeImageValidation

        tile_px = data.mask_images.shape[1] if data.mask_images is not None else None
        selection = WholeImageValidation(
            validation[0], validation[1], model.class_names, restore_best=config.best_epoch,
            min_size_px=inference_tile_px(tile_px),
        )
        callbacks.append(selection)
    return callbacks, selection


def learning_rate_schedule(learning_rate: float, schedule: str, total_steps: int):
    """The optimizer's learning rate: a float (``"constant"``) or a half-cosine decay to 0 (``"cosine"``).

    >>> learning_rate_schedule(1e-3, "constant", 100)
    0.001
    >>> round(float(learning_rate_schedule(1e-3, "cosine", 100)(50)), 6)
    0.0005
    """
    check_choice("lr_schedule", schedule, LR_SCHEDULES)
    if schedule == "constant":
        return learning_rate
    import keras

    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, int(total_steps)))
