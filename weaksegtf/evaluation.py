"""Evaluate label images (or a model) against ground-truth masks: what ``weakseg-eval`` calls.

Predictions and masks are paired by file stem. Metrics accumulate one image at
a time in a :class:`~weaksegtf.metrics.SegmentationEvaluator`, so a folder of
whole-slide label TIFFs needs the memory of one slide, not of all of them.
Outputs: ``metrics.json`` (every metric of section 3.2 and eq. 6, see
:mod:`weaksegtf.metrics.confusion`), ``per_image.csv``, ``confusion_matrix.png``
and ``best_worst.png`` (image | truth | prediction for the worst and best images).

Only :func:`evaluate_model` imports TensorFlow; plots import matplotlib when drawn.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from weaksegtf.constants import IGNORE_VALUE
from weaksegtf.data.images import MASK_SUFFIXES, PathLike, list_image_files, read_rgb
from weaksegtf.errors import ConfigError, DataError, ModelFileError
from weaksegtf.io import read_label_image, write_png, write_text_atomic
from weaksegtf.metrics import SegmentationEvaluator
from weaksegtf.metrics.segmentation_evaluator import PER_IMAGE_METRICS
from weaksegtf.provenance import provenance

COMMAND = "weakseg-eval"
#: Everything an evaluation may write into its output folder.
EVALUATION_OUTPUTS = ("metrics.json", "per_image.csv", "confusion_matrix.png", "best_worst.png", "predictions")


@dataclass
class EvaluationResult:
    """What an evaluation wrote and measured.

    Args:
        metrics_path: path of ``metrics.json``.
        per_image_path: path of ``per_image.csv``.
        confusion_plot_path: path of ``confusion_matrix.png``.
        grid_path: path of ``best_worst.png``, or ``None`` with no image to show.
        metrics: dict. The content of ``metrics.json``.
    """

    metrics_path: Path
    per_image_path: Path
    confusion_plot_path: Path
    grid_path: Path | None
    metrics: dict = field(default_factory=dict)


def match_predictions(
    predictions_dir: PathLike, masks_dir: PathLike, prediction_suffix: str = ""
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair ``predictions_dir/<name><suffix>.png|tif`` with ``masks_dir/<name>.png|tif``.

    Returns:
        ``[(name, prediction_path, mask_path), ...]`` in natural order, and the
        names of masks that have no prediction.

    Raises:
        DataError: a folder is missing, holds no label image, or a prediction has no mask.
    """
    predictions = list_image_files(predictions_dir, MASK_SUFFIXES)
    masks = list_image_files(masks_dir, MASK_SUFFIXES)
    if not predictions:
        raise DataError(f"no label images ({', '.join(MASK_SUFFIXES)}) in prediction folder {predictions_dir}")
    pairs = []
    for stem, path in predictions.items():
        name = stem[: -len(prediction_suffix)] if prediction_suffix and stem.endswith(prediction_suffix) else stem
        if name not in masks:
            raise DataError(
                f"prediction {path.name} has no ground truth: expected {Path(masks_dir) / name}.png "
                f"(or {', '.join(MASK_SUFFIXES[1:])})"
            )
        pairs.append((name, path, masks[name]))
    predicted = {name for name, _, _ in pairs}
    return pairs, [name for name in masks if name not in predicted]


def _check_values(array: np.ndarray, path: Path, what: str, num_classes: int, ignore_value: int | None) -> None:
    counts = np.zeros(256, np.int64)
    flat = array.ravel()
    for start in range(0, flat.size, 1 << 24):  # bincount copies to int64: bound it for whole slides
        counts += np.bincount(flat[start : start + (1 << 24)], minlength=256)
    counts[:num_classes] = 0
    if ignore_value is not None:
        counts[ignore_value] = 0
    bad = np.flatnonzero(counts)
    if bad.size:
        allowed = f"0..{num_classes - 1}" + (f"; {ignore_value} = not annotated" if ignore_value is not None else "")
        raise DataError(
            f"{what} {path.name} contains value {int(bad[0])}, out of range for {num_classes} classes ({allowed})"
        )


