"""Training of a ``WeakSegmenter`` from mask sets and label sets, in the paper's data modes.

Ciga & Martel section 3.3: **S** uses s% of the images with masks; **S+C** adds
the other (100 - s)% as label-only images; **S+C*** uses s% masks plus *all*
images as labels; **C** uses labels only. **LR** trains from low-resolution
(block) labels alone with a label super-resolution loss (Zhao et al. 2019);
in the other modes, low-resolution data, when given, joins as a third stream.
The library functions here are what ``weakseg-train`` and ``weakseg-demo`` call.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.metrics.confusion import confusion_matrix, dice_per_class, iou_per_class, pixel_accuracy
from weaksegtf.training_outputs import check_training_request, training_settings

MODES = ("S", "S+C", "S+C*", "C", "LR")
IGNORE_VALUE = 255
DEFAULT_BATCH_SIZE = 20  # section 2.3
DEFAULT_LEARNING_RATE = 1e-4  # section 2.3, Adam(0.9, 0.999)


def image_labels_from_masks(masks: np.ndarray, ignore_value: int = IGNORE_VALUE) -> np.ndarray:
    """Image label = its most frequent foreground class (>0), or 0 if it has none.

    Used in S+C* mode, where the masked images also join the label stream.
    """
    labels = np.zeros(len(masks), np.int32)
    for i, mask in enumerate(masks):
        values = mask[(mask > 0) & (mask != ignore_value)]
        if values.size:
            labels[i] = np.bincount(values).argmax()
    return labels


def check_arrays(
    images: np.ndarray, targets: np.ndarray, num_classes: int, what: str, ignore_value: int = IGNORE_VALUE
) -> None:
    """Shapes and value ranges of a training stream, checked before TensorFlow sees them."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{what} images must be (N, H, W, 3), got {images.shape}")
    if images.shape[1] % 16 or images.shape[2] % 16:
        raise ConfigError(f"{what} tiles are {images.shape[1]}x{images.shape[2]}; height and width must be multiples of 16")
    if len(targets) != len(images):
        raise DataError(f"{what}: {len(images)} images but {len(targets)} targets")
    bad = targets[(targets >= num_classes) & (targets != ignore_value)] if targets.ndim > 1 else targets[
        (targets < 0) | (targets >= num_classes)
    ]
    if bad.size:
        kind = "mask value" if targets.ndim > 1 else "label"
        raise DataError(f"{what}: {kind} {int(bad.flat[0])} is out of range for {num_classes} classes")


