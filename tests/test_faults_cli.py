"""Fault table of issue 14 for weakseg-export, -prepare, -train, -eval and -demo.

Each case: exit code 2, one line on stderr naming the file and what was
expected, and the user's files byte for byte as they were. The slow part
(one tiny model trained through the CLI) is shared by the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weaksegtf.cli import evaluate as eval_cli
from weaksegtf.cli import export as export_cli
from weaksegtf.cli import prepare as prepare_cli
from weaksegtf.cli import train as train_cli
from weaksegtf.data import LabelSet, make_synthetic_dataset
from weaksegtf.output_guard import RECORD_NAME

CLASSES = "background,benign,malignant"
REPO = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but weaksegtf's own record) with its sha256: 'untouched byte for byte'."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RECORD_NAME}


def _one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith(("WARNING", "I0000", "E0000", "W0000"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _write_sets(root: Path, size: int = 32) -> None:
    mask_set, labels = make_synthetic_dataset(n_images=6, size_px=size, seed=3)
    mask_set.subset(range(2)).write(root / "masks")
    LabelSet([mask_set.images[i] for i in (2, 3)], [int(labels[i]) for i in (2, 3)],
             [mask_set.names[i] for i in (2, 3)]).write(root / "labels")
    mask_set.subset(range(4, 6)).write(root / "val")


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--masks", str(root / "masks"), "--labels", str(root / "labels"), "--out", str(out),
            "--classes", CLASSES, "--tile-size", "32", "--epochs", "1", "--batch-size", "2", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder made by weakseg-train through the CLI (model.keras with a model card, mpp 2.0)."""
    root = tmp_path_factory.mktemp("faults")
    _write_sets(root)
    out = root / "run"
    assert train_cli.main(_train_args(root, out, "--val", str(root / "val"), "--mpp", "2.0")) == 0
    return root, out


# --- item 1: weakseg-export --savedmodel never deletes what a folder holds ------------------------

@pytest.mark.slow
def test_export_savedmodel_into_the_run_folder_deletes_nothing(trained, capsys):
    root, run = trained
    before = _digest(run)
    code = export_cli.main([str(run / "model.keras"), "--onnx", str(root / "x.onnx"), "--savedmodel", str(run)])
    assert code == 2
    _one_line_error(capsys, str(run), "not empty", "--overwrite")
    assert _digest(run) == before and not (root / "x.onnx").exists()
    # With --overwrite the SavedModel joins the folder; every file already there stays byte for byte.
    code = export_cli.main([str(run / "model.keras"), "--onnx", str(root / "x.onnx"), "--savedmodel", str(run),
                            "--overwrite"])
    assert code == 0, capsys.readouterr().err
    after = _digest(run)
    assert {k: v for k, v in after.items() if k in before} == before
    assert (run / "saved_model.pb").is_file() and (run / "variables").is_dir()
    assert json.loads((run / RECORD_NAME).read_text())["outputs"]["saved_model.pb"] == "weakseg-export"
    for name in ("saved_model.pb", "variables", "fingerprint.pb", "assets"):  # leave the fixture as it was
        target = run / name
        if target.is_dir():
            import shutil
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (root / "x.onnx").unlink()


@pytest.mark.slow
def test_export_refuses_to_replace_a_file_it_did_not_write(trained, capsys):
    root, run = trained
    before = _digest(run)
    for extra in ([], ["--overwrite"]):
        code = export_cli.main([str(run / "model.keras"), "--onnx", str(run / "metrics.json"), *extra])
        assert code == 2
        _one_line_error(capsys, str(run / "metrics.json"))
        assert _digest(run) == before
    code = export_cli.main([str(run / "model.keras"), "--onnx", str(run / "model.keras")])
    assert code == 2
    _one_line_error(capsys, "model.keras", "the model being exported")


# --- item 4: the model card travels; README's export -> infer pair without --inference-mpp ---------

