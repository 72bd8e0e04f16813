"""The tf.data training streams (masks, labels, background tiles, low-resolution blocks) and their augmentation.

TensorFlow is imported inside the functions: the helpers that take a ``tf``
argument are given the module by their caller.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from weaksegtf.constants import IMAGE_PAD_VALUE, SIZE_MULTIPLE
from weaksegtf.errors import ConfigError
from weaksegtf.training.config import DEFAULT_BATCH_SIZE, TrainingConfig, augmentation_mode
from weaksegtf.training.training_data import TrainingData


def make_train_dataset(
    mask_images: np.ndarray | None,
    masks: np.ndarray | None,
    label_images: np.ndarray | Sequence[np.ndarray] | None,
    labels: np.ndarray | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    augment: bool | str = False,
    label_batch_size: int | None = None,
    replicas: int = 1,
    **arrays: np.ndarray | None,
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
    pixels of one mask batch, at least 2). ``arrays`` are the other streams of
    :class:`TrainingData`, by keyword: ``background_images`` are tiles
    labelled background, batched so that their share of each step matches
    their share of the classification items; ``lowres_images`` and
    ``block_labels`` the low-resolution set.

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

    data = TrainingData(mask_images, masks, label_images, labels, **arrays)
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
    mask_aug, label_aug, tile_aug = _augmenters(augment, tf)
    if data.count("mask_images"):
        streams["mask"] = stream(mask_images, masks.astype(np.int32), mask_aug, batch_size)
    whole = label_images is not None and not isinstance(label_images, np.ndarray)
    n_label = data.count("label_images")
    if n_label and whole:
        if label_batch_size is None:
            mean_area = float(np.mean([image.shape[0] * image.shape[1] for image in label_images]))
            tile_area = float(mask_images.shape[1] * mask_images.shape[2]) if data.count("mask_images") else 128.0**2
            label_batch_size = round_up(max(2, int(batch_size * tile_area // mean_area)), replicas)
        streams["label"] = whole_image_stream(label_images, labels, label_batch_size, seed, augment, tf)
        steps.append(math.ceil(n_label / label_batch_size))
    elif n_label:
        streams["label"] = stream(label_images, labels.astype(np.int32), label_aug, label_batch_size or batch_size)
    if data.count("background_images"):
        size = batch_size
        if n_label:
            item_batch = label_batch_size or batch_size
            size = round_up(max(1, round(item_batch * data.count("background_images") / n_label)), replicas)
        background_labels = np.zeros(data.count("background_images"), np.int32)
        streams["background"] = stream(data.background_images, background_labels, tile_aug, size)
        steps.pop()  # background tiles repeat to the pace of the other streams
    if data.count("lowres_images"):
        block_labels = np.asarray(data.block_labels).astype(np.int32)
        streams["lowres"] = stream(data.lowres_images, block_labels, label_aug, batch_size)
    if not streams:
        raise ConfigError("no training data: the mask set, the label set and the low-resolution set are empty")
    return tf.data.Dataset.zip(streams).prefetch(tf.data.AUTOTUNE), max(steps or [1])


def training_dataset(data: TrainingData, config: TrainingConfig, replicas: int = 1):
    """:func:`make_train_dataset` of checked ``data`` with ``config``'s batch sizes, seed and augmentation."""
    return make_train_dataset(
        data.mask_images, data.masks, data.label_images, data.labels, batch_size=config.batch_size,
        seed=config.seed, augment=config.augment, label_batch_size=config.label_batch_size, replicas=replicas,
        background_images=data.background_images, lowres_images=data.lowres_images, block_labels=data.block_labels,
    )


def shard_by_data(dataset):
    """``dataset`` with the DATA auto-shard policy: each worker keeps its share of every global batch.

    The streams are arrays and a generator, not files, so TensorFlow's default
    (AUTO) would try to shard by file, fail, and fall back to this with a warning.
    Every worker builds the same seeded stream, so the shares are disjoint.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def round_up(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``.

    >>> round_up(5, 4)
    8
    """
    return -(-size // multiple) * multiple


def _augmenters(augment: str, tf) -> tuple[Any, Any, Any]:
    """The map functions of the mask, label (tiles and low-resolution) and background streams, or ``None``."""
    if augment == "full":
        from weaksegtf.augment_tf import tf_augment, tf_augment_colour

        return (
            tf_augment,
            lambda image, label: (tf_augment_colour(image), label),
            lambda image, label: (tf_augment_colour(flip_rotate(image, tf)), label),
        )
    if augment == "light":
        return (
            lambda image, mask: light_augment(image, mask, tf),
            lambda image, label: (colour_jitter(image, tf), label),
            lambda image, label: (colour_jitter(flip_rotate(image, tf), tf), label),
        )
    return None, None, None


def light_augment(image, mask, tf):
    """The same random flip and 90° rotation of a tile and its mask, then colour jitter of the tile."""
    flip = tf.random.uniform(()) < 0.5
    turns = tf.random.uniform((), 0, 4, dtype=tf.int32)
    image = tf.image.rot90(tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image), turns)
    mask = mask[..., None]
    mask = tf.image.rot90(tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask), turns)[..., 0]
    return colour_jitter(image, tf), mask


def colour_jitter(image, tf):
    """Mild colour jitter of a uint8 image (brightness ±0.05, contrast and saturation ×0.9-1.1, hue ±0.02)."""
    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.random_brightness(x, 0.05)
    x = tf.image.random_contrast(x, 0.9, 1.1)
    x = tf.image.random_saturation(x, 0.9, 1.1)
    x = tf.image.random_hue(x, 0.02)
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def flip(image, tf):
    """A random left-right and a random up-down flip of one ``(H, W, 3)`` image (its shape is kept)."""
    return tf.image.random_flip_up_down(tf.image.random_flip_left_right(image))


def flip_rotate(image, tf):
    """A random flip and 90° rotation of one ``(H, W, 3)`` image (its shape may change)."""
    image = tf.image.random_flip_left_right(image)
    return tf.image.rot90(image, tf.random.uniform((), 0, 4, dtype=tf.int32))


def whole_image_stream(images: Sequence[np.ndarray], labels: np.ndarray, batch_size: int, seed: int, augment: str, tf):
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

        ds = ds.map(lambda x, y: (tf_augment_colour(flip(x, tf)), y), num_parallel_calls=tf.data.AUTOTUNE)
    elif augment == "light":
        ds = ds.map(lambda x, y: (colour_jitter(flip(x, tf), tf), y), num_parallel_calls=tf.data.AUTOTUNE)

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
