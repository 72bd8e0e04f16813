"""A set of images with one class label each: the "C" half of S+C training."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksegtf.data.images import PathLike, list_image_files, read_rgb
from weaksegtf.data.mask_set import _ensure_empty
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import write_png

LABELS_CSV = "labels.csv"
_INT = re.compile(r"^[+-]?\d+$")


def _resolve_num_classes(num_classes: int | None, class_names: Sequence[str] | None) -> int | None:
    if class_names is not None:
        if len(set(class_names)) != len(class_names):
            raise ConfigError(f"class_names must be unique, got {list(class_names)}")
        if num_classes is None:
            return len(class_names)
        if num_classes != len(class_names):
            raise ConfigError(
                f"num_classes is {num_classes} but class_names has {len(class_names)} names "
                f"{list(class_names)}; expected one name per class"
            )
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
    return num_classes


def _range_error(label: int, num_classes: int, where: str) -> DataError:
    return DataError(
        f"label {label} is out of range for {num_classes} classes "
        f"(0..{num_classes - 1}): {where}"
    )


def _unique_names(relative_paths: list[Path]) -> list[str]:
    """File stems, or slash-free relative paths when stems collide."""
    stems = [path.stem for path in relative_paths]
    if len(set(stems)) == len(stems):
        return stems
    names = ["__".join(path.with_suffix("").parts) for path in relative_paths]
    if len(set(names)) != len(names):
        duplicates = sorted({str(p) for p, n in zip(relative_paths, names) if names.count(n) > 1})
        raise DataError(f"images {duplicates} are listed more than once; expected each image once")
    return names


@dataclass(eq=False)
class LabelSet:
    """Images with one class label each, and no masks.

    On disk a label set is either a folder holding ``labels.csv`` with the
    header ``path,label`` (paths relative to the folder; a label is a class
    index or, when ``class_names`` are given, a class name), or one
    sub-folder per class, ``root/<class_name>/*.png``.

    Args:
        images: list of uint8 arrays ``(H, W, 3)``, RGB. Sizes may differ.
        labels: list of int. Class index of each image.
        names: list of str. One unique name per image, the file stem on disk.
        class_names: tuple of str, optional. Names of the classes, when known
            (class folders give them). Defaults to ``None``.

    Example:
    >>> labels = LabelSet.from_folder("data/train_labels", num_classes=3)  # doctest: +SKIP
    >>> tiny = LabelSet([np.zeros((4, 4, 3), np.uint8)] * 3, [1, 2, 2], ["a", "b", "c"])
    >>> tiny.class_counts(3).tolist()
    [0, 1, 2]
    """

    images: list[np.ndarray]
    labels: list[int]
    names: list[str]
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folder(
        cls,
        root: PathLike,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> LabelSet:
        """Read ``root/labels.csv``, or one sub-folder per class.

        Args:
            root: str or path. The label-set folder.
            num_classes: int, optional. Number of classes; labels must lie in
                ``0..num_classes - 1``. Defaults to ``len(class_names)``, or
                no upper bound when neither is given.
            class_names: sequence of str, optional. Class names in index
                order. In a CSV, labels may be these names; with class
                folders, a folder's class is its position here. Defaults to
                ``None``: CSV labels must be integers, and class folders are
                numbered in sorted order of their names.

        Raises:
            DataError: the folder is missing or holds no images, the CSV
                header is wrong, a label is out of range or an unknown class
                name, or an image is missing or unreadable; the message names
                the file.
            ConfigError: ``num_classes`` disagrees with ``class_names``.
        """
        root = Path(root)
        num_classes = _resolve_num_classes(num_classes, class_names)
        if not root.is_dir():
            raise DataError(f"label set folder {root} does not exist")
        if (root / LABELS_CSV).is_file():
            paths, labels = _read_csv(root, num_classes, class_names)
            found_names = tuple(class_names) if class_names is not None else None
        else:
            paths, labels, found_names = _read_class_folders(root, num_classes, class_names)
        if not paths:
            raise DataError(
                f"label set {root} is empty; expected {LABELS_CSV} with rows of path,label "
                f"or one folder of images per class"
            )
        names = _unique_names([path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
                               for path in paths])
        label_set = cls(
            images=[read_rgb(path) for path in paths],
            labels=labels,
            names=names,
            class_names=found_names,
        )
        label_set.validate(num_classes)
        return label_set

    def validate(self, num_classes: int | None = None) -> None:
        """Check layouts and label range.

        Args:
            num_classes: int, optional. Number of classes. Defaults to
                ``len(class_names)`` when known, else only negative labels
                are refused.

        Raises:
            DataError: lists of different lengths, duplicate names, an image
                that is not uint8 RGB, or a label out of range.
        """
        if num_classes is None and self.class_names is not None:
            num_classes = len(self.class_names)
        counts = (len(self.images), len(self.labels), len(self.names))
        if len(set(counts)) != 1:
            raise DataError(
                f"label set has {counts[0]} images, {counts[1]} labels and {counts[2]} names; "
                f"expected one label and one name per image"
            )
        if len(set(self.names)) != len(self.names):
            duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
            raise DataError(f"label set has duplicate names {duplicates}; expected unique names")
        for image, label, name in zip(self.images, self.labels, self.names):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise DataError(
                    f"image {name!r} is {image.dtype} with shape {tuple(image.shape)}; "
                    f"expected uint8 (H, W, 3)"
                )
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise DataError(f"label {label!r} of image {name!r} is not an int")
            if label < 0:
                raise DataError(f"label {label} of image {name!r} is negative; expected 0 or more")
            if num_classes is not None and label >= num_classes:
                raise _range_error(int(label), num_classes, f"image {name!r}")

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Images per class, as an int64 array of shape ``(num_classes,)``.

        Raises:
            DataError: a label is outside ``0..num_classes - 1``.
        """
        labels = np.asarray(self.labels, dtype=np.int64)
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise _range_error(int(bad[0]), num_classes, "in label set")
        return np.bincount(labels, minlength=num_classes).astype(np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelSet:
        """The images at ``indices``, in that order (arrays are shared, not copied)."""
        picked = [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        return LabelSet(
            images=[self.images[i] for i in picked],
            labels=[self.labels[i] for i in picked],
            names=[self.names[i] for i in picked],
            class_names=self.class_names,
        )

    def write(self, root: PathLike) -> Path:
        """Write ``root/images/<name>.png`` and ``root/labels.csv`` (integer labels).

        Raises:
            ConfigError: ``root/images`` already holds files or
                ``root/labels.csv`` exists.
        """
        root = Path(root)
        _ensure_empty(root / "images")
        if (root / LABELS_CSV).exists():
            raise ConfigError(f"{root / LABELS_CSV} already exists; write into a new folder")
        (root / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for image, label, name in zip(self.images, self.labels, self.names):
            write_png(root / "images" / f"{name}.png", image)
            rows.append((f"images/{name}.png", int(label)))
        with open(root / LABELS_CSV, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("path", "label"))
            writer.writerows(rows)
        return root


def _read_csv(
    root: Path, num_classes: int | None, class_names: Sequence[str] | None
) -> tuple[list[Path], list[int]]:
    csv_path = root / LABELS_CSV
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
                        f"expected a UTF-8 CSV with header path,label") from None
    rows = [(number, row) for number, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not rows:
        raise DataError(f"{csv_path} is empty; expected a header path,label and one row per image")
    header = [cell.strip().lower() for cell in rows[0][1]]
    if "path" not in header or "label" not in header:
        raise DataError(f"{csv_path} has header {rows[0][1]}; expected path,label")
    path_column, label_column = header.index("path"), header.index("label")
    paths: list[Path] = []
    labels: list[int] = []
    for number, row in rows[1:]:
        where = f"{csv_path} line {number}"
        if len(row) <= max(path_column, label_column):
            raise DataError(f"{where} has {len(row)} fields {row}; expected path,label")
        relative, text = row[path_column].strip(), row[label_column].strip()
        if _INT.match(text):
            label = int(text)
        elif class_names is not None and text in class_names:
            label = list(class_names).index(text)
        else:
            expected = f"an integer or one of {list(class_names)}" if class_names else "an integer"
            if class_names is None and text:
                expected += " (pass class_names to use class names)"
            raise DataError(f"{where}: unknown class name {text!r} for {relative}; expected {expected}")
        if label < 0:
            raise DataError(f"{where}: label {label} for {relative} is negative; expected 0 or more")
        if num_classes is not None and label >= num_classes:
            raise _range_error(label, num_classes, f"{where} ({relative})")
        normal = os.path.normpath(relative)
        if not relative or os.path.isabs(relative) or normal == ".." or normal.startswith(".." + os.sep):
            raise DataError(
                f"{where} names {relative!r}, which lies outside the label-set folder {root}; expected a path "
                f"relative to {root} such as images/name.png"
            )
        path = root / relative
        if not path.is_file():
            raise DataError(f"{where} names {relative}, but {path} does not exist")
        paths.append(path)
        labels.append(label)
    return paths, labels


def _read_class_folders(
    root: Path, num_classes: int | None, class_names: Sequence[str] | None
) -> tuple[list[Path], list[int], tuple[str, ...]]:
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is not None:
        unknown = [name for name in folders if name not in class_names]
        if unknown:
            raise DataError(
                f"folder {root / unknown[0]} is not a class: unknown class name {unknown[0]!r}; "
                f"expected one of {list(class_names)}"
            )
        names = tuple(class_names)
    else:
        names = tuple(folders)
    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        label = names.index(folder)
        files = list(list_image_files(root / folder).values())
        if files and num_classes is not None and label >= num_classes:
            raise _range_error(
                label, num_classes, f"folder {root / folder} is class {label} of sorted folders {folders}"
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, labels, names