def evaluate_predictions(
    predictions_dir: PathLike,
    masks_dir: PathLike,
    out_dir: PathLike,
    *,
    class_names: Sequence[str],
    images_dir: PathLike | None = None,
    ignore_value: int = IGNORE_VALUE,
    boundary_distance_px: float | None = 3.0,
    n_grid: int = 4,
    rank_by: str = "f1_macro",
    prediction_suffix: str = "",
    overwrite: bool = False,
    _folder=None,
) -> EvaluationResult:
    """Score a folder of label images against ground-truth masks and write the report.

    Args:
        predictions_dir: str or path. Label images (PNG, TIFF incl. pyramidal, BMP),
            class indices ``0..C-1``.
        masks_dir: str or path. Ground-truth masks of the same names and sizes;
            ``ignore_value`` marks pixels without annotation.
        out_dir: str or path. Where ``metrics.json``, ``per_image.csv``,
            ``confusion_matrix.png`` and ``best_worst.png`` go.
        class_names: list of str. One per class, background first.
        images_dir: str or path, optional. The RGB images, for the overlay grid;
            without them predictions are drawn over white. Defaults to ``None``.
        ignore_value: int. Defaults to 255.
        boundary_distance_px: float, optional. Width of the boundary band for
            boundary IoU/Dice; ``None`` skips them. Defaults to 3.0.
        n_grid: int. Worst and best images shown, each. Defaults to 4.
        rank_by: str. Per-image metric that orders worst to best, one of
            ``PER_IMAGE_METRICS``. Defaults to ``"f1_macro"``.
        prediction_suffix: str. Removed from prediction stems before matching
            (``"_pred"`` pairs ``a_pred.png`` with ``a.png``). Defaults to ``""``.
        overwrite: bool. Accept a non-empty ``out_dir``, replacing what weaksegtf
            wrote there (``weaksegtf.output_guard.OutputFolder``). Defaults to ``False``.

    Raises:
        DataError: a prediction without mask, sizes that differ, or a value out of
            range for the classes; the message names the file.
        ConfigError: an unknown ``rank_by``.
        OutputError: ``out_dir`` is a file, not writable, or not empty without ``overwrite``.
    """
    settings = {key: value for key, value in locals().items() if key != "_folder"}
    folder = _folder if _folder is not None else _output_folder(out_dir, overwrite)
    if rank_by not in PER_IMAGE_METRICS:
        raise ConfigError(f"rank_by must be one of {PER_IMAGE_METRICS}, got {rank_by!r}")
    class_names = list(class_names)
    num_classes = len(class_names)
    if not 1 <= num_classes <= 255 or ignore_value < num_classes:
        raise ConfigError(f"got {num_classes} classes with ignore value {ignore_value}; expected 1..255 classes below it")
    out_dir = Path(out_dir)
    pairs, unpredicted = match_predictions(predictions_dir, masks_dir, prediction_suffix)
    evaluator = SegmentationEvaluator(
        num_classes, class_names, ignore_value=ignore_value, boundary_distance_px=boundary_distance_px
    )
    for name, prediction_path, mask_path in pairs:
        prediction = read_label_image(prediction_path, "prediction")
        truth = read_label_image(mask_path, "mask")
        if prediction.shape != truth.shape:
            raise DataError(
                f"prediction {prediction_path.name} has shape {prediction.shape} but mask {mask_path.name} "
                f"is {truth.shape}"
            )
        _check_values(prediction, prediction_path, "prediction", num_classes, None)
        _check_values(truth, mask_path, "mask", num_classes, ignore_value)
        evaluator.update(truth, prediction, name=name)

    out_dir.mkdir(parents=True, exist_ok=True)
    per_image_path = write_rows_csv(evaluator.rows, out_dir / "per_image.csv")
    order = _rank(evaluator.rows, rank_by)
    worst = order[:n_grid]
    best = [i for i in reversed(order) if i not in worst][:n_grid]
    metrics = {
        "class_names": class_names,
        "ignore_value": ignore_value,
        **evaluator.result(),
        "rank_by": rank_by,
        "worst": [evaluator.rows[i]["name"] for i in worst],
        "best": [evaluator.rows[i]["name"] for i in best],
        "masks_without_prediction": unpredicted,
        "predictions_dir": str(predictions_dir),
        "masks_dir": str(masks_dir),
        "provenance": provenance(**settings),
    }
    metrics_path = out_dir / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")
    confusion_plot_path = plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"
    )
    grid_path = None
    if n_grid > 0 and pairs:
        grid_path = _best_worst_grid(pairs, evaluator.rows, worst, best, rank_by, class_names, images_dir,
                                     out_dir / "best_worst.png")
    folder.commit([name for name in EVALUATION_OUTPUTS if (out_dir / name).exists()])
    return EvaluationResult(metrics_path, per_image_path, confusion_plot_path, grid_path, metrics)


def _output_folder(out_dir: PathLike, overwrite: bool):
    from weaksegtf.output_guard import OutputFolder

    folder = OutputFolder(Path(out_dir), COMMAND, overwrite=overwrite)
    folder.check(EVALUATION_OUTPUTS)
    return folder


def _rank(rows: list[dict], key: str) -> list[int]:
    """Image indices from worst to best; images where the metric is undefined go last."""
    return sorted(range(len(rows)), key=lambda i: (rows[i][key] is None, rows[i][key] or 0.0, i))


