"""LabelSet: labels.csv and class folders, round trip and every bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from weaksegtf.data import LabelSet, write_png
from weaksegtf.errors import ConfigError, DataError

CLASSES = ("background", "benign gland", "malignant gland")


def _image(value: int, shape: tuple[int, int] = (4, 5)) -> np.ndarray:
    return np.full(shape + (3,), value, np.uint8)


def _csv_folder(tmp_path: Path, rows: list[str], images: dict[str, int]) -> Path:
    for relative, value in images.items():
        write_png(tmp_path / relative, _image(value))
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_csv_with_indices_and_class_names(tmp_path: Path) -> None:
    root = _csv_folder(
        tmp_path,
        ["images/a.png,1", "images/b.png, malignant gland", "c.png,0"],
        {"images/a.png": 10, "images/b.png": 20, "c.png": 30},
    )
    labels = LabelSet.from_folder(root, class_names=CLASSES)
    assert labels.names == ["a", "b", "c"]
    assert labels.labels == [1, 2, 0]
    assert [int(image[0, 0, 0]) for image in labels.images] == [10, 20, 30]
    assert labels.class_counts(3).tolist() == [1, 1, 1]
    assert labels.class_names == CLASSES


def test_class_folders_use_class_names_order(tmp_path: Path) -> None:
    write_png(tmp_path / "malignant gland" / "x.png", _image(1))
    write_png(tmp_path / "malignant gland" / "y.png", _image(2))
    write_png(tmp_path / "benign gland" / "x.png", _image(3))
    labels = LabelSet.from_folder(tmp_path, class_names=CLASSES)
    # Stems collide across folders, so names keep the folder.
    assert labels.names == ["benign gland__x", "malignant gland__x", "malignant gland__y"]
    assert labels.labels == [1, 2, 2]
    assert labels.class_counts(3).tolist() == [0, 1, 2]


def test_class_folders_without_names_are_numbered_in_sorted_order(tmp_path: Path) -> None:
    write_png(tmp_path / "tumour" / "a.png", _image(1))
    write_png(tmp_path / "normal" / "b.png", _image(2))
    labels = LabelSet.from_folder(tmp_path)
    assert labels.class_names == ("normal", "tumour")
    assert labels.names == ["b", "a"] and labels.labels == [0, 1]


def test_write_then_from_folder_gives_equal_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    original = LabelSet(
        [rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), rng.integers(0, 256, (7, 3, 3), dtype=np.uint8)],
        [2, 1],
        ["train_3", "train_12"],
    )
    original.write(tmp_path / "labels")
    assert (tmp_path / "labels" / "labels.csv").read_text().splitlines() == [
        "path,label",
        "images/train_3.png,2",
        "images/train_12.png,1",
    ]
    loaded = LabelSet.from_folder(tmp_path / "labels", num_classes=3)
    assert loaded.names == original.names and loaded.labels == original.labels
    for a, b in zip(original.images, loaded.images):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="already holds 2 entries"):
        original.write(tmp_path / "labels")


def test_subset() -> None:
    labels = LabelSet([_image(0), _image(1), _image(2)], [0, 1, 2], ["a", "b", "c"])
    picked = labels.subset(np.array([2, 0]))
    assert picked.names == ["c", "a"] and picked.labels == [2, 0]


def test_label_out_of_range_in_csv(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path, ["images/a.png,1", "images/b.png,7"], {"images/a.png": 0, "images/b.png": 0})
    with pytest.raises(DataError) as error:
        LabelSet.from_folder(root, num_classes=3)
    assert str(error.value) == (
        f"label 7 is out of range for 3 classes (0..2): {root / 'labels.csv'} line 3 (images/b.png)"
    )


def test_label_out_of_range_in_memory_and_in_counts() -> None:
    labels = LabelSet([_image(0)], [7], ["a"])
    with pytest.raises(DataError, match=r"^label 7 is out of range for 3 classes \(0\.\.2\): image 'a'$"):
        labels.validate(3)
    with pytest.raises(DataError, match="^label 7 is out of range for 3 classes"):
        labels.class_counts(3)


def test_negative_label_is_refused(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path, ["a.png,-1"], {"a.png": 0})
    with pytest.raises(DataError, match="label -1 for a.png is negative"):
        LabelSet.from_folder(root)


def test_unknown_class_name_in_csv(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path, ["a.png,tumor"], {"a.png": 0})
    with pytest.raises(DataError) as error:
        LabelSet.from_folder(root, class_names=CLASSES)
    assert str(error.value) == (
        f"{root / 'labels.csv'} line 2: unknown class name 'tumor' for a.png; expected an integer "
        f"or one of ['background', 'benign gland', 'malignant gland']"
    )
    with pytest.raises(DataError, match=re.escape("expected an integer (pass class_names to use class names)")):
        LabelSet.from_folder(root)


def test_unknown_class_folder(tmp_path: Path) -> None:
    write_png(tmp_path / "tumour" / "a.png", _image(1))
    with pytest.raises(DataError, match="unknown class name 'tumour'; expected one of"):
        LabelSet.from_folder(tmp_path, class_names=CLASSES)


def test_class_folder_beyond_num_classes(tmp_path: Path) -> None:
    for name in ["a", "b", "c"]:
        write_png(tmp_path / name / "x.png", _image(1))
    with pytest.raises(DataError, match="^label 2 is out of range for 2 classes"):
        LabelSet.from_folder(tmp_path, num_classes=2)


def test_missing_image_named_in_csv(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path, ["a.png,1", "images/gone.png,1"], {"a.png": 0})
    with pytest.raises(DataError) as error:
        LabelSet.from_folder(root, num_classes=3)
    assert str(error.value) == (
        f"{root / 'labels.csv'} line 3 names images/gone.png, but {root / 'images' / 'gone.png'} does not exist"
    )


def test_unreadable_image_in_csv(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path, ["a.png,1"], {})
    (root / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"^cannot read image .*a\.png \(9 bytes\)"):
        LabelSet.from_folder(root, num_classes=3)


def test_bad_header(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,class\na.png,1\n")
    with pytest.raises(DataError, match=re.escape("has header ['file', 'class']; expected path,label")):
        LabelSet.from_folder(tmp_path)


def test_empty_sets(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is empty; expected labels.csv with rows of path,label or one folder"):
        LabelSet.from_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="is empty"):
        LabelSet.from_folder(tmp_path)
    (tmp_path / "labels.csv").unlink()
    (tmp_path / "benign").mkdir()
    with pytest.raises(DataError, match="is empty"):
        LabelSet.from_folder(tmp_path)


def test_num_classes_must_agree_with_class_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_classes is 2 but class_names has 3 names"):
        LabelSet.from_folder(tmp_path, num_classes=2, class_names=CLASSES)
