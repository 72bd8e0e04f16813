"""The GlaS adapter on the real training data: split, masks, labels, bad folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from weaksegtf.data import (
    GLAS_CLASS_NAMES,
    LabelSet,
    MaskSet,
    load_glas,
    plan_glas_split,
    read_glas_grades,
    write_png,
)
from weaksegtf.data.glas import GlasSplit
from weaksegtf.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def split(glas_dir: Path) -> GlasSplit:
    return load_glas(glas_dir, masked=7, val_fraction=0.2, seed=0, downsample=2)


def _patients(glas_dir: Path) -> dict[str, int]:
    return {r.name: r.patient_id for r in read_glas_grades(glas_dir)}


def test_grade_csv_is_read(glas_dir: Path) -> None:
    records = read_glas_grades(glas_dir)
    assert len(records) == 85
    assert [r.label for r in records].count(1) == 37 and [r.label for r in records].count(2) == 48
    assert len({r.patient_id for r in records}) == 15
    first = records[0]
    assert (first.name, first.patient_id, first.label) == ("train_1", 2, 2)


def test_split_is_patient_disjoint_and_complete(glas_dir: Path, split: GlasSplit) -> None:
    patient_of = _patients(glas_dir)
    train_names = split.train_masks.names + split.train_labels.names
    assert {patient_of[n] for n in train_names} == set(split.train_patients)
    assert {patient_of[n] for n in split.val.names} == set(split.val_patients)
    assert not set(split.train_patients) & set(split.val_patients)
    assert sorted(train_names + split.val.names) == sorted(patient_of)
    assert sorted(split.full_train_masks.names) == sorted(train_names)
    assert len(split.val) == 17  # 0.2 * 85, reached exactly with whole patients


def test_masked_count_and_labels(glas_dir: Path, split: GlasSplit) -> None:
    grade = {r.name: r.label for r in read_glas_grades(glas_dir)}
    assert len(split.train_masks) == 7
    assert len(split.train_labels) == len(split.full_train_masks) - 7
    assert not set(split.train_masks.names) & set(split.train_labels.names)
    assert split.train_labels.labels == [grade[n] for n in split.train_labels.names]
    assert {grade[n] for n in split.train_masks.names} == {1, 2}  # both grades keep masks
    assert split.full_train_labels.labels == [grade[n] for n in split.full_train_masks.names]
    assert split.class_names == GLAS_CLASS_NAMES == ("background", "benign gland", "malignant gland")


def test_masks_hold_only_background_and_the_grade(glas_dir: Path, split: GlasSplit) -> None:
    grade = {r.name: r.label for r in read_glas_grades(glas_dir)}
    for mask_set in (split.full_train_masks, split.val):
        for mask, name in zip(mask_set.masks, mask_set.names):
            assert set(np.unique(mask).tolist()) == {0, grade[name]}
    counts = split.full_train_masks.class_pixel_counts(3)
    assert counts.dtype == np.int64 and (counts > 0).all()


def test_downsample_halves_native_size(split: GlasSplit) -> None:
    shapes = {image.shape for image in split.full_train_masks.images + split.val.images}
    assert (261, 388, 3) in shapes  # 522 x 775 natively
    for image, mask in zip(split.val.images, split.val.masks):
        assert mask.shape == image.shape[:2]


def test_split_is_reproducible_and_depends_on_seed(glas_dir: Path) -> None:
    first = plan_glas_split(glas_dir, masked=7, seed=0)
    assert plan_glas_split(glas_dir, masked=7, seed=0) == first
    others = [plan_glas_split(glas_dir, masked=7, seed=seed) for seed in (1, 2, 3)]
    assert any(plan.val_patients != first.val_patients for plan in others)
    assert all(plan.train_mask_names != first.train_mask_names for plan in others)


def test_load_is_reproducible(glas_dir: Path, split: GlasSplit) -> None:
    again = load_glas(glas_dir, masked=7, val_fraction=0.2, seed=0, downsample=2)
    assert again.train_masks.names == split.train_masks.names
    assert again.train_labels.names == split.train_labels.names
    assert again.val.names == split.val.names and again.val_patients == split.val_patients
    for a, b in zip(again.full_train_masks.masks + again.val.images, split.full_train_masks.masks + split.val.images):
        np.testing.assert_array_equal(a, b)


def test_both_grades_in_validation(glas_dir: Path) -> None:
    grade = {r.name: r.label for r in read_glas_grades(glas_dir)}
    for seed in range(5):
        plan = plan_glas_split(glas_dir, seed=seed)
        assert {grade[n] for n in plan.val_names} == {1, 2}


def test_masked_as_fraction_and_limits(glas_dir: Path) -> None:
    plan = plan_glas_split(glas_dir, masked=0.25, seed=0)
    n_train = len(plan.train_mask_names) + len(plan.train_label_names)
    assert len(plan.train_mask_names) == int(np.floor(0.25 * n_train + 0.5))
    assert len(plan_glas_split(glas_dir, masked=0, seed=0).train_mask_names) == 0
    assert len(plan_glas_split(glas_dir, masked=1.0, seed=0).train_label_names) == 0
    with pytest.raises(ConfigError, match=rf"^masked=500 but the training split has only {n_train} images"):
        plan_glas_split(glas_dir, masked=500, seed=0)
    with pytest.raises(ConfigError, match=re.escape("masked as a fraction must be in (0, 1], got 1.5")):
        plan_glas_split(glas_dir, masked=1.5)
    with pytest.raises(ConfigError, match="masked must be 0 or more images, got -1"):
        plan_glas_split(glas_dir, masked=-1)
    with pytest.raises(ConfigError, match=re.escape("val_fraction must be in (0, 1), got 0")):
        plan_glas_split(glas_dir, val_fraction=0)
    with pytest.raises(ConfigError, match="downsample must be an int of at least 1, got 0"):
        load_glas(glas_dir, downsample=0)


def test_write_gives_readable_folders(tmp_path: Path, split: GlasSplit) -> None:
    small = GlasSplit(
        train_masks=split.train_masks.subset([0, 1]),
        train_labels=split.train_labels.subset([0, 1, 2]),
        val=split.val.subset([0]),
        full_train_masks=split.full_train_masks.subset([0]),
        full_train_labels=split.full_train_labels.subset([0]),
        train_patients=split.train_patients,
        val_patients=split.val_patients,
    )
    small.write(tmp_path)
    masks = MaskSet.from_folder(tmp_path / "train_masks", num_classes=3)
    labels = LabelSet.from_folder(tmp_path / "train_labels", num_classes=3)
    val = MaskSet.from_folder(tmp_path / "val", num_classes=3)
    assert masks.names == small.train_masks.names
    np.testing.assert_array_equal(masks.masks[1], small.train_masks.masks[1])
    np.testing.assert_array_equal(labels.images[2], small.train_labels.images[2])
    assert labels.labels == small.train_labels.labels and len(val) == 1
    assert len(MaskSet.from_folder(tmp_path / "train_full", num_classes=3)) == 1
    summary = json.loads((tmp_path / "split.json").read_text())
    assert summary["val_patients"] == list(split.val_patients)
    assert summary["class_names"] == list(GLAS_CLASS_NAMES)


def _copy_glas(glas_dir: Path, target: Path, names: list[str]) -> Path:
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir()
    lines = (glas_dir / "Grade.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in names]
    (target / "Grade.csv").write_text("\n".join(keep) + "\n")
    for name in names:
        shutil.copy(glas_dir / "images" / f"{name}.png", target / "images")
        shutil.copy(glas_dir / "masks" / f"{name}.png", target / "masks")
    return target


def test_missing_grade_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'Grade.csv'))} does not exist"):
        load_glas(tmp_path)


def test_mismatched_files(glas_dir: Path, tmp_path: Path) -> None:
    root = _copy_glas(glas_dir, tmp_path / "g", ["train_1", "train_2"])
    (root / "masks" / "train_2.png").unlink()
    with pytest.raises(DataError, match=re.escape(f"lists train_2, but {root / 'masks'} has no such mask")):
        read_glas_grades(root)
    shutil.copy(glas_dir / "masks" / "train_2.png", root / "masks")
    shutil.copy(glas_dir / "images" / "train_3.png", root / "images")
    with pytest.raises(DataError, match=re.escape(f"image {root / 'images' / 'train_3.png'} is not listed")):
        read_glas_grades(root)


def test_bad_grade_csv_header(tmp_path: Path) -> None:
    (tmp_path / "Grade.csv").write_text("image,grade\ntrain_1,benign\n")
    with pytest.raises(DataError, match=re.escape("has header ['image', 'grade']; expected name,patient ID")):
        read_glas_grades(tmp_path)


def test_mask_of_wrong_size_names_both_files(glas_dir: Path, tmp_path: Path) -> None:
    root = _copy_glas(glas_dir, tmp_path / "g", ["train_1", "train_12", "train_2", "train_23"])
    write_png(root / "masks" / "train_2.png", np.zeros((512, 512), np.uint8))
    with pytest.raises(DataError) as error:
        load_glas(root, masked=1, val_fraction=0.5)
    assert str(error.value) == (
        f"mask {root / 'masks' / 'train_2.png'} has shape (512, 512) but image "
        f"{root / 'images' / 'train_2.png'} is (522, 775)"
    )