def check_block_labels(images: np.ndarray, block_labels: np.ndarray, joint_table, what: str = "low-resolution set") -> None:
    """Low-resolution images and block labels, checked before TensorFlow sees them.

    ``block_labels`` is ``(N,)`` (one block per image) or ``(N, R, C)`` (a block
    grid that tiles each image); every value is a row of ``joint_table`` or
    255 (unlabelled block).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{what} images must be (N, H, W, 3), got {images.shape}")
    if images.shape[1] % 16 or images.shape[2] % 16:
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
    label_images: np.ndarray | None,
    labels: np.ndarray | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    augment: bool = False,
    lowres_images: np.ndarray | None = None,
    block_labels: np.ndarray | None = None,
):
    """Zipped tf.data stream of ``{"mask": (x, y), "label": (x, y), "lowres": (x, z)}`` and its epoch length.

    Each stream is shuffled and repeated forever, so the shorter ones repeat;
    an epoch is ``ceil(max(n_mask, n_label, n_lowres) / batch_size)`` steps,
    i.e. one pass over the largest stream. Streams without data are left out.
    Augmentation of the label and low-resolution streams is colour-only, as
    flips and elastic warps would have to move the block labels too.
    """
    import tensorflow as tf

    streams, sizes = {}, []

    def stream(x, y, augment_fn):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
        if augment_fn is not None:
            ds = ds.map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size, drop_remainder=True)

    mask_aug = label_aug = None
    if augment:
        from weaksegtf.augment_tf import tf_augment, tf_augment_colour

        mask_aug = tf_augment
        label_aug = lambda image, label: (tf_augment_colour(image), label)  # noqa: E731
    if mask_images is not None and len(mask_images):
        streams["mask"] = stream(mask_images, masks.astype(np.int32), mask_aug)
        sizes.append(len(mask_images))
    if label_images is not None and len(label_images):
        streams["label"] = stream(label_images, labels.astype(np.int32), label_aug)
        sizes.append(len(label_images))
    if lowres_images is not None and len(lowres_images):
        streams["lowres"] = stream(lowres_images, np.asarray(block_labels).astype(np.int32), label_aug)
        sizes.append(len(lowres_images))
    if not streams:
        raise ConfigError("no training data: the mask set, the label set and the low-resolution set are empty")
    steps = math.ceil(max(sizes) / batch_size)
    return tf.data.Dataset.zip(streams).prefetch(tf.data.AUTOTUNE), steps


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
        if n_labels:
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
    class_weights: str | Sequence[float] | None = "auto",
    update: str = "joint",
    augment: bool = False,
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
):
    """Train a ``WeakSegmenter`` on tile arrays; returns ``(model, history)``.

    Args:
        mask_images, masks: ``(N, H, W, 3)`` uint8 tiles and ``(N, H, W)`` class
            indices (255 = not annotated), or ``None``.
        label_images, labels: ``(M, H, W, 3)`` uint8 tiles and ``(M,)`` labels, or ``None``.
        num_classes: int. Number of classes, background included.
        mode: str. ``"S"``, ``"S+C"``, ``"S+C*"``, ``"C"`` or ``"LR"``. Defaults to ``"S+C"``.
        validation: optional ``(images, masks)`` tiles for per-epoch validation.
        class_weights: ``"auto"`` (inverse pixel frequency in the masks), a list,
            or ``None`` (unweighted). Only for ``segmentation_loss="weighted_ce"``;
            ``"auto"`` means ``None`` for the balanced losses. Defaults to ``"auto"``.
        update: ``"joint"`` (paper, default) or ``"sequential"``.
        encoder_weights: optional ``.pth`` (torchvision) or ``.weights.h5`` file (ResNet-18 only).
        architecture: ``"resnet18"`` (Ciga & Martel) or ``"unet"`` (Bokhorst et al.).
            Defaults to ``"resnet18"``.
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
    if label_images is not None:
        check_arrays(label_images, np.asarray(labels), num_classes, "label set")
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

    keras.utils.set_random_seed(seed)
    model = WeakSegmenter(
        num_classes=num_classes, class_names=class_names, class_weights=class_weights, update=update,
        architecture=architecture, unet_filters=unet_filters, segmentation_loss=segmentation_loss,
        joint_table=joint_table, lowres_loss=lowres_loss, lowres_group_size=lowres_group_size,
        lowres_weight=lowres_weight,
    )
    if encoder_weights is not None:
        load_encoder_weights(model.encoder, encoder_weights)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999))
    dataset, steps = make_train_dataset(
        mask_images, masks, label_images, labels, batch_size=batch_size, seed=seed, augment=augment,
        lowres_images=lowres_images, block_labels=block_labels,
    )
    validation_data = None
    if validation is not None:
        check_arrays(validation[0], validation[1], num_classes, "validation set")
        validation_data = (validation[0].astype(np.float32), validation[1].astype(np.int32))
    history = model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch or steps,
        validation_data=validation_data,
        validation_batch_size=batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    return model, history


def _load_joint_table(joint_table):
    """A ``JointDistributionTable`` from a table, its dict, a file path, or ``None``."""
    from weaksegtf.data.joint_distribution_table import JointDistributionTable

    if joint_table is None or isinstance(joint_table, JointDistributionTable):
        return joint_table
    if isinstance(joint_table, dict):
        return JointDistributionTable.from_dict(joint_table)
    return JointDistributionTable.from_file(joint_table)


def predict_image(model, image: np.ndarray) -> np.ndarray:
    """Argmax mask of one image of any size: reflect-padded to a multiple of 16, then cropped."""
    height, width = image.shape[:2]
    pad_y, pad_x = (-height) % 16, (-width) % 16
    padded = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="reflect") if pad_y or pad_x else image
    logits = model(padded[None].astype(np.float32), training=False)["mask"]
    return np.asarray(logits)[0, :height, :width].argmax(-1).astype(np.uint8)


