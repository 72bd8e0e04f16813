"""Training of a ``WeakSegmenter`` from mask sets and label sets, in the paper's data modes.

Ciga & Martel section 3.3: **S** uses s% of the images with masks; **S+C** adds
the other (100 - s)% as label-only images; **S+C*** uses s% masks plus *all*
images as labels; **C** uses labels only. **LR** trains from low-resolution
(block) labels alone with a label super-resolution loss (Zhao et al. 2019);
in the other modes, low-resolution data, when given, joins as a third stream.
The library functions here are what ``weakseg-train`` and ``weakseg-demo`` call.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from weaksegtf.constants import IGNORE_VALUE, IMAGE_PAD_VALUE, SIZE_MULTIPLE
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import json_float, write_text_atomic
from weaksegtf.metrics.confusion import confusion_matrix, dice_per_class, iou_per_class, pixel_accuracy
from weaksegtf.training_outputs import check_training_request, training_settings
from weaksegtf.training_strategy import check_strategy, resolve_strategy

MODES = ("S", "S+C", "S+C*", "C", "LR")
#: How labelled images enter the label stream: whole (one patch each) or as grid tiles.
LABEL_TILES = ("whole", "grid")
#: Model inputs must have sides that are multiples of this (the encoder's stride).
DEFAULT_BATCH_SIZE = 20  # section 2.3
DEFAULT_LEARNING_RATE = 1e-4  # section 2.3, Adam(0.9, 0.999)
#: Weight of the allowed-class loss in weakseg-train's recipe: measured best on GlaS validation patients
#: (docs/results.md); ``0.0`` is the paper's loss (classification cross-entropy alone).
DEFAULT_ALLOWED_CLASS_WEIGHT = 1.0
#: Learning-rate schedules of ``train_weak_segmenter(lr_schedule=...)``.
LR_SCHEDULES = ("constant", "cosine")
#: Augmentations of ``make_train_dataset(augment=...)``.
AUGMENTATIONS = ("none", "light", "full")


def image_labels_from_masks(masks: np.ndarray, ignore_value: int = IGNORE_VALUE) -> np.ndarray:
    """Image label = its most frequent foreground class (>0), or 0 if it has none.

    Used in S+C* mode, where the masked images also join the label stream.
    """
    from weaksegtf.data.dataset_split import dominant_foreground_label

    return np.array([dominant_foreground_label(mask, ignore_value) for mask in masks], np.int32).reshape(-1)


def check_arrays(
    images: np.ndarray, targets: np.ndarray, num_classes: int, what: str, ignore_value: int = IGNORE_VALUE
) -> None:
    """Shapes and value ranges of a training stream, checked before TensorFlow sees them."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{what} images must be (N, H, W, 3), got {images.shape}")
    if images.shape[1] % SIZE_MULTIPLE or images.shape[2] % SIZE_MULTIPLE:
        raise ConfigError(f"{what} tiles are {images.shape[1]}x{images.shape[2]}; height and width must be multiples of 16")
    if len(targets) != len(images):
        raise DataError(f"{what}: {len(images)} images but {len(targets)} targets")
    bad = targets[(targets >= num_classes) & (targets != ignore_value)] if targets.ndim > 1 else targets[
        (targets < 0) | (targets >= num_classes)
    ]
    if bad.size:
        kind = "mask value" if targets.ndim > 1 else "label"
        raise DataError(f"{what}: {kind} {int(bad.flat[0])} is out of range for {num_classes} classes")


def check_validation(images, masks, num_classes: int, ignore_value: int = IGNORE_VALUE) -> None:
    """Whole validation images of any sizes and their masks, checked before training starts."""
    if len(images) != len(masks):
        raise DataError(f"validation set: {len(images)} images but {len(masks)} masks")
    for i, (image, mask) in enumerate(zip(images, masks)):
        if image.ndim != 3 or image.shape[-1] != 3 or mask.shape != image.shape[:2]:
            raise DataError(f"validation image {i} is {image.shape} with a mask of {mask.shape}; expected (H, W, 3) and (H, W)")
        bad = mask[(mask >= num_classes) & (mask != ignore_value)]
        if bad.size:
            raise DataError(f"validation mask {i}: mask value {int(bad.flat[0])} is out of range for {num_classes} classes")


def check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    """Image-level labels are class indices in ``[0, num_classes)``."""
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise DataError(f"{what}: label {int(bad.flat[0])} is out of range for {num_classes} classes")


