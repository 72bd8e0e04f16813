"""A challenge dataset split into training, selection and test mask sets, and the grouped split that makes it.

Ciga & Martel (section 3.3) use 50% of Gleason2019 and DigestPath2019 for
training, 25% for validation (here: *selection*, where each run keeps its
best epoch) and 25% for testing. Images that share a source (the patches of
one whole-slide image) are kept together, so no slide leaks between the sets;
the draw reuses the GlaS adapter's patient split, which gets as close to each
share as whole groups allow while keeping every image class in every set.

The folders :meth:`DatasetSplit.write` produces are what ``weakseg-experiment
sweep --masks ... --select ... --val ...`` and ``weakseg-train`` read; the
``split.json`` beside them carries the class names, colours and mpp, which
``weakseg-train`` puts into the model card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weaksegtf.data.glas import GlasRecord, _split_patients
from weaksegtf.data.images import PathLike
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError
from weaksegtf.model_card import GLAS_SPLIT

#: Name of the summary file beside the split folders (the one ``weakseg-train`` reads the mpp from).
SPLIT_JSON = GLAS_SPLIT
#: The paper's shares of training, selection (validation) and test images (section 3.3).
PAPER_FRACTIONS: tuple[float, float, float] = (0.5, 0.25, 0.25)
#: Folder names written by :meth:`DatasetSplit.write`, in order.
SPLIT_FOLDERS: tuple[str, str, str] = ("train", "select", "test")


def check_new_folder(folder: PathLike) -> Path:
    """``folder`` as a path; a ConfigError if it already holds files (nothing is overwritten).

    Raises:
        ConfigError: ``folder`` is a file, or a folder with entries.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; expected a new or empty output folder")
    if folder.is_dir() and any(folder.iterdir()):
        count = sum(1 for _ in folder.iterdir())
        raise ConfigError(f"folder {folder} already holds {count} entries; write into an empty or new folder "
                          f"so old files do not mix with the new split")
    return folder


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not 0.0 < f < 1.0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"fractions must be three shares in (0, 1) of training, selection and test images "
                          f"summing to 1, got {list(fractions)}")
    return values  # type: ignore[return-value]


def plan_grouped_split(
    names: Sequence[str],
    groups: Sequence[str],
    labels: Sequence[int],
    fractions: Sequence[float] = PAPER_FRACTIONS,
    seed: int = 0,
) -> tuple[list[str], list[str], list[str]]:
    """Training, selection and test image names, whole groups at a time.

    The test groups are drawn first, then the selection groups from the rest;
    each set gets as close to its share of *all* images as whole groups allow,
    with every image label in every set when possible (the GlaS adapter's
    patient split, :func:`weaksegtf.data.glas.plan_glas_split`).

    Args:
        names: sequence of str. Image names, unique.
        groups: sequence of str. Source of each image (a slide or a patient);
            images of one group always land in the same set.
        labels: sequence of int. Image label of each image, balanced across sets.
        fractions: three floats. Shares of training, selection and test images,
            summing to 1. Defaults to the paper's 0.5, 0.25, 0.25.
        seed: int. Random seed. Defaults to 0.

    Returns:
        ``(train, select, test)`` lists of names, each in the order of ``names``.

    Raises:
        ConfigError: lengths differ, duplicate names, bad fractions, or fewer
            than three groups.

    Example:
    >>> plan_grouped_split(["a", "b", "c", "d"], ["a", "b", "c", "d"], [1, 1, 2, 2], seed=0)  # doctest: +SKIP
    (['a', 'd'], ['b'], ['c'])
    """
    _, select_share, test_share = _check_fractions(fractions)  # training takes the rest
    if not len(names) == len(groups) == len(labels):
        raise ConfigError(f"got {len(names)} names, {len(groups)} groups and {len(labels)} labels; expected one "
                          f"group and one label per image")
    if len(set(names)) != len(names):
        raise ConfigError(f"image names must be unique, got {len(names) - len(set(names))} repeated")
    order = sorted(set(groups))
    if len(order) < 3:
        raise ConfigError(f"{len(names)} images come from {len(order)} groups {order}; a training, selection and "
                          f"test split needs at least 3")
    index = {group: number for number, group in enumerate(order)}
    records = [GlasRecord(str(n), index[g], int(lab)) for n, g, lab in zip(names, groups, labels)]
    rng = np.random.default_rng(seed)
    test_groups = _split_patients(records, test_share, rng)
    rest = [r for r in records if r.patient_id not in test_groups]
    select_groups = _split_patients(rest, min(0.95, select_share * len(records) / len(rest)), rng)
    train = [r.name for r in rest if r.patient_id not in select_groups]
    select = [r.name for r in rest if r.patient_id in select_groups]
    test = [r.name for r in records if r.patient_id in test_groups]
    return train, select, test