def evaluate_images(
    model, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], class_names: Sequence[str]
) -> tuple[dict, list[np.ndarray]]:
    """Whole-image metrics (accuracy, IoU and Dice per class and mean) and the predictions."""
    num_classes = len(class_names)
    total = np.zeros((num_classes, num_classes), np.int64)
    predictions = []
    for image, mask in zip(images, masks):
        prediction = predict_image(model, image)
        predictions.append(prediction)
        total += confusion_matrix(mask, prediction, num_classes)
    iou, dice = iou_per_class(total), dice_per_class(total)
    metrics = {
        "pixel_accuracy": pixel_accuracy(total),
        "mean_iou": float(np.nanmean(iou)),
        "mean_dice": float(np.nanmean(dice)),
        "iou": {name: _json_float(v) for name, v in zip(class_names, iou)},
        "dice": {name: _json_float(v) for name, v in zip(class_names, dice)},
        "confusion_matrix": total.tolist(),
        "n_images": len(images),
    }
    return metrics, predictions


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write beside the target, then rename, so an interruption never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    class_weights: str | Sequence[float] | None = "auto",
    update: str = "joint",
    augment: bool = False,
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
    model_card: dict | None = None,
    overwrite: bool = False,
) -> TrainingResult:
    """Train from a ``MaskSet``, a ``LabelSet`` and a validation ``MaskSet`` and write the results.

    Images are cut into ``tile_size_px`` tiles for training; validation runs on
    whole images. ``train_lowres`` is a ``LabelSet`` whose labels are
    low-resolution labels (rows of ``joint_table``): each of its images is one
    block and is used whole, so they must share one size, a multiple of 16.
    Writes ``model.keras``, ``history.csv``, ``metrics.json`` and
    ``predictions.png`` (image | truth | prediction) into ``out_dir``. The
    other arguments are those of :func:`train_weak_segmenter`.

    ``model_card`` (``mpp``, ``mpp_source``, ``macenko``, ``class_colors``) is
    completed with the class names and tile size and saved inside
    ``model.keras`` (``weaksegtf.model_card``). ``out_dir`` must be new or empty
    unless ``overwrite`` (``weaksegtf.output_guard.OutputFolder``); that, the
    class names and ``epochs`` are checked before any image is read.
    """
    settings = training_settings(locals())
    from weaksegtf.data import label_set_to_arrays, mask_set_to_arrays
    from weaksegtf.visualize import comparison_grid

    if tile_size_px % 16:
        raise ConfigError(f"tile_size_px must be a multiple of 16, got {tile_size_px}")
    outputs = check_training_request(out_dir, class_names=class_names, epochs=epochs, tile_size_px=tile_size_px,
                                     model_card=model_card, overwrite=overwrite, settings=settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = len(class_names)
    mask_x = mask_y = label_x = label_y = None
    if train_masks is not None and len(train_masks):
        mask_x, mask_y = mask_set_to_arrays(train_masks, tile_size_px)
    if train_labels is not None and len(train_labels):
        label_x, label_y = label_set_to_arrays(train_labels, tile_size_px)
    validation = None
    if val is not None and len(val):
        validation = mask_set_to_arrays(val, tile_size_px)
    lowres_x = lowres_z = None
    if train_lowres is not None and len(train_lowres):
        lowres_x, lowres_z = _whole_blocks(train_lowres)

    start = time.perf_counter()
    model, history = train_weak_segmenter(
        mask_x, mask_y, label_x, label_y,
        num_classes=num_classes, class_names=class_names, mode=mode, validation=validation,
        epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate,
        class_weights=class_weights, update=update, augment=augment, seed=seed, encoder_weights=encoder_weights, verbose=verbose,
        architecture=architecture, unet_filters=unet_filters, segmentation_loss=segmentation_loss,
        lowres_images=lowres_x, block_labels=lowres_z, joint_table=joint_table, lowres_loss=lowres_loss,
        lowres_group_size=lowres_group_size, lowres_weight=lowres_weight,
    )
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
        "n_label_tiles": 0 if label_x is None else int(len(label_x)),
        "n_lowres_images": 0 if lowres_x is None else int(len(lowres_x)),
        "architecture": architecture,
        "segmentation_loss": segmentation_loss,
        "lowres_loss": lowres_loss if lowres_x is not None else None,
        "epochs": epochs,
        "steps_per_epoch": history.params.get("steps"),
        "train_seconds": round(train_seconds, 1),
        "class_names": list(class_names),
        "class_weights": model.class_weights,
    }
    overlay_path = None
    if val is not None and len(val):
        val_metrics, predictions = evaluate_images(model, val.images, val.masks, class_names)
        metrics["validation"] = val_metrics
        order = np.arange(len(val))
        overlay_path = comparison_grid(
            [val.images[i] for i in order], [val.masks[i] for i in order], [predictions[i] for i in order],
            class_names, out_dir / "predictions.png", titles=[val.names[i] for i in order],
        )
    metrics["model_card"], metrics["provenance"] = outputs.model_card, outputs.provenance()
    metrics_path = out_dir / "metrics.json"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
    outputs.commit(model_path, history_path, metrics_path, overlay_path)
    return TrainingResult(model_path, history_path, metrics_path, overlay_path, metrics)


def _whole_blocks(label_set) -> tuple[np.ndarray, np.ndarray]:
    """Images and low-resolution labels of a ``LabelSet`` whose images are whole blocks."""
    sizes = sorted({image.shape[:2] for image in label_set.images})
    if len(sizes) != 1 or sizes[0][0] % 16 or sizes[0][1] % 16:
        raise DataError(
            f"low-resolution images are whole blocks and must share one size with sides multiples of 16; "
            f"got sizes {sizes[:4]}"
        )
    return np.stack(label_set.images), np.asarray(label_set.labels, np.int32)
