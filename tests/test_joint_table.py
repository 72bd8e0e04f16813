"""The joint distribution table (Zhao et al. Table 1): files, validation, estimation; block labels."""

import json

import numpy as np
import pytest

from weaksegtf.cli import train as train_cli
from weaksegtf.data.block_labels import bin_shares, block_class_shares, block_grid, block_labels_from_masks
from weaksegtf.data.joint_distribution_table import JointDistributionTable
from weaksegtf.errors import DataError

# Zhao et al. Table 1, first and last rows, as fractions.
TABLE_1 = JointDistributionTable(
    [[0.0, 1.0], [0.7, 0.3]], [[0.001, 0.001], [0.05, 0.05]], ("0-20", "95-100"), ("cancer", "non-cancer")
)


def _masks_with_shares(shares, block_px=8, blocks=(2, 2)):
    """One mask per share: every block has ``round(share * block_px**2)`` gland pixels (class 1)."""
    masks = []
    for share in shares:
        block = np.zeros(block_px * block_px, np.uint8)
        block[: int(round(share * block_px * block_px))] = 1
        masks.append(np.tile(block.reshape(block_px, block_px), blocks))
    return masks


def test_estimate_recovers_known_shares():
    # Label 0 blocks hold 1/8 or 3/8 gland (mean 1/4, std 1/8); label 1 blocks always 3/4 (std 0).
    shares = [0.125, 0.375, 0.125, 0.375, 0.75, 0.75]
    masks = _masks_with_shares(shares)
    labels = [np.full((2, 2), 0 if s < 0.5 else 1) for s in shares]
    table = JointDistributionTable.estimate(masks, labels, num_labels=2, num_classes=2, classes=("stroma", "gland"))
    np.testing.assert_allclose(table.mean, [[0.75, 0.25], [0.25, 0.75]])
    np.testing.assert_allclose(table.std, [[0.125, 0.125], [0.0, 0.0]], atol=1e-12)
    assert table.classes == ("stroma", "gland") and table.source == "estimated joint table"


def test_estimate_from_binned_block_labels_and_one_label_per_patch():
    masks = _masks_with_shares([0.0, 0.25, 0.5, 1.0], block_px=8, blocks=(1, 1))
    labels = block_labels_from_masks(masks, 8, bin_edges=[0, 0.3, 0.7, 1.0])
    assert [m.tolist() for m in labels] == [[[0]], [[0]], [[1]], [[2]]]
    table = JointDistributionTable.estimate(masks, [int(m[0, 0]) for m in labels], num_labels=3, num_classes=2)
    np.testing.assert_allclose(table.mean[:, 1], [0.125, 0.5, 1.0])
    np.testing.assert_allclose(table.std[:, 1], [0.125, 0.0, 0.0], atol=1e-12)


def test_unannotated_pixels_and_unlabelled_blocks_are_left_out():
    mask = np.array([[0, 1, 1, 1], [255, 255, 1, 1]], np.uint8)
    np.testing.assert_allclose(block_class_shares(mask, 2, 2), [[[0.5, 0.5], [0.0, 1.0]]])
    assert np.isnan(block_class_shares(np.full((2, 2), 255, np.uint8), 2, 2)).all()
    table = JointDistributionTable.estimate(
        [mask, np.zeros((2, 4), np.uint8)], [np.array([[0, 1]]), np.array([[255, 0]])], num_labels=2, num_classes=2
    )
    np.testing.assert_allclose(table.mean, [[0.75, 0.25], [0.0, 1.0]])


def test_bin_shares_and_block_grid():
    assert bin_shares(np.array([0.0, 0.29, 0.3, 0.99, 1.0, np.nan]), [0, 0.3, 0.7, 1.0]).tolist() == [0, 0, 1, 2, 2, 255]
    assert block_grid(64, 96, (2, 3)) == (32, 32) and block_grid(64, 64, ()) == (64, 64)
    with pytest.raises(DataError, match="a 3x3 block-label map does not tile a 64x64 image"):
        block_grid(64, 64, (3, 3))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    path = TABLE_1.save(tmp_path / f"table{suffix}")
    loaded = JointDistributionTable.from_file(path)
    np.testing.assert_array_equal(loaded.mean, TABLE_1.mean)
    np.testing.assert_array_equal(loaded.std, TABLE_1.std)
    assert loaded.labels == TABLE_1.labels and loaded.classes == TABLE_1.classes
    assert loaded.source == str(path)


