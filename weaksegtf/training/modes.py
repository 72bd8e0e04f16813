"""Data modes (Ciga & Martel section 3.3) and the input checks a training runs before TensorFlow sees its arrays.

**S** uses the masked images; **S+C** adds the label-only images; **S+C***
adds the masked images to the label stream too; **C** uses labels only;
**LR** trains from low-resolution (block) labels alone (Zhao et al. 2019).
"""

from __future__ import annotations

import numpy as np

from weaksegtf.constants import IGNORE_VALUE, SIZE_MULTIPLE
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.training.config import MODES, check_choice
from weaksegtf.training.training_data import TrainingData

#: Modes whose label stream takes the background tiles.
BACKGROUND_MODES = ("S+C", "S+C*", "C")


def image_labels_from_masks(masks: np.ndarray, ignore_value: int = IGNORE_VALUE) -> np.ndarray:
    """Image label = its most frequent foreground class (>0), or 0 if it has none.

    Used in S+C* mode, where the masked images also join the label stream.
    """
    from weaksegtf.data.dataset_split import dominant_foreground_label

    return np.array([dominant_foreground_label(mask, ignore_value) for mask in masks], np.int32).reshape(-1)


def _check_tiles(images: np.ndarray, what: str) -> None:
    """``(N, H, W, 3)`` images with sides that are multiples of 16."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{what} images must be (N, H, W, 3), got {images.shape}")
    if images.shape[1] % SIZE_MULTIPLE or images.shape[2] % SIZE_MULTIPLE:
        raise ConfigError(f"{what} tiles are {images.shape[1]}x{images.shape[2]}; height and width must be multiples of 16")


def check_arrays(
    images: np.ndarray, targets: np.ndarray, num_classes: int, what: str, ignore_value: int = IGNORE_VALUE
) -> None:
    """Shapes and value ranges of a training stream, checked before TensorFlow sees them."""
    _check_tiles(images, what)
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
    _check_tiles(images, what)
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
    check_choice("mode", mode, MODES)
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


def select_data(data: TrainingData, mode: str, num_classes: int, joint_table=None):
    """The streams ``mode`` trains on, checked; returns ``(TrainingData, JointDistributionTable or None)``.

    Background tiles are kept only in a mode with a label stream; the
    low-resolution set needs a ``joint_table`` (a table, its dict or a file),
    which is returned loaded.
    """
    mask_images, masks, label_images, labels = select_streams(
        mode, data.mask_images, data.masks, data.label_images, data.labels, data.mask_labels
    )
    if mask_images is not None:
        check_arrays(mask_images, masks, num_classes, "mask set")
    if label_images is not None and isinstance(label_images, np.ndarray):
        check_arrays(label_images, np.asarray(labels), num_classes, "label set")
    elif label_images is not None:
        check_labels(np.asarray(labels), num_classes, "label set")
    background_images = data.background_images
    if label_images is None or mode not in BACKGROUND_MODES:
        background_images = None
    elif background_images is not None and len(background_images):
        check_arrays(background_images, np.zeros(len(background_images), np.int32), num_classes, "background tiles")
    joint_table = load_joint_table(joint_table)
    lowres_images, block_labels = data.lowres_images, data.block_labels
    if mode == "LR" and (lowres_images is None or not len(lowres_images)):
        raise ConfigError("mode LR needs low-resolution images and block labels, got none")
    if lowres_images is not None and len(lowres_images):
        if joint_table is None:
            raise ConfigError("low-resolution images need a joint_table (a .csv or .json file, or JointDistributionTable)")
        block_labels = np.asarray(block_labels)
        check_block_labels(lowres_images, block_labels, joint_table)
    else:
        lowres_images = block_labels = None
    selected = TrainingData(mask_images, masks, label_images, labels, background_images, lowres_images, block_labels)
    return selected, joint_table


def load_joint_table(joint_table):
    """A ``JointDistributionTable`` from a table, its dict, a file path, or ``None``."""
    from weaksegtf.data.joint_distribution_table import JointDistributionTable

    if joint_table is None or isinstance(joint_table, JointDistributionTable):
        return joint_table
    if isinstance(joint_table, dict):
        return JointDistributionTable.from_dict(joint_table)
    return JointDistributionTable.from_file(joint_table)
