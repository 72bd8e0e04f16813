"""The joint distribution of low-resolution labels and high-resolution class shares (Zhao et al., Table 1)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from weaksegtf.data.block_labels import UNLABELLED_BLOCK, block_class_shares, block_grid
from weaksegtf.errors import DataError

#: How far a row's mean shares may sum from 1 (Table 1 rounds to 0.1 %).
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True, eq=False)
class JointDistributionTable:
    """Mean and standard deviation of each high-resolution class share, per low-resolution label.

    Row ``z`` holds ``eta[z, l]`` and ``rho[z, l]`` of Zhao et al. (2019),
    eq. 4: the share ``c_l`` of class ``l`` in a block with low-resolution
    label ``z`` is modelled as ``N(eta, rho^2)``. Shares are fractions in
    [0, 1] (Table 1 prints percentages). The table is read from CSV or JSON,
    written back, or estimated from a few densely annotated patches with
    :meth:`estimate`.

    CSV layout, one row per low-resolution label, in label order::

        label,mean_background,mean_gland,std_background,std_gland
        0-20%,1.00,0.00,0.001,0.001
        ...

    JSON layout: ``{"labels": [...], "classes": [...], "mean": [[...]], "std": [[...]]}``.

    Args:
        mean: array ``(K, L)``. Mean share of class ``l`` for label ``z``; rows sum to about 1.
        std: array ``(K, L)``. Standard deviation of the shares; 0 or more.
        labels: sequence of str, optional. Names of the K low-resolution labels.
            Defaults to ``["0", "1", ...]``.
        classes: sequence of str, optional. Names of the L high-resolution
            classes. Defaults to ``["class_0", ...]``.
        source: str. Where the table came from, for error messages. Defaults to ``"joint table"``.
        tolerance: float. Allowed distance of a row's mean sum from 1. Defaults to ``0.01``.

    Raises:
        DataError: shapes differ, a value is not finite, a mean share is outside
            [0, 1], a row's mean shares do not sum to about 1, or a standard
            deviation is negative; the message names ``source``.

    Example:
    >>> table = JointDistributionTable([[0.9, 0.1], [0.3, 0.7]], [[0.05, 0.05], [0.1, 0.1]])
    >>> table.num_labels, table.num_classes
    (2, 2)
    >>> table.save("table.csv")  # doctest: +SKIP
    >>> JointDistributionTable.from_file("table.csv").mean.tolist()  # doctest: +SKIP
    [[0.9, 0.1], [0.3, 0.7]]
    """

    mean: np.ndarray
    std: np.ndarray
    labels: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    source: str = "joint table"
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        if mean.ndim != 2 or mean.shape[0] < 1 or mean.shape[1] < 2:
            raise DataError(f"{self.source}: mean shares have shape {mean.shape}; expected (labels, classes >= 2)")
        if std.shape != mean.shape:
            raise DataError(f"{self.source}: std has shape {std.shape} but mean has shape {mean.shape}")
        labels = tuple(self.labels) or tuple(str(z) for z in range(mean.shape[0]))
        classes = tuple(self.classes) or tuple(f"class_{l}" for l in range(mean.shape[1]))
        if len(labels) != mean.shape[0] or len(classes) != mean.shape[1]:
            raise DataError(
                f"{self.source}: {len(labels)} label names and {len(classes)} class names for a "
                f"{mean.shape[0]}x{mean.shape[1]} table"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise DataError(f"{self.source}: the table holds a value that is not a finite number")
        for z, name in enumerate(labels):
            row = mean[z]
            if np.any((row < 0) | (row > 1)):
                raise DataError(
                    f"{self.source}: label {name!r} has mean shares {row.tolist()}; expected fractions "
                    f"in [0, 1] (write 70 % as 0.70)"
                )
            if abs(row.sum() - 1.0) > self.tolerance:
                raise DataError(
                    f"{self.source}: the mean shares of label {name!r} sum to {row.sum():.4g}; "
                    f"expected 1 (within {self.tolerance})"
                )
            if np.any(std[z] < 0):
                bad = classes[int(np.argmin(std[z]))]
                raise DataError(
                    f"{self.source}: label {name!r} has standard deviation {std[z].min():.4g} for class "
                    f"{bad!r}; expected 0 or more"
                )
        mean.setflags(write=False)
        std.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "classes", classes)

    @property
    def num_labels(self) -> int:
        return self.mean.shape[0]

    @property
    def num_classes(self) -> int:
        return self.mean.shape[1]

    # --- checks --------------------------------------------------------------

    def check_block_labels(self, block_labels: np.ndarray, where: str = "block labels") -> None:
        """Raise ``DataError`` unless every block label is a row of the table or 255 (unlabelled)."""
        values = np.unique(np.asarray(block_labels))
        bad = values[((values < 0) | (values >= self.num_labels)) & (values != UNLABELLED_BLOCK)]
        if bad.size:
            raise DataError(
                f"{where}: block label {int(bad[0])} is outside the joint table's {self.num_labels} labels "
                f"(0..{self.num_labels - 1}; {UNLABELLED_BLOCK} = unlabelled block) from {self.source}"
            )

    # --- (de)serialisation ----------------------------------------------------

    def to_dict(self) -> dict:
        """Plain lists, for JSON files and Keras configs."""
        return {
            "labels": list(self.labels),
            "classes": list(self.classes),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "joint table") -> "JointDistributionTable":
        missing = {"mean", "std"} - set(data)
        if missing:
            raise DataError(f"{source}: missing {sorted(missing)}; expected keys labels, classes, mean, std")
        return cls(data["mean"], data["std"], tuple(data.get("labels", ())), tuple(data.get("classes", ())), source)

    @classmethod
    def from_file(cls, path: str | Path) -> "JointDistributionTable":
        """Read a ``.csv`` or ``.json`` table (see the class docstring) and validate it."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"joint table {path} does not exist")
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise DataError(f"joint table {path} is not valid JSON: {error}") from None
            if not isinstance(data, dict):
                raise DataError(f"joint table {path} holds a {type(data).__name__}; expected an object")
            return cls.from_dict(data, source=str(path))
        if path.suffix.lower() == ".csv":
            return cls._from_csv(path)
        raise DataError(f"joint table {path} has suffix {path.suffix!r}; expected .csv or .json")

    @classmethod
    def _from_csv(cls, path: Path) -> "JointDistributionTable":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
        if len(rows) < 2:
            raise DataError(f"joint table {path} has no rows; expected a header and one row per label")
        header = [cell.strip() for cell in rows[0]]
        mean_cols = [i for i, h in enumerate(header) if h.startswith("mean_")]
        std_cols = [i for i, h in enumerate(header) if h.startswith("std_")]
        classes = [header[i][len("mean_"):] for i in mean_cols]
        if header[0] != "label" or not mean_cols or [header[i][len("std_"):] for i in std_cols] != classes:
            raise DataError(
                f"joint table {path} has header {header}; expected label,mean_<class>...,std_<class>... "
                f"with the same classes in the same order"
            )
        mean, std, labels = [], [], []
        for number, row in enumerate(rows[1:], start=2):
            try:
                mean.append([float(row[i]) for i in mean_cols])
                std.append([float(row[i]) for i in std_cols])
            except (ValueError, IndexError):
                raise DataError(f"joint table {path} line {number} is {row}; expected a name and numbers") from None
            labels.append(row[0].strip())
        return cls(np.array(mean), np.array(std), tuple(labels), tuple(classes), str(path))

    def save(self, path: str | Path) -> Path:
        """Write the table as ``.csv`` or ``.json`` (chosen by the suffix)."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        elif path.suffix.lower() == ".csv":
            with open(path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["label", *(f"mean_{c}" for c in self.classes), *(f"std_{c}" for c in self.classes)])
                for name, mean, std in zip(self.labels, self.mean, self.std):
                    writer.writerow([name, *(repr(float(v)) for v in mean), *(repr(float(v)) for v in std)])
        else:
            raise DataError(f"cannot write joint table {path}: suffix {path.suffix!r}; expected .csv or .json")
        return path

    # --- estimation ----------------------------------------------------------

    @classmethod
    def estimate(
        cls,
        masks: Sequence[np.ndarray],
        block_labels: Sequence[np.ndarray | int],
        num_labels: int,
        num_classes: int,
        labels: Sequence[str] = (),
        classes: Sequence[str] = (),
        ignore_value: int = 255,
    ) -> "JointDistributionTable":
        """Estimate the table from a few densely annotated patches and their block labels.

        Each patch's blocks are cut as its block-label map dictates (a single
        label means the whole patch is one block). For every low-resolution
        label ``z``, ``eta[z]`` is the mean and ``rho[z]`` the (population)
        standard deviation of the class shares over all blocks labelled ``z``:
        the manual estimate of Zhao et al. section 2.1 ("a domain expert
        examined 10 to 12 image blocks with label z and estimated c_l"), done
        from masks. Unannotated pixels (``ignore_value``) and blocks labelled
        255 are left out.

        Args:
            masks: sequence of uint8 ``(H, W)`` dense masks.
            block_labels: one int, or one ``(rows, cols)`` label map, per mask.
            num_labels: int. Number of low-resolution labels K.
            num_classes: int. Number of high-resolution classes L.
            labels, classes: optional names, as in the constructor.
            ignore_value: int. Defaults to ``255``.

        Raises:
            DataError: a mask and its label map do not line up, a label is
                outside ``0..num_labels - 1``, a mask value is neither a class
                nor ``ignore_value``, or a label has no annotated block.

        Example:
        >>> masks = [np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)]
        >>> JointDistributionTable.estimate(masks, [0, 1], num_labels=2, num_classes=2).mean.tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        """
        if len(masks) != len(block_labels):
            raise DataError(f"{len(masks)} masks but {len(block_labels)} block-label maps; expected one per mask")
        per_label: list[list[np.ndarray]] = [[] for _ in range(num_labels)]
        for index, (mask, label_map) in enumerate(zip(masks, block_labels)):
            mask, label_map = np.asarray(mask), np.asarray(label_map)
            bh, bw = block_grid(*mask.shape, label_map.shape)
            try:
                shares = block_class_shares(mask, (bh, bw), num_classes, ignore_value).reshape(-1, num_classes)
            except DataError as error:
                raise DataError(f"mask {index}: {error}") from None
            for z, share in zip(label_map.reshape(-1), shares):
                if z == UNLABELLED_BLOCK or np.isnan(share).any():
                    continue
                if not 0 <= z < num_labels:
                    raise DataError(
                        f"mask {index}: block label {int(z)} is outside 0..{num_labels - 1} "
                        f"({UNLABELLED_BLOCK} = unlabelled block)"
                    )
                per_label[int(z)].append(share)
        names = tuple(labels) or tuple(str(z) for z in range(num_labels))
        empty = [names[z] for z in range(num_labels) if not per_label[z]]
        if empty:
            raise DataError(
                f"low-resolution label(s) {empty} have no annotated block among the {len(masks)} patches; "
                f"expected at least one block per label to estimate its shares"
            )
        mean = np.array([np.mean(s, axis=0) for s in per_label])
        std = np.array([np.std(s, axis=0) for s in per_label])
        return cls(mean, std, names, tuple(classes), source="estimated joint table")