def _best_worst_grid(pairs, rows, worst, best, rank_by, class_names, images_dir, path: Path) -> Path:
    from weaksegtf.visualize import comparison_grid

    image_files = list_image_files(images_dir) if images_dir is not None else {}
    images, truths, predictions, titles = [], [], [], []
    for label, indices in (("worst", worst), ("best", best)):
        for rank, i in enumerate(indices, start=1):
            name, prediction_path, mask_path = pairs[i]
            truth = read_label_image(mask_path, "mask")
            image = read_rgb(image_files[name]) if name in image_files else None
            if image is None or image.shape[:2] != truth.shape:
                image = np.full(truth.shape + (3,), 255, np.uint8)
            value = rows[i][rank_by]
            score = "n/a" if value is None else f"{value:.3f}"
            images.append(image)
            truths.append(truth)
            predictions.append(read_label_image(prediction_path, "prediction"))
            titles.append(f"{label} {rank}: {name} ({rank_by} {score})")
    return comparison_grid(images, truths, predictions, class_names, path, titles=titles, max_rows=len(images))


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], path: PathLike) -> Path:
    """Confusion-matrix PNG: colour = share of each true class (row), text = share and pixel count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion, dtype=np.int64)
    rows = confusion.sum(1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    size = 1.6 + 1.1 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    picture = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for t in range(len(class_names)):
        for p in range(len(class_names)):
            colour = "white" if share[t, p] > 0.5 else "black"
            axes.text(p, t, f"{share[t, p]:.2f}\n{confusion[t, p]:,}", ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    figure.colorbar(picture, ax=axes, label="share of true class")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_rows_csv(rows: list[dict], path: PathLike) -> Path:
    """Write dicts as CSV (columns of the first row, then any new keys); ``None`` becomes empty."""
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    write_text_atomic(path, text.getvalue())
    return path


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def predict_folder(model, images_dir: PathLike, out_dir: PathLike, names: Sequence[str] | None = None) -> Path:
    """Predict every image of ``images_dir`` (or those in ``names``) into ``out_dir/<name>.png``.

    Uses :func:`weaksegtf.training.predict_image` (whole image, padded to a multiple of 16).
    """
    from weaksegtf.training import predict_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in list_image_files(images_dir).items():
        if names is None or name in names:
            write_png(out_dir / f"{name}.png", predict_image(model, read_rgb(path)))
    return out_dir


def evaluate_model(
    model_path: PathLike,
    images_dir: PathLike,
    masks_dir: PathLike,
    out_dir: PathLike,
    *,
    class_names: Sequence[str] | None = None,
    ignore_value: int = IGNORE_VALUE,
    boundary_distance_px: float | None = 3.0,
    n_grid: int = 4,
    rank_by: str = "f1_macro",
    overwrite: bool = False,
) -> EvaluationResult:
    """Predict every image with a saved ``WeakSegmenter``, then :func:`evaluate_predictions`.

    Predictions are written to ``out_dir/predictions/<name>.png``. ``class_names``
    default to the model's. Every image needs a mask of the same name; this is
    checked before the model is loaded.

    Raises:
        DataError: an image without mask, unreadable files, or the checks of
            :func:`evaluate_predictions`.
        ConfigError: ``class_names`` that disagree with the model's class count.
        ModelFileError: the model file is missing, not a ``.keras`` archive, or not a weaksegtf model.
        OutputError: ``out_dir`` is a file, not writable, or not empty without ``overwrite``.
    """
    from weaksegtf.export.segmenter_file import read_keras_config

    folder = _output_folder(out_dir, overwrite)
    read_keras_config(model_path)  # a wrong file fails here, before TensorFlow starts
    import keras

    import weaksegtf.models  # noqa: F401 - registers the custom layers for loading

    masks = list_image_files(masks_dir, MASK_SUFFIXES)
    images = list_image_files(images_dir)
    if not images:
        raise DataError(f"no images in {images_dir}")
    for name, path in images.items():
        if name not in masks:
            raise DataError(f"image {path.name} has no ground truth: expected {Path(masks_dir) / name}.png")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DataError(f"model {model_path} does not exist")
    try:
        model = keras.saving.load_model(model_path)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ModelFileError(f"cannot load {model_path}: {type(error).__name__}: {error}") from None
    model_classes = list(getattr(model, "class_names", None) or [])
    if class_names is None:
        if not model_classes:
            raise ConfigError(f"model {model_path.name} has no class names; pass class_names")
        class_names = model_classes
    elif model_classes and len(class_names) != len(model_classes):
        raise ConfigError(
            f"got {len(class_names)} class names {list(class_names)} but model {model_path.name} "
            f"predicts {len(model_classes)} classes {model_classes}"
        )
    predictions_dir = predict_folder(model, images_dir, Path(out_dir) / "predictions")
    return evaluate_predictions(
        predictions_dir, masks_dir, out_dir, class_names=class_names, images_dir=images_dir,
        ignore_value=ignore_value, boundary_distance_px=boundary_distance_px, n_grid=n_grid, rank_by=rank_by,
        _folder=folder,
    )
