"""The GlaS colon gland data as the three-class weak-supervision task.

Classes follow Ciga & Martel: 0 background, 1 benign gland, 2 malignant
gland. A full mask is the binary gland mask times the image's grade class;
an image-level label is the grade class alone. Images are split by patient,
never by image, because one patient's images share staining and anatomy and
would leak between train and validation.

Data: Sirinukunwattana et al., "Gland Segmentation in Colon Histology
Images: The GlaS Challenge Contest", Medical Image Analysis 2017; research
use only.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksegtf.data.images import PathLike, list_image_files, natural_key, read_mask, read_rgb
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.data.patches import downsample_mask_set
from weaksegtf.data.stratified_draw import draw_stratified
from weaksegtf.errors import ConfigError, DataError

CLASS_NAMES: tuple[str, ...] = ("background", "benign gland", "malignant gland")
#: Class index of each GlaS grade, as written in ``Grade.csv``.
GRADE_CLASSES: dict[str, int] = {"benign": 1, "malignant": 2}
GRADE_CSV = "Grade.csv"
#: Native resolution of the GlaS images (20x, Sirinukunwattana et al. 2017), microns per pixel.
GLAS_NATIVE_MPP = 0.62
_GRADE_HEADER = ("name", "patient id", "grade (glas)")
# Candidate splits drawn per seed; enough that an exact image count with both
# grades is almost always among them, cheap because no image is read.
_SPLIT_ATTEMPTS = 2000


@dataclass(frozen=True)
class GlasRecord:
    """One row of ``Grade.csv``: image name, patient and grade class.

    Args:
        name: str. Image file stem, such as ``"train_1"``.
        patient_id: int. Patient the image comes from.
        label: int. 1 for a benign image, 2 for a malignant one.

    Example:
    >>> read_glas_grades("../shared/data/glas-train")[0]  # doctest: +SKIP
    GlasRecord(name='train_1', patient_id=2, label=2)
    """

    name: str
    patient_id: int
    label: int


def read_glas_grades(root: PathLike) -> list[GlasRecord]:
    """Read ``root/Grade.csv`` and check that every image and mask exists.

    Raises:
        DataError: ``Grade.csv`` is missing or malformed, a listed image or
            mask is missing, or an image in ``images/`` is not listed.
    """
    root = Path(root)
    csv_path = root / GRADE_CSV
    if not csv_path.is_file():
        raise DataError(
            f"{csv_path} does not exist; expected the GlaS training folder with "
            f"{GRADE_CSV}, images/ and masks/"
        )
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
                        f"expected a UTF-8 CSV with header name,patient ID,grade (GlaS)") from None
    header = tuple(cell.strip().lower() for cell in rows[0][:3]) if rows else ()
    if header != _GRADE_HEADER:
        raise DataError(
            f"{csv_path} has header {rows[0] if rows else []}; expected "
            f"name,patient ID,grade (GlaS),..."
        )
    records = []
    for number, row in enumerate(rows[1:], start=2):
        name, patient, grade = (cell.strip() for cell in row[:3])
        if grade.lower() not in GRADE_CLASSES or not patient.isdigit():
            raise DataError(
                f"{csv_path} line {number} is {row}; expected a name, an integer patient ID "
                f"and a grade in {sorted(GRADE_CLASSES)}"
            )
        if any(record.name == name for record in records):
            raise DataError(f"{csv_path} line {number} lists {name} a second time; expected one row per image")
        records.append(GlasRecord(name, int(patient), GRADE_CLASSES[grade.lower()]))
    if not records:
        raise DataError(f"{csv_path} lists no images")
    records.sort(key=lambda record: natural_key(record.name))
    images = list_image_files(root / "images")
    masks = list_image_files(root / "masks")
    listed = {record.name for record in records}
    for record in records:
        if record.name not in images:
            raise DataError(f"{csv_path} lists {record.name}, but {root / 'images'} has no such image")
        if record.name not in masks:
            raise DataError(f"{csv_path} lists {record.name}, but {root / 'masks'} has no such mask")
    unlisted = [path.name for stem, path in images.items() if stem not in listed]
    if unlisted:
        raise DataError(f"image {root / 'images' / unlisted[0]} is not listed in {csv_path}")
    return records


@dataclass(frozen=True)
class GlasPlan:
    """Which GlaS images go where; cheap to compute, no image is read.

    Args:
        train_mask_names: tuple of str. Training images that keep masks.
        train_label_names: tuple of str. Training images that keep only labels.
        val_names: tuple of str. Validation images (with masks).
        train_patients: tuple of int. Patients of the training images.
        val_patients: tuple of int. Patients of the validation images.
        test_names: tuple of str. Held-out test images (empty unless
            ``test_fraction`` was given).
        test_patients: tuple of int. Patients of the test images.

    Example:
    >>> plan = plan_glas_split("glas-train", masked=7, seed=0)  # doctest: +SKIP
    >>> len(plan.train_mask_names)  # doctest: +SKIP
    7
    """

    train_mask_names: tuple[str, ...]
    train_label_names: tuple[str, ...]
    val_names: tuple[str, ...]
    train_patients: tuple[int, ...]
    val_patients: tuple[int, ...]
    test_names: tuple[str, ...] = ()
    test_patients: tuple[int, ...] = ()


def _split_patients(
    records: list[GlasRecord], val_fraction: float, rng: np.random.Generator
) -> set[int]:
    """Validation patients: closest to ``val_fraction`` of images, both grades if possible."""
    patients = sorted({r.patient_id for r in records})
    sizes = {p: sum(r.patient_id == p for r in records) for p in patients}
    grades = {p: {r.label for r in records if r.patient_id == p} for p in patients}
    all_grades = {r.label for r in records}
    sizes_by_grade = {
        p: {g: sum(r.patient_id == p and r.label == g for r in records) for g in all_grades}
        for p in patients
    }
    grade_shares = {g: sum(r.label == g for r in records) / len(records) for g in all_grades}
    target = val_fraction * len(records)
    best: tuple[tuple[int, int, float], set[int]] | None = None
    for _ in range(_SPLIT_ATTEMPTS):
        order = rng.permutation(len(patients))
        chosen: list[int] = []
        count = 0
        for index in order[:-1]:  # keep at least one patient for training
            patient = patients[int(index)]
            # Stop when adding this patient would move further from the target.
            if chosen and abs(count + sizes[patient] - target) >= abs(count - target):
                break
            chosen.append(patient)
            count += sizes[patient]
        val = set(chosen)
        val_grades = set().union(*(grades[p] for p in val))
        train_grades = set().union(*(grades[p] for p in patients if p not in val))
        # Off-target images and off-target grade mix weigh the same, so validation
        # looks like the whole set rather than like one or two patients.
        mix_error = sum(
            abs(sum(sizes_by_grade[p].get(g, 0) for p in val) - target * share)
            for g, share in grade_shares.items()
        )
        score = (
            len(all_grades - val_grades),
            len(all_grades - train_grades),
            round(abs(count - target) + mix_error, 6),
        )
        if best is None or score < best[0]:
            best = (score, val)
    assert best is not None
    return best[1]


def _resolve_masked(masked: int | float, n_train: int, train_patients: list[int]) -> int:
    if isinstance(masked, bool) or not isinstance(masked, (int, float, np.integer, np.floating)):
        raise ConfigError(f"masked must be an int count or a float fraction, got {masked!r}")
    if isinstance(masked, (float, np.floating)):
        if not 0.0 < masked <= 1.0:
            raise ConfigError(f"masked as a fraction must be in (0, 1], got {masked}")
        return max(1, int(np.floor(masked * n_train + 0.5)))
    if masked < 0:
        raise ConfigError(f"masked must be 0 or more images, got {masked}")
    if masked > n_train:
        raise ConfigError(
            f"masked={masked} but the training split has only {n_train} images "
            f"(patients {train_patients}); expected at most {n_train}"
        )
    return int(masked)


def plan_glas_split(
    root: PathLike, masked: int | float = 7, val_fraction: float = 0.2, seed: int = 0, test_fraction: float = 0.0
) -> GlasPlan:
    """Choose validation patients and masked training images, reproducibly.

    Validation patients are drawn with ``seed`` so that they hold as close to
    ``val_fraction`` of the images as whole patients allow, with both grades
    in validation and in training whenever possible. Masked training images
    are drawn with grades in proportion, each grade at least once when
    ``masked`` allows.

    Args:
        root: str or path. The GlaS training folder.
        masked: int or float. Training images that keep their masks: a
            count, or a fraction in (0, 1] of the training images. Defaults
            to 7.
        val_fraction: float. Target share of images for validation, in
            (0, 1). Defaults to 0.2.
        seed: int. Random seed. Defaults to 0.
        test_fraction: float. Share of images for a held-out test set of
            other patients, drawn first; validation patients (for choosing
            the best epoch) are then drawn from the rest, ``val_fraction``
            still counting of all images. ``0`` (default) draws no test set.

    Raises:
        ConfigError: ``masked``, ``val_fraction`` or ``test_fraction`` out of range.
        DataError: see :func:`read_glas_grades`.

    Example:
    >>> plan_glas_split("glas-train", masked=0.1, seed=1).val_patients  # doctest: +SKIP
    """
    if not isinstance(val_fraction, (float, int)) or not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if not isinstance(test_fraction, (float, int)) or not 0.0 <= test_fraction < 1.0 - val_fraction:
        raise ConfigError(f"test_fraction must be in [0, 1 - val_fraction), got {test_fraction!r}")
    all_records = read_glas_grades(root)
    rng = np.random.default_rng(seed)
    test_patients: set[int] = set()
    if test_fraction > 0:
        test_patients = _split_patients(all_records, float(test_fraction), rng)
    records = [r for r in all_records if r.patient_id not in test_patients]
    val_patients = _split_patients(records, float(val_fraction) * len(all_records) / len(records), rng)
    train = [r for r in records if r.patient_id not in val_patients]
    val = [r for r in records if r.patient_id in val_patients]
    train_patients = sorted({r.patient_id for r in train})
    n_masked = _resolve_masked(masked, len(train), train_patients)
    # Grades in proportion, each at least once if possible.
    drawn = draw_stratified([r.label for r in train], n_masked, rng, member_draw="choice")
    picked = {train[int(i)].name for i in drawn}
    return GlasPlan(
        train_mask_names=tuple(r.name for r in train if r.name in picked),
        train_label_names=tuple(r.name for r in train if r.name not in picked),
        val_names=tuple(r.name for r in val),
        train_patients=tuple(train_patients),
        val_patients=tuple(sorted(val_patients)),
        test_names=tuple(r.name for r in all_records if r.patient_id in test_patients),
        test_patients=tuple(sorted(test_patients)),
    )


@dataclass(eq=False)
class GlasSplit:
    """GlaS as train masks, train labels and validation masks.

    Args:
        train_masks: MaskSet. Training images that keep their masks (S).
        train_labels: LabelSet. The other training images, with only their
            grade class as label (C).
        val: MaskSet. Validation images of other patients, with masks.
        full_train_masks: MaskSet. Every training image with its mask, for
            a fully supervised reference.
        full_train_labels: LabelSet. Every training image with its label:
            the labels of S+C* (masked images keep their label too).
        class_names: tuple of str. Defaults to :data:`CLASS_NAMES`.
        train_patients: tuple of int. Patients of the training images.
        val_patients: tuple of int. Patients of the validation images.
        seed: int. Seed the split was drawn with. Defaults to 0.
        test: MaskSet, optional. Held-out test images of other patients
            (``load_glas(test_fraction=...)``), never used to choose anything.
        test_patients: tuple of int. Patients of the test images.
        mpp: float, optional. Microns per pixel of the images as loaded
            (``GLAS_NATIVE_MPP`` times the downsample factor). Defaults to ``None``.

    Example:
    >>> split = load_glas("../shared/data/glas-train", masked=7, seed=0)  # doctest: +SKIP
    >>> len(split.train_masks), len(split.train_labels) + len(split.train_masks)  # doctest: +SKIP
    (7, 68)
    >>> split.write("prepared/glas")  # doctest: +SKIP
    """

    train_masks: MaskSet
    train_labels: LabelSet
    val: MaskSet
    full_train_masks: MaskSet
    full_train_labels: LabelSet
    class_names: tuple[str, ...] = CLASS_NAMES
    train_patients: tuple[int, ...] = ()
    val_patients: tuple[int, ...] = ()
    seed: int = 0
    test: MaskSet | None = None
    test_patients: tuple[int, ...] = ()
    mpp: float | None = None

    def write(self, out_dir: PathLike, include_full: bool = True) -> Path:
        """Write the split as folders ``weaksegtf.data`` reads back.

        Writes ``train_masks/`` and ``val/`` as mask sets, ``train_labels/``
        as a label set, ``train_full/`` (when ``include_full``) as a mask set
        of every training image, and ``split.json`` with the class names,
        patients, seed and image names.

        Raises:
            ConfigError: a target folder already holds files.
        """
        out_dir = Path(out_dir)
        self.train_masks.write(out_dir / "train_masks")
        self.train_labels.write(out_dir / "train_labels")
        self.val.write(out_dir / "val")
        if include_full:
            self.full_train_masks.write(out_dir / "train_full")
        if self.test is not None:
            self.test.write(out_dir / "test")
        summary = {
            "dataset": "GlaS (Sirinukunwattana et al. 2017), training split",
            "class_names": list(self.class_names),
            "ignore_value": self.val.ignore_value,
            "seed": self.seed,
            "mpp": self.mpp,
            "train_patients": list(self.train_patients),
            "val_patients": list(self.val_patients),
            "train_masks": list(self.train_masks.names),
            "train_labels": list(self.train_labels.names),
            "val": list(self.val.names),
            "test_patients": list(self.test_patients),
            "test": [] if self.test is None else list(self.test.names),
        }
        (out_dir / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
        return out_dir


def _load_masked(root: Path, records: list[GlasRecord]) -> MaskSet:
    image_files, mask_files = list_image_files(root / "images"), list_image_files(root / "masks")
    images, masks = [], []
    for record in records:
        images.append(read_rgb(image_files[record.name]))
        # GlaS masks are 0 / 255 (older copies hold instance ids): any non-zero is gland.
        gland = read_mask(mask_files[record.name]) > 0
        masks.append(gland.astype(np.uint8) * np.uint8(record.label))
    mask_set = MaskSet(images, masks, [r.name for r in records])
    mask_set._validate(
        len(CLASS_NAMES),
        image_labels=[str(image_files[r.name]) for r in records],
        mask_labels=[str(mask_files[r.name]) for r in records],
        where="",
    )
    return mask_set


def load_glas(
    root: PathLike,
    masked: int | float = 7,
    val_fraction: float = 0.2,
    seed: int = 0,
    downsample: int = 2,
    test_fraction: float = 0.0,
) -> GlasSplit:
    """Load GlaS as the three-class weak-supervision task, split by patient.

    Args:
        root: str or path. The GlaS training folder (``Grade.csv``,
            ``images/``, ``masks/``).
        masked: int or float. Training images that keep masks: a count, or a
            fraction in (0, 1]. Defaults to 7.
        val_fraction: float. Target share of images for validation.
            Defaults to 0.2.
        seed: int. Random seed for the split and the masked images.
            Defaults to 0.
        downsample: int. Divide each image side by this (2 turns the native
            ~0.62 um/px into ~1.24 um/px). Defaults to 2.
        test_fraction: float. Share of images held out as a test set of
            other patients (see :func:`plan_glas_split`). Defaults to 0 (none).

    Raises:
        ConfigError: ``masked``, ``val_fraction`` or ``downsample`` out of range.
        DataError: missing ``Grade.csv``, missing or unlisted files, or a
            mask whose size differs from its image.

    Example:
    >>> split = load_glas("../shared/data/glas-train", masked=0.1, seed=3)  # doctest: +SKIP
    """
    root = Path(root)
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise ConfigError(f"downsample must be an int of at least 1, got {downsample!r}")
    plan = plan_glas_split(root, masked=masked, val_fraction=val_fraction, seed=seed, test_fraction=test_fraction)
    records = {r.name: r for r in read_glas_grades(root)}
    train_names = set(plan.train_mask_names + plan.train_label_names)
    train = [r for r in records.values() if r.name in train_names]
    full = downsample_mask_set(_load_masked(root, train), downsample)
    val = downsample_mask_set(_load_masked(root, [records[n] for n in plan.val_names]), downsample)
    position = {name: i for i, name in enumerate(full.names)}
    labels = [records[n].label for n in full.names]
    full_labels = LabelSet(list(full.images), labels, list(full.names), CLASS_NAMES)
    mask_rows = [position[n] for n in plan.train_mask_names]
    label_rows = [position[n] for n in plan.train_label_names]
    return GlasSplit(
        train_masks=full.subset(mask_rows),
        train_labels=full_labels.subset(label_rows),
        val=val,
        full_train_masks=full,
        full_train_labels=full_labels,
        class_names=CLASS_NAMES,
        train_patients=plan.train_patients,
        val_patients=plan.val_patients,
        seed=seed,
        test=downsample_mask_set(_load_masked(root, [records[n] for n in plan.test_names]), downsample)
        if plan.test_names else None,
        test_patients=plan.test_patients,
        mpp=GLAS_NATIVE_MPP * downsample,
    )