@pytest.mark.slow
def test_model_card_reaches_the_onnx_metadata_and_infer_needs_no_mpp(trained, tmp_path, capsys):
    from weaksegtf.export import read_onnx_metadata
    from weaksegtf.model_card import read_model_card
    from weaksegtf.slides import write_pyramidal_tiff

    root, run = trained
    card = read_model_card(run / "model.keras")
    assert card["mpp"] == 2.0 and card["mpp_source"] == "--mpp" and card["tile_size_px"] == 32
    assert card["class_names"] == CLASSES.split(",") and len(card["class_colors"]) == 3
    onnx = tmp_path / "model.onnx"
    assert export_cli.main([str(run / "model.keras"), "--onnx", str(onnx)]) == 0  # no --mpp, no --tile-size
    meta = read_onnx_metadata(onnx)
    assert (meta.mpp, meta.tile_size_px, list(meta.class_names)) == (2.0, 32, CLASSES.split(","))
    assert meta.provenance["weaksegtf"] and meta.provenance["command"]
    # Exporting the same weights again replaces the file without --overwrite (README runs it after the demo).
    assert export_cli.main([str(run / "model.keras"), "--onnx", str(onnx)]) == 0
    capsys.readouterr()
    slide = tmp_path / "slide.tif"
    image = np.full((256, 256, 3), 240, np.uint8)
    image[64:192, 64:192] = (150, 60, 140)
    write_pyramidal_tiff(slide, image, 2.0)
    result = subprocess.run([sys.executable, "-m", "weaksegtf.cli.infer", str(onnx), str(slide),
                             "--out", str(tmp_path / "slides_out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_export_of_other_weights_onto_an_existing_onnx_needs_overwrite(trained, tmp_path, capsys):
    import keras

    from weaksegtf.models import WeakSegmenter

    root, run = trained
    onnx = tmp_path / "model.onnx"
    assert export_cli.main([str(run / "model.keras"), "--onnx", str(onnx)]) == 0
    keras.utils.set_random_seed(9)
    other = WeakSegmenter(num_classes=3, class_names=CLASSES.split(","))
    other(np.zeros((1, 32, 32, 3), "float32"))
    other.save(tmp_path / "other.keras")
    before = onnx.read_bytes()
    capsys.readouterr()
    assert export_cli.main([str(tmp_path / "other.keras"), "--onnx", str(onnx), "--mpp", "1"]) == 2
    _one_line_error(capsys, str(onnx), "other weights", "--overwrite")
    assert onnx.read_bytes() == before
    assert export_cli.main([str(tmp_path / "other.keras"), "--onnx", str(onnx), "--mpp", "1", "--overwrite"]) == 0


# --- item 7: weakseg-train never replaces a run, never leaves a stale predictions.png -------------

@pytest.mark.slow
def test_train_refuses_an_existing_run_and_overwrite_removes_only_its_own_stale_files(trained, capsys):
    root, run = trained
    (run / "notes.txt").write_text("the user's notes")
    before = _digest(run)
    assert train_cli.main(_train_args(root, run)) == 2
    _one_line_error(capsys, str(run), "not empty", "--overwrite")
    assert _digest(run) == before
    # --overwrite without --val: predictions.png of the last run is stale and goes; notes.txt stays.
    assert train_cli.main(_train_args(root, run, "--overwrite", "--mpp", "2.0")) == 0
    assert not (run / "predictions.png").exists()
    assert (run / "notes.txt").read_text() == "the user's notes"
    metrics = json.loads((run / "metrics.json").read_text())
    provenance = metrics["provenance"]
    assert provenance["seed"] == 0 and provenance["settings"]["epochs"] == 1
    assert provenance["dependencies"]["tensorflow"] and provenance["timestamp_utc"]


def test_train_overwrite_refuses_a_file_weaksegtf_did_not_write(tmp_path, capsys):
    _write_sets(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_bytes(b"the user's own model")
    assert train_cli.main(_train_args(tmp_path, out, "--overwrite")) == 2
    _one_line_error(capsys, "model.keras", "did not write")
    assert (out / "model.keras").read_bytes() == b"the user's own model"


# --- item 10: an unusable --out is found before any work, as one line ------------------------------

def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder nobody may create files in: a chmod 555 folder, or (as root, who ignores the bits) /proc."""
    import tempfile

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/proc")):
        try:
            os.close(tempfile.mkstemp(dir=candidate)[0])
        except OSError:
            return candidate / "out"
    pytest.skip("no unwritable folder on this machine")


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_train_out_that_is_a_file_or_unwritable_fails_before_training(tmp_path, capsys, kind):
    _write_sets(tmp_path)
    if kind == "file":
        out = tmp_path / "out.txt"
        out.write_text("keep me")
    else:
        out = _unwritable_folder(tmp_path)
    assert train_cli.main(_train_args(tmp_path, out)) == 2
    _one_line_error(capsys, str(out))
    if kind == "file":
        assert out.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_prepare_and_eval_out_that_is_a_file_or_unwritable(tmp_path, capsys, kind):
    _write_sets(tmp_path)
    if kind == "file":
        out = tmp_path / "out.txt"
        out.write_text("keep me")
    else:
        out = _unwritable_folder(tmp_path)
    image = tmp_path / "val" / "images" / sorted(os.listdir(tmp_path / "val" / "images"))[0]
    mask = tmp_path / "val" / "masks" / image.name
    assert prepare_cli.main([str(image), "--masks", str(mask), "--out", str(out), "--mpp", "1", "--quiet"]) == 2
    _one_line_error(capsys, str(out))
    assert eval_cli.main(["--predictions", str(tmp_path / "val" / "masks"), "--masks", str(tmp_path / "val" / "masks"),
                          "--out", str(out), "--classes", CLASSES]) == 2
    _one_line_error(capsys, str(out))


def test_prepare_keeps_summary_and_thumbnails_without_overwrite(tmp_path, capsys):
    _write_sets(tmp_path, size=64)
    image = tmp_path / "val" / "images" / sorted(os.listdir(tmp_path / "val" / "images"))[0]
    mask = tmp_path / "val" / "masks" / image.name
    out = tmp_path / "patches"
    args = [str(image), "--masks", str(mask), "--out", str(out), "--mpp", "1", "--patch-mpp", "1",
            "--patch-size", "32", "--quiet"]
    assert prepare_cli.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patch_mpp"] == 1.0 and summary["provenance"]["settings"]["patch_size_px"] == 32
    (out / "summary.json").write_text("the user's edited summary")
    before = _digest(out)
    capsys.readouterr()
    assert prepare_cli.main(args) == 2
    _one_line_error(capsys, str(out), "not empty")
    assert _digest(out) == before
    # weakseg-train finds the patch mpp of prepare's summary for the model card.
    from weaksegtf.model_card import card_settings_from_folders

    assert prepare_cli.main(args + ["--overwrite"]) == 0
    assert card_settings_from_folders(None, [out / "masks_set"])["mpp"] == 1.0


def test_prepare_malformed_geojson_coordinates_and_outside_out_of_range(tmp_path, capsys):
    _write_sets(tmp_path)
    image = tmp_path / "val" / "images" / sorted(os.listdir(tmp_path / "val" / "images"))[0]
    geojson = tmp_path / "bad.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": [[["a", 1], [2, 3], [4, 5]]]}}]}))
    out = tmp_path / "out"
    assert prepare_cli.main([str(image), "--masks", str(geojson), "--out", str(out), "--mpp", "1",
                             "--class-map", "Tumor=1", "--quiet"]) == 2
    _one_line_error(capsys, str(geojson), "malformed polygon coordinates")
    assert prepare_cli.main([str(image), "--masks", str(geojson), "--out", str(out), "--mpp", "1",
                             "--outside", "300", "--quiet"]) == 2
    _one_line_error(capsys, "--outside", "300")
    assert not out.exists()


# --- items 10 and 11: bad data and options as one line naming the file -----------------------------

@pytest.mark.parametrize("content, expected", [
    (b"path,label\nimages/a.png,1\n\xff\xfe\n", "is not UTF-8"),
    (b"path,label\n../../etc/passwd,1\n", "outside the label-set folder"),
    (b"path,label\n/etc/passwd,1\n", "outside the label-set folder"),
])
def test_labels_csv_faults_name_the_file(tmp_path, capsys, content, expected):
    _write_sets(tmp_path)
    (tmp_path / "labels" / "labels.csv").write_bytes(content)
    assert train_cli.main(_train_args(tmp_path, tmp_path / "run")) == 2
    _one_line_error(capsys, str(tmp_path / "labels" / "labels.csv"), expected)
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.parametrize("content, expected", [
    (b"name,patient ID,grade (GlaS),grade (Sirinukunwattana et al. 2015)\ntrain_1,1,benign\xff,x\n", "is not UTF-8"),
    (b"name,patient ID,grade (GlaS)\ntrain_1,1,benign\ntrain_1,1,benign\n", "a second time"),
])
def test_grade_csv_faults_name_the_file(tmp_path, content, expected):
    from weaksegtf.data.glas import read_glas_grades
    from weaksegtf.errors import DataError

    (tmp_path / "Grade.csv").write_bytes(content)
    with pytest.raises(DataError, match=expected) as error:
        read_glas_grades(tmp_path)
    assert "Grade.csv" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("extra, expected", [
    (["--epochs", "0"], "epochs must be a positive int, got 0"),
    (["--classes", "background,benign,benign"], "repeat 'benign'"),
])
def test_train_refuses_zero_epochs_and_repeated_class_names(tmp_path, capsys, extra, expected):
    _write_sets(tmp_path)
    assert train_cli.main(_train_args(tmp_path, tmp_path / "run") + extra) == 2
    _one_line_error(capsys, expected)
    assert not (tmp_path / "run").exists()


def test_eval_model_that_is_not_a_keras_file(tmp_path, capsys):
    _write_sets(tmp_path)
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    assert eval_cli.main(["--model", str(fake), "--images", str(tmp_path / "val" / "images"),
                          "--masks", str(tmp_path / "val" / "masks"), "--out", str(tmp_path / "ev")]) == 2
    _one_line_error(capsys, str(fake), "not a Keras 3 .keras archive")


_BLOCK_TRAINING = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from weaksegtf.cli import {module}
sys.exit({module}.main({argv!r}))
"""


@pytest.mark.parametrize("module, argv", [
    ("train", ["--masks", "m", "--out", "o", "--classes", "a,b"]),
    ("export", ["m.keras", "--onnx", "m.onnx"]),
    ("demo", ["--out", "d"]),
    ("evaluate", ["--model", "m.keras", "--images", "i", "--masks", "m", "--out", "o"]),
])
def test_commands_without_the_train_extra_say_what_to_install(tmp_path, module, argv):
    code = _BLOCK_TRAINING.replace("{module}", module).replace("{argv!r}", repr(argv))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'weaksegtf[train]'" in lines[0], result.stderr


# --- item 6: the base install's one hole filling, without SciPy -----------------------------------

def test_fill_holes_equals_scipy_on_random_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    from weaksegtf.preprocessing.tissue_mask import fill_mask_holes

    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = rng.integers(1, 48, 2)
        mask = rng.random((height, width)) < rng.uniform(0.2, 0.8)
        assert np.array_equal(fill_mask_holes(mask), ndimage.binary_fill_holes(mask))


def test_the_base_install_lists_no_scikit_image_or_scipy():
    text = (REPO / "setup.cfg").read_text()
    base = text.split("install_requires =", 1)[1].split("[options.packages.find]", 1)[0]
    assert "scikit-image" not in base and "scipy" not in base
    imports = [line.strip() for p in (REPO / "weaksegtf").rglob("*.py") for line in p.read_text().splitlines()
               if line.strip().startswith(("import ", "from "))]
    assert not [line for line in imports if line.split()[1].split(".")[0] in ("skimage", "scipy")]