def test_a_hand_written_csv_loads(tmp_path):
    path = tmp_path / "zhao.csv"
    path.write_text("label,mean_cancer,mean_non-cancer,std_cancer,std_non-cancer\n"
                    "0-20,0.0,1.0,0.001,0.001\n90-95,0.2,0.8,0.02,0.02\n95-100,0.7,0.3,0.05,0.05\n")
    table = JointDistributionTable.from_file(path)
    assert table.num_labels == 3 and table.classes == ("cancer", "non-cancer")
    assert table.labels == ("0-20", "90-95", "95-100")


@pytest.mark.parametrize("text, message", [
    ("label,mean_a,mean_b,std_a,std_b\nz0,0.6,0.3,0.1,0.1\n",
     r"the mean shares of label 'z0' sum to 0.9; expected 1 \(within 0.01\)"),
    ("label,mean_a,mean_b,std_a,std_b\nz0,0.6,0.4,0.1,-0.2\n",
     r"label 'z0' has standard deviation -0.2 for class 'b'; expected 0 or more"),
    ("label,mean_a,mean_b,std_a,std_b\nz0,70,30,5,5\n",
     r"label 'z0' has mean shares \[70.0, 30.0\]; expected fractions in \[0, 1\]"),
    ("label,mean_a,mean_b,std_b,std_a\nz0,0.6,0.4,0.1,0.1\n",
     r"expected label,mean_<class>...,std_<class>... with the same classes in the same order"),
    ("label,mean_a,mean_b,std_a,std_b\nz0,0.6,x,0.1,0.1\n", r"line 2 is \['z0', '0.6', 'x', '0.1', '0.1'\]"),
    ("label,mean_a,mean_b,std_a,std_b\n", "has no rows"),
])
def test_bad_csv_tables_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        JointDistributionTable.from_file(path)
    assert str(path) in str(error.value)


def test_bad_json_tables_and_paths_name_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"mean": [[0.5, 0.6]], "std": [[0.1, 0.1]]}))
    with pytest.raises(DataError, match=f"{path}: the mean shares of label '0' sum to 1.1"):
        JointDistributionTable.from_file(path)
    path.write_text(json.dumps({"mean": [[0.5, 0.5]]}))
    with pytest.raises(DataError, match=rf"{path}: missing \['std'\]"):
        JointDistributionTable.from_file(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match=f"joint table {path} is not valid JSON"):
        JointDistributionTable.from_file(path)
    with pytest.raises(DataError, match="joint table .*missing.csv does not exist"):
        JointDistributionTable.from_file(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="has suffix '.txt'; expected .csv or .json"):
        (tmp_path / "t.txt").write_text("")
        JointDistributionTable.from_file(tmp_path / "t.txt")


def test_estimation_errors_say_what_is_wrong():
    masks = _masks_with_shares([0.25, 0.5], blocks=(1, 1))
    with pytest.raises(DataError, match=r"low-resolution label\(s\) \['2'\] have no annotated block among the 2 patches"):
        JointDistributionTable.estimate(masks, [0, 1], num_labels=3, num_classes=2)
    with pytest.raises(DataError, match="mask 1: block label 4 is outside 0..2"):
        JointDistributionTable.estimate(masks, [0, 4], num_labels=3, num_classes=2)
    bad = masks[0].copy()
    bad[0, 0] = 9
    with pytest.raises(DataError, match=r"mask 0: mask value 9 is neither a class \(0..1\) nor 255"):
        JointDistributionTable.estimate([bad], [0], num_labels=1, num_classes=2)


def test_block_labels_outside_the_table_are_refused():
    TABLE_1.check_block_labels(np.array([[0, 1], [255, 1]]))
    with pytest.raises(DataError, match=r"block label 2 is outside the joint table's 2 labels"):
        TABLE_1.check_block_labels(np.array([0, 2]))


def test_train_cli_reports_a_bad_joint_table_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "table.csv"
    path.write_text("label,mean_bg,mean_gland,std_bg,std_gland\nlow,0.9,0.2,0.1,0.1\n")
    code = train_cli.main(["--lowres", str(tmp_path), "--joint-table", str(path), "--mode", "LR",
                           "--out", str(tmp_path / "run"), "--classes", "bg,gland"])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}: the mean shares of label 'low' sum to 1.1" in err and "Traceback" not in err