def check_block_labels(images: np.ndarray, block_labels: np.ndarray, joint_table, what: str = "low-resolution set") -> None:
    """Low-resolution images and block labels, checked before TensorFlow sees them.

    ``block_labels`` is ``(N,)`` (one block per image) or ``(N, R, C)`` (a block
    grid that tiles each image); every value is a row of ``joint_table`` or
    255 (unlabelled block).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{what} images must be (N, H, W, 3), got {images.shape}")
    if images.shape[1] % SIZE_MULTIPLE or images.shape[2] % SIZE_MULTIPLE:
        raise ConfigError(f"{what} tiles are {images.shape[1]}x{images.shape[2]}; height and width must be multiples of 16")
    if len(block_labels) != len(images):
        raise DataError(f"{what}: {len(images)} images but {len(block_labels)} block-label maps")
    if block_labels.ndim not in (1, 3):
        raise DataError(f"{what}: block labels have shape {block_labels.shape}; expected (N,) or (N, rows, cols)")
    if block_labels.ndim == 3 and (images.shape[1] % block_labels.shape[1] or images.shape[2] % block_labels.shape[2]):
        raise DataError(
            f"{what}: a {block_labels.shape[1]}x{block_labels.shape[2]} block-label map does not tile "
            f"{images.shape[1]}x{images.shape[2]} images"
        )
    joint_table.check_block_labels(block_labels, what)


def make_train_dataset(
    mask_images: np.ndarray | None,
    masks: np.ndarray | None,
    label_images: np.ndarray | Sequence[np.ndarray] | None,
    labels: np.ndarray | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    augment: bool | str = False,
    lowres_images: np.ndarray | None = None,
    block_labels: np.ndarray | None = None,
    background_images: np.ndarray | None = None,
    label_batch_size: int | None = None,
    replicas: int = 1,
):
    """Zipped tf.data stream of ``{"mask": (x, y), "label": ..., "background": ..., "lowres": (x, z)}`` and its epoch length.

    Each stream is shuffled and repeated forever, so the shorter ones repeat;
    an epoch is one pass over the largest stream, in steps. Streams without
    data are left out.

    ``label_images`` is either an ``(M, t, t, 3)`` array of tiles or a list
    of whole images of any sizes (:func:`weaksegtf.data.label_set_to_images`).
    Whole images are padded (white) to a multiple of 16 and to the largest
    image of their batch, and come with a valid-pixel map ``(B, H, W)`` so the
    classifier's pooling ignores the padding: ``(x, y, valid)``. They are
    batched ``label_batch_size`` at a time (default: as many as fit in the
    pixels of one mask batch, at least 2). ``background_images`` are tiles
    labelled background, batched so that their share of each step matches
    their share of the classification items.

    Augmentation (``augment``: ``"none"``/``False``, ``"light"``, ``"full"``/``True``):
    ``"full"`` gives masks the whole :class:`weaksegtf.augment.Augmenter`
    (flips, rotations, elastic deformation, blur, colour); ``"light"`` gives
    them a random flip, 90° rotation and mild colour jitter, in TensorFlow ops
    (no elastic deformation or blur, several times cheaper). Background tiles
    get flips, 90° rotations and colour jitter, whole labelled images flips
    (left-right, up-down: their shape is kept) and colour jitter (an
    image-level label does not move); the low-resolution stream gets colour
    only, as its block labels would move.

    ``replicas``: the ``tf.distribute`` replicas that will share every batch
    (Keras splits each stream's batch among them). Every stream's batch size
    must be a multiple of it, so that each replica gets an equal part: the
    default label and background batch sizes are rounded up to one, and a
    ``batch_size`` or ``label_batch_size`` that is not raises ``ConfigError``.
    """
    import tensorflow as tf

    streams, steps = {}, []
    for name, size in (("batch_size", batch_size), ("label_batch_size", label_batch_size)):
        if size is not None and size % replicas:
            raise ConfigError(f"{name} {size} does not split evenly among {replicas} replicas; "
                              f"use a multiple of {replicas} (it is the global batch of a stream)")

    def stream(x, y, augment_fn, size):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
        if augment_fn is not None:
            ds = ds.map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
        steps.append(math.ceil(len(x) / size))
        return ds.batch(size, drop_remainder=True)

    augment = augmentation_mode(augment)
    mask_aug = label_aug = tile_aug = None
    if augment == "full":
        from weaksegtf.augment_tf import tf_augment, tf_augment_colour

        mask_aug = tf_augment
        label_aug = lambda image, label: (tf_augment_colour(image), label)  # noqa: E731
        tile_aug = lambda image, label: (tf_augment_colour(_flip_rotate(image, tf)), label)  # noqa: E731
    elif augment == "light":
        mask_aug = lambda image, mask: _light_augment(image, mask, tf)  # noqa: E731
        label_aug = lambda image, label: (_colour_jitter(image, tf), label)  # noqa: E731
        tile_aug = lambda image, label: (_colour_jitter(_flip_rotate(image, tf), tf), label)  # noqa: E731
    if mask_images is not None and len(mask_images):
        streams["mask"] = stream(mask_images, masks.astype(np.int32), mask_aug, batch_size)
    whole = label_images is not None and not isinstance(label_images, np.ndarray)
    n_label = 0 if label_images is None else len(label_images)
    if n_label and whole:
        if label_batch_size is None:
            mean_area = float(np.mean([image.shape[0] * image.shape[1] for image in label_images]))
            tile_area = float(mask_images.shape[1] * mask_images.shape[2]) if mask_images is not None and len(mask_images) else 128.0**2
            label_batch_size = _multiple(max(2, int(batch_size * tile_area // mean_area)), replicas)
        streams["label"] = _whole_image_stream(label_images, labels, label_batch_size, seed, augment, tf)
        steps.append(math.ceil(n_label / label_batch_size))
    elif n_label:
        streams["label"] = stream(label_images, labels.astype(np.int32), label_aug, label_batch_size or batch_size)
    if background_images is not None and len(background_images):
        size = batch_size
        if n_label:
            item_batch = label_batch_size or batch_size
            size = _multiple(max(1, round(item_batch * len(background_images) / n_label)), replicas)
        background_labels = np.zeros(len(background_images), np.int32)
        streams["background"] = stream(background_images, background_labels, tile_aug, size)
        steps.pop()  # background tiles repeat to the pace of the other streams
    if lowres_images is not None and len(lowres_images):
        streams["lowres"] = stream(lowres_images, np.asarray(block_labels).astype(np.int32), label_aug, batch_size)
    if not streams:
        raise ConfigError("no training data: the mask set, the label set and the low-resolution set are empty")
    return tf.data.Dataset.zip(streams).prefetch(tf.data.AUTOTUNE), max(steps or [1])


def _multiple(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return -(-size // multiple) * multiple


def augmentation_mode(augment: bool | str) -> str:
    """``"none"``, ``"light"`` or ``"full"`` from ``augment`` (``True`` is ``"full"``, ``False`` is ``"none"``)."""
    if augment is True or augment is False:
        return "full" if augment else "none"
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"augment {augment!r} is unknown; expected one of {AUGMENTATIONS}")
    return augment


def _light_augment(image, mask, tf):
    """The same random flip and 90° rotation of a tile and its mask, then colour jitter of the tile."""
    flip = tf.random.uniform(()) < 0.5
    turns = tf.random.uniform((), 0, 4, dtype=tf.int32)
    image = tf.image.rot90(tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image), turns)
    mask = mask[..., None]
    mask = tf.image.rot90(tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask), turns)[..., 0]
    return _colour_jitter(image, tf), mask


def _colour_jitter(image, tf):
    """Mild colour jitter of a uint8 image (brightness ±0.05, contrast and saturation ×0.9-1.1, hue ±0.02)."""
    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.random_brightness(x, 0.05)
    x = tf.image.random_contrast(x, 0.9, 1.1)
    x = tf.image.random_saturation(x, 0.9, 1.1)
    x = tf.image.random_hue(x, 0.02)
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def _flip(image, tf):
    """A random left-right and a random up-down flip of one ``(H, W, 3)`` image (its shape is kept)."""
    return tf.image.random_flip_up_down(tf.image.random_flip_left_right(image))


def _flip_rotate(image, tf):
    """A random flip and 90° rotation of one ``(H, W, 3)`` image (its shape may change)."""
    image = tf.image.random_flip_left_right(image)
    return tf.image.rot90(image, tf.random.uniform((), 0, 4, dtype=tf.int32))


def _whole_image_stream(images: Sequence[np.ndarray], labels: np.ndarray, batch_size: int, seed: int, augment: str, tf):
    """Batches ``(images, labels, valid)`` of whole images padded to a common size."""
    labels = np.asarray(labels, np.int32).reshape(-1)

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            for i in rng.permutation(len(images)):
                yield images[i], labels[i]

    signature = (tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int32))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # Whole images are flipped, not turned by 90°: a turn swaps height and width, and batches padded to
    # square would cost half as many pixels again (and another traced shape of the train step).
    if augment == "full":
        from weaksegtf.augment_tf import tf_augment_colour

        ds = ds.map(lambda x, y: (tf_augment_colour(_flip(x, tf)), y), num_parallel_calls=tf.data.AUTOTUNE)
    elif augment == "light":
        ds = ds.map(lambda x, y: (_colour_jitter(_flip(x, tf), tf), y), num_parallel_calls=tf.data.AUTOTUNE)

    def pad16(image, label):
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        pad_y, pad_x = (-height) % SIZE_MULTIPLE, (-width) % SIZE_MULTIPLE
        image = tf.pad(image, [[0, pad_y], [0, pad_x], [0, 0]], constant_values=IMAGE_PAD_VALUE)
        valid = tf.pad(tf.ones((height, width), tf.uint8), [[0, pad_y], [0, pad_x]])
        return image, label, valid

    ds = ds.map(pad16, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.padded_batch(
        batch_size, padded_shapes=([None, None, 3], [], [None, None]),
        padding_values=(np.uint8(IMAGE_PAD_VALUE), 0, np.uint8(0)), drop_remainder=True,
    )
    return ds.map(lambda x, y, v: (tf.cast(x, tf.float32), y, v), num_parallel_calls=tf.data.AUTOTUNE)


def select_streams(
    mode: str,
    mask_images: np.ndarray | None,
    masks: np.ndarray | None,
    label_images: np.ndarray | None,
    labels: np.ndarray | None,
    mask_labels: np.ndarray | None = None,
    ignore_value: int = IGNORE_VALUE,
):
    """Apply a data mode: returns the (mask_images, masks, label_images, labels) to train on.

    ``mask_labels`` are image labels of the masked images for S+C*; by default
    they are derived from the masks (:func:`image_labels_from_masks`).
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is unknown; expected one of {MODES}")
    n_masks = 0 if mask_images is None else len(mask_images)
    n_labels = 0 if label_images is None else len(label_images)
    if mode in ("S", "S+C", "S+C*") and n_masks == 0:
        raise ConfigError(f"mode {mode} needs a non-empty mask set, got 0 masked images")
    if mode in ("S+C", "C") and n_labels == 0:
        raise ConfigError(f"mode {mode} needs a non-empty label set, got 0 label images")
    if mode == "S":
        return mask_images, masks, None, None
    if mode == "LR":
        return None, None, None, None
    if mode == "C":
        return None, None, label_images, labels
    if mode == "S+C*":
        extra = image_labels_from_masks(masks, ignore_value) if mask_labels is None else np.asarray(mask_labels)
        if n_labels and not isinstance(label_images, np.ndarray):  # whole images of any sizes
            label_images = list(label_images) + list(mask_images)
            labels = np.concatenate([labels, extra]).astype(np.int32)
        elif n_labels:
            label_images = np.concatenate([label_images, mask_images])
            labels = np.concatenate([labels, extra]).astype(np.int32)
        else:
            label_images, labels = mask_images, extra.astype(np.int32)
    return mask_images, masks, label_images, labels


def train_weak_segmenter(
    mask_images: np.ndarray | None,
    masks: np.ndarray | None,
    label_images: np.ndarray | None,
    labels: np.ndarray | None,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    mode: str = "S+C",
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 10,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    steps_per_epoch: int | None = None,
    lr_schedule: str = "constant",
    class_weights: str | Sequence[float] | None = "auto",
    update: str = "joint",
    augment: bool | str = False,
    seed: int = 0,
    encoder_weights: str | Path | None = None,
    mask_labels: np.ndarray | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
    architecture: str = "resnet18",
    unet_filters: int = 32,
    segmentation_loss: str = "weighted_ce",
    lowres_images: np.ndarray | None = None,
    block_labels: np.ndarray | None = None,
    joint_table=None,
    lowres_loss: str = "intra_inter",
    lowres_group_size: int | None = 15,
    lowres_weight: float = 1.0,
    background_images: np.ndarray | None = None,
    label_class_weights: str | Sequence[float] | None = "auto",
    label_batch_size: int | None = None,
    best_epoch: bool = True,
    precise_batch_norm: bool = True,
    classification_weight: float = 1.0,
    allowed_class_weight: float = DEFAULT_ALLOWED_CLASS_WEIGHT,
    present_class_share: float = 0.0,
    decoder: str = "paper",
    upsampling: str = "nearest",
    strategy: str | tf.distribute.Strategy | None = "none",
):
    """Train a ``WeakSegmenter`` on tile arrays; returns ``(model, history)``.

    Args:
        mask_images, masks: ``(N, H, W, 3)`` uint8 tiles and ``(N, H, W)`` class
            indices (255 = not annotated), or ``None``.
        label_images, labels: ``(M, H, W, 3)`` uint8 tiles and ``(M,)`` labels, or ``None``.
        num_classes: int. Number of classes, background included.
        mode: str. ``"S"``, ``"S+C"``, ``"S+C*"``, ``"C"`` or ``"LR"``. Defaults to ``"S+C"``.
        validation: optional ``(images, masks)``: whole images (a list of any
            sizes, or an array) scored after every epoch in inference mode
            (:class:`weaksegtf.whole_image_validation.WholeImageValidation`).
        class_weights: ``"auto"`` (inverse pixel frequency in the masks), a list,
            or ``None`` (unweighted). Only for ``segmentation_loss="weighted_ce"``;
            ``"auto"`` means ``None`` for the balanced losses. Defaults to ``"auto"``.
        update: ``"joint"`` (paper, default) or ``"sequential"``.
        lr_schedule: ``"constant"`` (the paper's) or ``"cosine"``: the learning
            rate falls from ``learning_rate`` to 0 along a half cosine over all
            ``epochs * steps_per_epoch`` updates. Defaults to ``"constant"``.
        encoder_weights: optional ``.pth`` (torchvision) or ``.weights.h5`` file (ResNet-18 only).
        architecture: ``"resnet18"`` (Ciga & Martel) or ``"unet"`` (Bokhorst et al.).
            Defaults to ``"resnet18"``.
        decoder, upsampling: the ResNet-18 decoder (``"paper"`` or ``"skip"``)
            and the final enlargement of its logits (``"nearest"`` or
            ``"bilinear"``); see :class:`weaksegtf.models.WeakSegmenter`.
        unet_filters: int. First-level filters of the U-Net. Defaults to ``32``.
        segmentation_loss: ``"weighted_ce"``, ``"instance_balanced"`` or
            ``"minibatch_balanced"`` (sparse annotations, Bokhorst et al. eqs. 1-2).
            Defaults to ``"weighted_ce"``.
        lowres_images, block_labels: ``(K, H, W, 3)`` uint8 tiles and their
            low-resolution labels, ``(K,)`` or ``(K, R, C)`` (255 = unlabelled
            block), or ``None``. Required by mode ``"LR"``; a third stream otherwise.
        joint_table: ``JointDistributionTable`` (or a ``.csv``/``.json`` path) for
            the low-resolution stream.
        lowres_loss: ``"intra"``, ``"inter"`` or ``"intra_inter"`` (Zhao et al.).
            Defaults to ``"intra_inter"``.
        lowres_group_size: int or None. Blocks per group. Defaults to ``15`` (the paper's).
        lowres_weight: float. Weight of the low-resolution loss. Defaults to ``1.0``.
        background_images: ``(K, t, t, 3)`` uint8 tiles that join the label
            stream with the background label (see :func:`weaksegtf.data.background_tiles`),
            or ``None``. Used in the modes that have a label stream.
        label_class_weights: ``"auto"`` (inverse label frequency over the
            classification items, background tiles included), a list, or
            ``None``. Defaults to ``"auto"``.
        label_batch_size: int, optional. Whole labelled images per step;
            defaults to as many as fit in the pixels of one mask batch.
        best_epoch: bool. With ``validation``, keep the weights of the epoch
            with the best validation mean Dice (in inference mode). Defaults to ``True``.
        classification_weight: float. Weight of L_cls in the joint loss. Defaults to ``1.0`` (the paper's).
        allowed_class_weight: float. Weight of the allowed-class loss on the label
            stream (``WeakSegmenter(allowed_class_weight=...)``). Defaults to
            :data:`DEFAULT_ALLOWED_CLASS_WEIGHT` (``1.0``); ``0.0`` is the paper's loss.
        present_class_share: float. Smallest expected share of an image's
            labelled class (``WeakSegmenter(present_class_share=...)``); ``0.0``
            (default) turns the present-class size loss off.
        precise_batch_norm: bool. After every epoch, re-estimate the batch-norm
            statistics of the encoder and decoder on the mask tiles
            (:mod:`weaksegtf.precise_batch_norm`). Defaults to ``True``.
        strategy: ``"none"`` (or ``None``), ``"mirrored"``, ``"multiworker"`` or a
            ``tf.distribute.Strategy`` (:mod:`weaksegtf.training_strategy`).
            The model is built, compiled and trained inside its scope; Keras
            splits every global batch of the training stream (``batch_size``
            items per stream and step, as on one device) among the replicas,
            and each worker of a multi-worker run keeps its own share of it
            (``AutoShardPolicy.DATA``: every worker builds the same seeded
            stream). One step then gives the weights one device would reach
            on the whole batch (:class:`weaksegtf.models.WeakSegmenter`).
            Defaults to ``"none"`` (no strategy).
        Other arguments follow section 2.3 of Ciga & Martel (Adam, lr 1e-4, batch 20).
    """
    import keras

    from weaksegtf.losses import class_weights_from_counts
    from weaksegtf.models import WeakSegmenter
    from weaksegtf.models.torch_weights import load_encoder_weights

    mask_images, masks, label_images, labels = select_streams(
        mode, mask_images, masks, label_images, labels, mask_labels
    )
    if mask_images is not None:
        check_arrays(mask_images, masks, num_classes, "mask set")
    if label_images is not None and isinstance(label_images, np.ndarray):
        check_arrays(label_images, np.asarray(labels), num_classes, "label set")
    elif label_images is not None:
        check_labels(np.asarray(labels), num_classes, "label set")
    if label_images is None or mode not in ("S+C", "S+C*", "C"):
        background_images = None
    elif background_images is not None and len(background_images):
        check_arrays(background_images, np.zeros(len(background_images), np.int32), num_classes, "background tiles")
    joint_table = _load_joint_table(joint_table)
    if mode == "LR" and (lowres_images is None or not len(lowres_images)):
        raise ConfigError("mode LR needs low-resolution images and block labels, got none")
    if lowres_images is not None and len(lowres_images):
        if joint_table is None:
            raise ConfigError("low-resolution images need a joint_table (a .csv or .json file, or JointDistributionTable)")
        block_labels = np.asarray(block_labels)
        check_block_labels(lowres_images, block_labels, joint_table)
    else:
        lowres_images = block_labels = None
    if encoder_weights is not None and architecture != "resnet18":
        raise ConfigError(f"encoder_weights are ResNet-18 weights; architecture {architecture!r} has none to load")
    if isinstance(class_weights, str):
        if class_weights != "auto":
            raise ConfigError(f"class_weights must be 'auto', a list or None, got {class_weights!r}")
        class_weights = None
        if masks is not None and segmentation_loss == "weighted_ce":
            valid = masks[masks != IGNORE_VALUE]
            class_weights = class_weights_from_counts(np.bincount(valid, minlength=num_classes)).tolist()
    if isinstance(label_class_weights, str):
        if label_class_weights != "auto":
            raise ConfigError(f"label_class_weights must be 'auto', a list or None, got {label_class_weights!r}")
        label_class_weights = None
        if label_images is not None:
            counts = np.bincount(np.asarray(labels, np.int64).reshape(-1), minlength=num_classes)
            counts[0] += 0 if background_images is None else len(background_images)
            label_class_weights = class_weights_from_counts(counts).tolist()

    if validation is not None:
        check_validation(validation[0], validation[1], num_classes)
    strategy = resolve_strategy(strategy)
    # Everything that creates or updates variables runs in the strategy's scope, the callbacks
    # (precise batch norm, validation, best-epoch restore) too: there, assigning a mirrored
    # variable updates every replica's copy.
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        keras.utils.set_random_seed(seed)
        model = WeakSegmenter(
            num_classes=num_classes, class_names=class_names, class_weights=class_weights, update=update,
            architecture=architecture, unet_filters=unet_filters, segmentation_loss=segmentation_loss,
            joint_table=joint_table, lowres_loss=lowres_loss, lowres_group_size=lowres_group_size,
            lowres_weight=lowres_weight, label_class_weights=label_class_weights,
            classification_weight=classification_weight, allowed_class_weight=allowed_class_weight,
            present_class_share=present_class_share, decoder=decoder, upsampling=upsampling,
        )
        if encoder_weights is not None:
            load_encoder_weights(model.encoder, encoder_weights)
        dataset, steps = make_train_dataset(
            mask_images, masks, label_images, labels, batch_size=batch_size, seed=seed, augment=augment,
            lowres_images=lowres_images, block_labels=block_labels, background_images=background_images,
            label_batch_size=label_batch_size, replicas=1 if strategy is None else strategy.num_replicas_in_sync,
        )
        if strategy is not None:
            dataset = _shard_by_data(dataset)
        steps_per_epoch = steps_per_epoch or steps
        schedule = learning_rate_schedule(learning_rate, lr_schedule, epochs * steps_per_epoch)
        model.compile(optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999))
        # Order matters: statistics first, so validation and the kept epoch use them.
        own_callbacks, selection = [], None
        if precise_batch_norm and mask_images is not None and len(mask_images):
            from weaksegtf.precise_batch_norm import PreciseBatchNorm

            own_callbacks.append(PreciseBatchNorm(mask_images, batch_size, seed))
        if validation is not None:
            from weaksegtf.whole_image_validation import WholeImageValidation

            selection = WholeImageValidation(
                validation[0], validation[1], model.class_names, restore_best=best_epoch,
                min_size_px=inference_tile_px(mask_images.shape[1] if mask_images is not None else None),
            )
            own_callbacks.append(selection)
        callbacks = own_callbacks + list(callbacks or [])
        history = model.fit(
            dataset,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
    history.whole_image_validation = selection
    return model, history


def _shard_by_data(dataset):
    """``dataset`` with the DATA auto-shard policy: each worker keeps its share of every global batch.

    The streams are arrays and a generator, not files, so TensorFlow's default
    (AUTO) would try to shard by file, fail, and fall back to this with a warning.
    Every worker builds the same seeded stream, so the shares are disjoint.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def learning_rate_schedule(learning_rate: float, schedule: str, total_steps: int):
    """The optimizer's learning rate: a float (``"constant"``) or a half-cosine decay to 0 (``"cosine"``).

    >>> learning_rate_schedule(1e-3, "constant", 100)
    0.001
    >>> round(float(learning_rate_schedule(1e-3, "cosine", 100)(50)), 6)
    0.0005
    """
    if schedule not in LR_SCHEDULES:
        raise ConfigError(f"lr_schedule {schedule!r} is unknown; expected one of {LR_SCHEDULES}")
    if schedule == "constant":
        return learning_rate
    import keras

    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, int(total_steps)))


def _load_joint_table(joint_table):
    """A ``JointDistributionTable`` from a table, its dict, a file path, or ``None``."""
    from weaksegtf.data.joint_distribution_table import JointDistributionTable

    if joint_table is None or isinstance(joint_table, JointDistributionTable):
        return joint_table
    if isinstance(joint_table, dict):
        return JointDistributionTable.from_dict(joint_table)
    return JointDistributionTable.from_file(joint_table)


def predict_image(model, image: np.ndarray, min_size_px: int = 0) -> np.ndarray:
    """Argmax mask of one image of any size, padded as ``weakseg-infer`` pads it, then cropped.

    The padding is white (:data:`IMAGE_PAD_VALUE`, an empty slide) at the
    bottom and right, up to a multiple of 16 and at least ``min_size_px``: the
    slide readers pad an image smaller than an inference tile to a whole tile
    (:func:`weaksegtf.inference.tile_scheduler.plan_tiles`), and the padding
    changes what the network sees near the image's edges. With the inference
    tile as ``min_size_px``, the scores training reports are those of deployment.
    """
    return image_logits(model, image, min_size_px).argmax(-1).astype(np.uint8)


def image_logits(model, image: np.ndarray, min_size_px: int = 0) -> np.ndarray:
    """Segmentation logits ``(H, W, C)`` of one image, padded as in :func:`predict_image`, in inference mode."""
    height, width = image.shape[:2]
    pad_y = max(min_size_px, -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE) - height
    pad_x = max(min_size_px, -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE) - width
    widths = ((0, pad_y), (0, pad_x), (0, 0))
    padded = np.pad(image, widths, constant_values=IMAGE_PAD_VALUE) if pad_y or pad_x else image
    logits = model(padded[None].astype(np.float32), training=False)["mask"]
    return np.asarray(logits)[0, :height, :width]


def evaluate_images(
    model, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], class_names: Sequence[str],
    min_size_px: int = 0,
) -> tuple[dict, list[np.ndarray]]:
    """Whole-image metrics (accuracy, IoU and Dice per class and mean) and the predictions.

    ``min_size_px``: see :func:`predict_image`.
    """
    num_classes = len(class_names)
    total = np.zeros((num_classes, num_classes), np.int64)
    predictions = []
    for image, mask in zip(images, masks):
        prediction = predict_image(model, image, min_size_px)
        predictions.append(prediction)
        total += confusion_matrix(mask, prediction, num_classes)
    iou, dice = iou_per_class(total), dice_per_class(total)
    metrics = {
        "pixel_accuracy": pixel_accuracy(total),
        "mean_iou": float(np.nanmean(iou)),
        "mean_dice": float(np.nanmean(dice)),
        "iou": {name: json_float(v) for name, v in zip(class_names, iou)},
        "dice": {name: json_float(v) for name, v in zip(class_names, dice)},
        "confusion_matrix": total.tolist(),
        "n_images": len(images),
    }
    return metrics, predictions


@dataclass
class TrainingResult:
    """What a training run wrote and measured."""

    model_path: Path
    history_path: Path
    metrics_path: Path
    overlay_path: Path | None
    metrics: dict = field(default_factory=dict)


def write_history_csv(history: dict, path: Path) -> Path:
    keys = sorted(history)
    rows = zip(*(history[k] for k in keys))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch, row in enumerate(rows, start=1):
            writer.writerow([epoch, *(f"{float(v):.6g}" for v in row)])
    return path


def run_training(
    train_masks,
    train_labels,
    val,
    out_dir: str | Path,
    *,
    class_names: Sequence[str],
    mode: str = "S+C",
    tile_size_px: int = 128,
    epochs: int = 10,
    steps_per_epoch: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    lr_schedule: str = "constant",
    class_weights: str | Sequence[float] | None = "auto",
    update: str = "joint",
    augment: bool | str = False,
    seed: int = 0,
    encoder_weights: str | Path | None = None,
    verbose: int | str = 2,
    architecture: str = "resnet18",
    unet_filters: int = 32,
    segmentation_loss: str = "weighted_ce",
    train_lowres=None,
    joint_table=None,
    lowres_loss: str = "intra_inter",
    lowres_group_size: int | None = 15,
    lowres_weight: float = 1.0,
    label_tiles: str = "whole",
    label_max_size_px: int = 512,
    background_patches: bool = True,
    label_batch_size: int | None = None,
    best_epoch: bool = True,
    classification_weight: float = 1.0,
    allowed_class_weight: float = DEFAULT_ALLOWED_CLASS_WEIGHT,
    present_class_share: float = 0.0,
    self_training: bool = False,
    pseudo_confidence: float = 0.9,
    decoder: str = "paper",
    upsampling: str = "nearest",
    model_card: dict | None = None,
    overwrite: bool = False,
    strategy: str | tf.distribute.Strategy | None = "none",
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
    ``predictions.png`` (image | truth | prediction) into ``out_dir``. The
    other arguments are those of :func:`train_weak_segmenter`.

    ``model_card`` (``mpp``, ``mpp_source``, ``macenko``, ``class_colors``) is
    completed with the class names and tile size and saved inside
    ``model.keras`` (``weaksegtf.model_card``). ``out_dir`` must be new or empty
    unless ``overwrite`` (``weaksegtf.output_guard.OutputFolder``); that, the
    class names and ``epochs`` are checked before any image is read.

    ``strategy`` (``"none"``, ``"mirrored"``, ``"multiworker"`` or a
    ``tf.distribute.Strategy``; see :func:`train_weak_segmenter`) is created
    before any image is read, as ``MultiWorkerMirroredStrategy`` must be; with
    self-training both trainings use it. ``batch_size`` is the global batch of
    each stream, split among the replicas.
    """
    settings = training_settings(locals())
    from weaksegtf.data import background_tiles, label_set_to_arrays, label_set_to_images, mask_set_to_arrays
    from weaksegtf.visualize import comparison_grid

    if label_tiles not in LABEL_TILES:
        raise ConfigError(f"label_tiles {label_tiles!r} is unknown; expected one of {LABEL_TILES}")
    if tile_size_px % SIZE_MULTIPLE:
        raise ConfigError(f"tile_size_px must be a multiple of 16, got {tile_size_px}")
    if self_training and (label_tiles != "whole" or mode not in ("S+C", "S+C*")
                          or not train_labels or not train_masks):
        raise ConfigError("self-training needs masks and whole labelled images (label_tiles='whole') "
                          f"in mode S+C or S+C*; got mode {mode}, label_tiles {label_tiles!r}")
    strategy_name = check_strategy(strategy)
    outputs = check_training_request(out_dir, class_names=class_names, epochs=epochs, tile_size_px=tile_size_px,
                                     model_card=model_card, overwrite=overwrite, settings=settings)
    strategy = resolve_strategy(strategy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = len(class_names)
    mask_x = mask_y = label_x = label_y = None
    if train_masks is not None and len(train_masks):
        mask_x, mask_y = mask_set_to_arrays(train_masks, tile_size_px)
    if train_labels is not None and len(train_labels):
        if label_tiles == "whole":
            label_x, label_y = label_set_to_images(train_labels, label_max_size_px)
        else:
            label_x, label_y = label_set_to_arrays(train_labels, tile_size_px)
    background_x = None
    if background_patches and train_masks is not None and len(train_masks) and mode in ("S+C", "S+C*", "C"):
        background_x = background_tiles(train_masks, tile_size_px)
    validation = None
    if val is not None and len(val):
        validation = (val.images, val.masks)
    lowres_x = lowres_z = None
    if train_lowres is not None and len(train_lowres):
        lowres_x, lowres_z = _whole_blocks(train_lowres)

    def train(mask_images, masks, label_images, labels, mode):
        return train_weak_segmenter(
            mask_images, masks, label_images, labels,
            num_classes=num_classes, class_names=class_names, mode=mode, validation=validation,
            epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate,
            lr_schedule=lr_schedule, class_weights=class_weights, update=update, augment=augment, seed=seed,
            encoder_weights=encoder_weights, verbose=verbose,
            architecture=architecture, unet_filters=unet_filters, segmentation_loss=segmentation_loss,
            lowres_images=lowres_x, block_labels=lowres_z, joint_table=joint_table, lowres_loss=lowres_loss,
            lowres_group_size=lowres_group_size, lowres_weight=lowres_weight,
            background_images=background_x, label_batch_size=label_batch_size, best_epoch=best_epoch,
            classification_weight=classification_weight, allowed_class_weight=allowed_class_weight,
            present_class_share=present_class_share, decoder=decoder, upsampling=upsampling,
            strategy=strategy,
        )

    start = time.perf_counter()
    model, history = train(mask_x, mask_y, label_x, label_y, mode)
    first_round = None
    if self_training:
        from weaksegtf.pseudo_labels import pseudo_mask_set

        if verbose:
            print(f"self-training: pseudo-masks of {len(label_x)} labelled images, then a second training", flush=True)
        pseudo = pseudo_mask_set(model, label_x, label_y, pseudo_confidence, inference_tile_px(tile_size_px))
        pseudo_x, pseudo_y = mask_set_to_arrays(pseudo, tile_size_px)
        annotated = (pseudo_y != IGNORE_VALUE).mean((1, 2)) > 0  # tiles with something to learn
        selection = history.whole_image_validation
        first_round = {
            "best_epoch": selection.best_epoch if selection is not None and best_epoch else None,
            "validation": selection.best_metrics if selection is not None and best_epoch else None,
            "pseudo_confidence": pseudo_confidence,
            "pseudo_annotated_share": float(np.mean([(m != IGNORE_VALUE).mean() for m in pseudo.masks])),
            "n_pseudo_tiles": int(annotated.sum()),
            "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        }
        # The pseudo-masks carry the labels now: the second training is on masks alone.
        model, history = train(np.concatenate([mask_x, pseudo_x[annotated]]),
                               np.concatenate([mask_y, pseudo_y[annotated]]), None, None, "S")
    train_seconds = time.perf_counter() - start

    model_path = out_dir / "model.keras"
    tmp_model = out_dir / "model.tmp.keras"
    model.model_card = outputs.model_card
    model.save(tmp_model)
    os.replace(tmp_model, model_path)
    history_path = write_history_csv(history.history, out_dir / "history.csv")

    metrics = {
        "mode": mode,
        "n_mask_tiles": 0 if mask_x is None else int(len(mask_x)),
        "label_tiles": label_tiles,
        "n_label_items": 0 if label_x is None else int(len(label_x)),
        "n_background_tiles": 0 if background_x is None else int(len(background_x)),
        "n_lowres_images": 0 if lowres_x is None else int(len(lowres_x)),
        "architecture": architecture,
        "decoder": model.decoder,
        "upsampling": model.upsampling,
        "segmentation_loss": segmentation_loss,
        "lowres_loss": lowres_loss if lowres_x is not None else None,
        "epochs": epochs,
        "steps_per_epoch": history.params.get("steps"),
        "train_seconds": round(train_seconds, 1),
        "class_names": list(class_names),
        "class_weights": model.class_weights,
        "label_class_weights": model.label_class_weights,
        "classification_weight": model.classification_weight,
        "allowed_class_weight": model.allowed_class_weight,
        "present_class_share": model.present_class_share,
        "learning_rate": learning_rate,
        "lr_schedule": lr_schedule,
        "augment": augmentation_mode(augment),
        "self_training": first_round,
        "strategy": strategy_name,
        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
    }
    overlay_path = None
    if val is not None and len(val):
        selection = history.whole_image_validation
        metrics["best_epoch"] = selection.best_epoch if best_epoch else None
        if best_epoch:
            val_metrics, predictions = selection.best_metrics, selection.best_predictions
        else:
            val_metrics, predictions = evaluate_images(
                model, val.images, val.masks, class_names, inference_tile_px(tile_size_px)
            )
        metrics["validation"] = val_metrics
        order = np.arange(len(val))
        overlay_path = comparison_grid(
            [val.images[i] for i in order], [val.masks[i] for i in order], [predictions[i] for i in order],
            class_names, out_dir / "predictions.png", titles=[val.names[i] for i in order],
        )
    metrics["model_card"], metrics["provenance"] = outputs.model_card, outputs.provenance()
    metrics_path = out_dir / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2))
    outputs.commit(model_path, history_path, metrics_path, overlay_path)
    return TrainingResult(model_path, history_path, metrics_path, overlay_path, metrics)


def inference_tile_px(training_tile_px: int | None) -> int:
    """The tile ``weakseg-infer`` uses by default for a model trained on ``training_tile_px`` tiles."""
    from weaksegtf.inference.slide_segmenter import default_tiling

    return default_tiling(training_tile_px)[0]


def _whole_blocks(label_set) -> tuple[np.ndarray, np.ndarray]:
    """Images and low-resolution labels of a ``LabelSet`` whose images are whole blocks."""
    sizes = sorted({image.shape[:2] for image in label_set.images})
    if len(sizes) != 1 or sizes[0][0] % 16 or sizes[0][1] % 16:
        raise DataError(
            f"low-resolution images are whole blocks and must share one size with sides multiples of 16; "
            f"got sizes {sizes[:4]}"
        )
    return np.stack(label_set.images), np.asarray(label_set.labels, np.int32)