def dominant_foreground_label(mask: np.ndarray, ignore_value: int = 255) -> int:
    """An image's label: its most frequent foreground class (> 0), or 0 when it has none.

    Example:
    >>> dominant_foreground_label(np.array([[0, 2, 2], [1, 255, 255]], np.uint8))
    2
    """
    values = mask[(mask > 0) & (mask != ignore_value)]
    return int(np.bincount(values).argmax()) if values.size else 0


@dataclass(eq=False)
class DatasetSplit:
    """A dataset as training, selection and test mask sets, with what a model needs to know about it.

    Args:
        train: MaskSet. The training pool (every image keeps its mask; the sweep
            draws which masks it uses).
        select: MaskSet. Images on which each run keeps its best epoch (the
            paper's validation set).
        test: MaskSet. Images every run is scored on once.
        class_names: tuple of str. Background (class 0) first.
        class_colors: tuple of (r, g, b). One display colour per class.
        dataset: str. Where the data came from, for the record.
        mpp: float, optional. Microns per pixel of every image as loaded;
            ``None`` when it differs between images. Defaults to ``None``.
        seed: int. Seed of the split. Defaults to 0.
        groups: dict of str to str. Source (slide or patient) of each image.
            Defaults to empty.
        details: dict. Dataset-specific facts (map choice, per-image mpp, ...),
            written to ``split.json``. Defaults to empty.

    Example:
    >>> split = load_gleason2019("Gleason2019", map="first")  # doctest: +SKIP
    >>> split.write("prepared/gleason2019")  # doctest: +SKIP
    """

    train: MaskSet
    select: MaskSet
    test: MaskSet
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    dataset: str
    mpp: float | None = None
    seed: int = 0
    groups: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def tile_rule_labels(self, tile_size_px: int = 128, dominant_fraction: float = 0.9) -> LabelSet:
        """The paper's classification patches of the training pool (section 3.3 tile rule).

        Each ``tile_size_px`` tile whose dominant class covers at least
        ``dominant_fraction`` becomes an image labelled with that class; the
        other tiles are dropped (Fig. 4).
        """
        from weaksegtf.data.patches import tile_rule_label_arrays

        images, labels = tile_rule_label_arrays(self.train, tile_size_px, dominant_fraction)
        names = [f"tile_{i:06d}" for i in range(len(images))]
        return LabelSet(list(images), [int(v) for v in labels], names, self.class_names)

    def summary(self) -> dict[str, Any]:
        """What ``split.json`` holds."""
        return split_summary(
            dataset=self.dataset, class_names=self.class_names, class_colors=self.class_colors, mpp=self.mpp,
            seed=self.seed, names={"train": self.train.names, "select": self.select.names, "test": self.test.names},
            groups=self.groups, details=self.details, ignore_value=self.train.ignore_value,
        )

    def write(self, out_dir: PathLike, label_tiles_px: int | None = None) -> Path:
        """Write ``train/``, ``select/`` and ``test/`` as mask sets and ``split.json``.

        Args:
            out_dir: str or path. A new or empty folder.
            label_tiles_px: int, optional. Also write the training pool's
                tile-rule classification patches of this size as the label set
                ``train_labels/``. Defaults to ``None`` (not written).

        Raises:
            ConfigError: ``out_dir`` already holds files.
        """
        out_dir = check_new_folder(out_dir)
        for folder, mask_set in zip(SPLIT_FOLDERS, (self.train, self.select, self.test)):
            mask_set.write(out_dir / folder)
        if label_tiles_px is not None:
            self.tile_rule_labels(label_tiles_px).write(out_dir / "train_labels")
        write_split_json(out_dir, self.summary())
        return out_dir


def split_summary(
    *,
    dataset: str,
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]],
    mpp: float | None,
    seed: int,
    names: Mapping[str, Sequence[str]],
    groups: Mapping[str, str],
    details: Mapping[str, Any],
    ignore_value: int = 255,
) -> dict[str, Any]:
    """The ``split.json`` document: classes, colours, mpp, seed, names per set and their groups."""
    return {
        "dataset": dataset,
        "class_names": list(class_names),
        "class_colors": [[int(v) for v in color] for color in class_colors],
        "ignore_value": int(ignore_value),
        "mpp": mpp,
        "seed": int(seed),
        **{key: list(value) for key, value in names.items()},
        "groups": dict(groups),
        **dict(details),
    }


def write_split_json(out_dir: PathLike, summary: Mapping[str, Any]) -> Path:
    """Write ``out_dir/split.json``."""
    path = Path(out_dir) / SPLIT_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(summary), indent=2) + "\n", encoding="utf-8")
    return path
