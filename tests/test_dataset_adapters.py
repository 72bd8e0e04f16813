"""BACH, Gleason2019 and DigestPath2019 adapters on tiny copies written in each challenge's own layout.

Every fixture is written here into ``tmp_path``: a few synthetic images, a
BACH-style XML with two regions, Gleason-style maps from two pathologists,
DigestPath positives with JPEG masks and negatives without. The tests assert
exact class maps, pixel counts and label lists, and the errors a broken
layout gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from _slide_files import pyramid_levels, tissue_image, write_tiled_tiff

from weaksegtf.cli.experiment import main as experiment_main
from weaksegtf.data import MaskSet, LabelSet
from weaksegtf.data.bach import (
    CLASS_COLORS as BACH_COLORS,
    CLASS_NAMES as BACH_NAMES,
    load_bach_part_a,
    plan_bach_slides,
    prepare_bach,
    rasterize_bach_xml,
    read_bach_part_b,
    read_bach_photos,
    read_bach_xml,
)
from weaksegtf.data.dataset_split import plan_grouped_split
from weaksegtf.data.digestpath import (
    digestpath_slide,
    load_digestpath2019,
    prepare_digestpath2019,
    read_digestpath,
)
from weaksegtf.data.gleason2019 import (
    CLASS_NAMES as GLEASON_NAMES,
    gleason2019_mask,
    load_gleason2019,
    majority_vote,
    prepare_gleason2019,
    read_gleason2019,
)
from weaksegtf.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- BACH fixtures

PHOTOS = {"Normal": ["n001", "n002"], "Benign": ["b001"], "InSitu": ["is001", "is002"], "Invasive": ["iv001"]}


def _write_photos(root: Path, csv: bool = True) -> None:
    rows = []
    for number, (folder, names) in enumerate(PHOTOS.items()):
        (root / "Photos" / folder).mkdir(parents=True)
        for name in names:
            image = np.full((30, 40, 3), 40 * number + 20, np.uint8)
            tifffile.imwrite(root / "Photos" / folder / f"{name}.tif", image, photometric="rgb")
            rows.append(f"{name}.tif,{folder}")
    if csv:
        (root / "Photos" / "microscopy_ground_truth.csv").write_text("\n".join(rows) + "\n")


def _bach_xml(regions: list[tuple[str, str, str, list[tuple[int, int]]]], mpp: float = 0.5) -> str:
    """Aperio ImageScope XML as BACH distributes it; each region is (Id, Text, Attribute Value, vertices)."""
    lines = ['<?xml version="1.0"?>', f'<Annotations MicronsPerPixel="{mpp:.6f}">',
             '<Annotation Id="1" Name="" ReadOnly="0" LineColor="65280" Visible="1" Selected="1">',
             '<Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>', "<Regions>",
             '<RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>'
             "</RegionAttributeHeaders>"]
    for region_id, text, value, vertices in regions:
        lines.append(f'<Region Id="{region_id}" Type="0" Zoom="0.5" Selected="0" Length="0" Area="0" '
                     f'LengthMicrons="0" AreaMicrons="0" Text="{text}" NegativeROA="0" Analyze="1" '
                     f'DisplayId="{region_id}">')
        attribute = f'<Attribute Name="Description" Id="0" Value="{value}"/>' if value else ""
        lines.append(f"<Attributes>{attribute}</Attributes><Vertices>")
        lines += [f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in vertices]
        lines.append("</Vertices></Region>")
    lines += ["</Regions><Plots/></Annotation>", "</Annotations>"]
    return "\n".join(lines) + "\n"


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# A01: the two-region XML (label in Text, and in an Attribute's Value with Text empty).
A01 = [("1", "Benign", "", _rect(256, 256, 512, 384)), ("2", "", "Carcinoma invasive", _rect(576, 256, 768, 512))]
A02 = [("1", "benign", "", _rect(128, 128, 256, 256)), ("2", "Carcinoma in situ", "", _rect(384, 384, 512, 512)),
       ("3", "Invasive", "", _rect(640, 128, 768, 256))]
A03 = [("1", "In Situ", "", _rect(512, 256, 640, 384))]


def _write_bach(root: Path, photos: bool = True) -> Path:
    if photos:
        _write_photos(root)
    wsi = root / "WSI"
    wsi.mkdir(parents=True)
    for index, (name, regions) in enumerate((("A01", A01), ("A02", A02), ("A03", A03))):
        write_tiled_tiff(wsi / f"{name}.svs", pyramid_levels(tissue_image(768, 1024, seed=index), 3), mpp=0.5)
        (wsi / f"{name}.xml").write_text(_bach_xml(regions))
    # An unannotated slide, as the challenge ships beside the annotated ones: not part B training data.
    write_tiled_tiff(wsi / "01.svs", pyramid_levels(tissue_image(256, 256), 1), mpp=0.5)
    return root


# ----------------------------------------------------------------------------- BACH part A


def test_bach_part_a_is_a_label_set_of_whole_photos_with_their_folder_class(tmp_path):
    root = tmp_path / "ICIAR2018_BACH_Challenge"
    _write_photos(root)
    labels = load_bach_part_a(root, mpp=None)
    assert isinstance(labels, LabelSet)
    assert labels.names == ["n001", "n002", "b001", "is001", "is002", "iv001"]
    assert labels.labels == [0, 0, 1, 2, 2, 3]
    assert labels.class_names == ("normal", "benign", "in situ", "invasive")
    assert labels.class_counts(4).tolist() == [2, 1, 2, 1]
    assert [image.shape for image in labels.images] == [(30, 40, 3)] * 6
    assert int(labels.images[2][0, 0, 0]) == 60  # b001 is the Benign folder's grey
    # 0.42 um/px photos at 0.84 um/px: every side halved.
    assert load_bach_part_a(root, mpp=0.84).images[0].shape == (15, 20, 3)
    assert load_bach_part_a(root / "Photos", mpp=None).names == labels.names  # the Photos folder itself works too


def test_bach_part_a_reads_without_the_csv_and_names_what_is_missing(tmp_path):
    root = tmp_path / "bach"
    _write_photos(root, csv=False)
    assert [p.label for p in read_bach_photos(root)] == [0, 0, 1, 2, 2, 3]

    with pytest.raises(DataError, match=r"has no Photos/ folder; expected the unpacked ICIAR2018_BACH_Challenge"):
        read_bach_photos(tmp_path / "elsewhere")
    for name in PHOTOS["InSitu"]:
        (root / "Photos" / "InSitu" / f"{name}.tif").unlink()
    with pytest.raises(DataError, match=r"InSitu holds no \.tif photos"):
        read_bach_photos(root)
    (root / "Photos" / "InSitu").rmdir()
    with pytest.raises(DataError, match=r"lacks the class folder InSitu; expected Normal, Benign, InSitu, Invasive"):
        read_bach_photos(root)


def test_bach_part_a_checks_the_ground_truth_csv(tmp_path):
    root = tmp_path / "bach"
    _write_photos(root)
    csv_path = root / "Photos" / "microscopy_ground_truth.csv"
    good = csv_path.read_text()
    csv_path.write_text(good.replace("b001.tif,Benign", "b001.tif,Normal"))
    with pytest.raises(DataError, match=r"line 3 lists b001\.tif as Normal, but it is in .*Benign"):
        read_bach_photos(root)
    csv_path.write_text(good + "b404.tif,Benign\n")
    with pytest.raises(DataError, match=r"line 7 lists b404\.tif as Benign, but .*Benign/b404\.tif does not exist"):
        read_bach_photos(root)
    csv_path.write_text(good.replace("iv001.tif,Invasive\n", ""))
    with pytest.raises(DataError, match=r"iv001\.tif is not listed in .*microscopy_ground_truth\.csv"):
        read_bach_photos(root)
    csv_path.write_text(good.replace("is002.tif,InSitu", "is002.tif,DCIS"))
    with pytest.raises(DataError, match=r"line 5: class 'DCIS' of is002\.tif is not one of"):
        read_bach_photos(root)


# ----------------------------------------------------------------------------- BACH part B


def test_bach_xml_regions_classes_and_raster(tmp_path):
    path = tmp_path / "A01.xml"
    path.write_text(_bach_xml(A01))
    annotation = read_bach_xml(path)
    assert [(r.region_id, r.text, r.label) for r in annotation.regions] == [
        ("1", "Benign", 1), ("2", "Carcinoma invasive", 3)]
    assert annotation.regions[0].vertices.tolist() == [[256, 256], [512, 256], [512, 384], [256, 384]]
    assert annotation.classes == (0, 1, 3)
    assert annotation.mpp == 0.5
    features = annotation.geojson()["features"]
    assert [f["properties"]["classification"]["name"] for f in features] == ["benign", "invasive"]
    assert features[0]["geometry"]["coordinates"][0][-1] == [256.0, 256.0]  # closed ring

    # Downsample 4: the benign rectangle covers columns 64..128 and rows 64..96 (outline pixels inside).
    labels = rasterize_bach_xml(path, (192, 256), downsample=4)
    assert labels.dtype == np.uint8 and labels.shape == (192, 256)
    counts = np.bincount(labels.ravel(), minlength=4).tolist()
    assert counts == [192 * 256 - 65 * 33 - 49 * 65, 65 * 33, 0, 49 * 65]
    assert labels[64, 64] == 1 and labels[96, 128] == 1 and labels[63, 64] == 0
    assert labels[64, 144] == 3 and labels[128, 192] == 3 and labels[129, 192] == 0


def test_bach_xml_errors_name_the_file_and_the_region(tmp_path):
    path = tmp_path / "A09.xml"
    path.write_text(_bach_xml([("7", "Tumour", "", _rect(0, 0, 8, 8))]))
    with pytest.raises(DataError, match=r"A09\.xml: region 7 has label 'Tumour'; expected a label containing "
                                        r"'benign', 'in situ' or 'invasive'"):
        read_bach_xml(path)
    path.write_text("<Annotations><Region")
    with pytest.raises(DataError, match=r"A09\.xml is not valid XML"):
        read_bach_xml(path)
    path.write_text("<ASAP_Annotations/>")
    with pytest.raises(DataError, match=r"root element <ASAP_Annotations>; expected <Annotations>"):
        read_bach_xml(path)
    path.write_text(_bach_xml([("3", "Benign", "", [(0, 0), ("x", 4), (4, 4)])]))
    with pytest.raises(DataError, match=r"region 3 has a vertex without numeric X and Y"):
        read_bach_xml(path)
    # A region without area (fewer than 3 vertices) is skipped and recorded, as the rasteriser would.
    path.write_text(_bach_xml([("1", "Benign", "", [(0, 0), (4, 4)]), ("2", "Benign", "", _rect(0, 0, 4, 4))]))
    annotation = read_bach_xml(path)
    assert [r.region_id for r in annotation.regions] == ["2"] and annotation.skipped == ("1",)


def test_bach_part_b_lists_annotated_slides_and_names_what_is_missing(tmp_path):
    root = _write_bach(tmp_path / "bach", photos=False)
    slides = read_bach_part_b(root)
    assert [s.name for s in slides] == ["A01", "A02", "A03"]  # 01.svs has no XML: not annotated
    assert [s.annotation.classes for s in slides] == [(0, 1, 3), (0, 1, 2, 3), (0, 2)]
    assert slides[0].slide_path.name == "A01.svs"

    (root / "WSI" / "A03.svs").unlink()
    with pytest.raises(DataError, match=r"annotation A03\.xml has no slide: expected .*WSI/A03\.svs"):
        read_bach_part_b(root)
    with pytest.raises(DataError, match=r"has no WSI/ folder; expected the unpacked ICIAR2018_BACH_Challenge folder "
                                        r"with WSI/ \(A01\.svs \.\. A10\.svs with A01\.xml \.\. A10\.xml\)"):
        read_bach_part_b(tmp_path / "empty")
    for xml in (root / "WSI").glob("*.xml"):
        xml.unlink()
    with pytest.raises(DataError, match=r"holds no annotation \.xml; expected A01\.xml \.\. A10\.xml"):
        read_bach_part_b(root)


def test_bach_slide_plan_selects_the_slide_with_all_four_classes(tmp_path):
    slides = read_bach_part_b(_write_bach(tmp_path / "bach", photos=False))
    plan = plan_bach_slides(slides, n_train=1, seed=0)
    assert plan.select == ("A02",)  # the only slide with benign, in situ and invasive regions
    assert len(plan.train) == 1 and set(plan.train) | set(plan.test) == {"A01", "A03"}
    assert plan_bach_slides(slides, n_train=1, seed=0) == plan
    assert plan_bach_slides(slides, train=["A03"]) == plan_bach_slides(slides, train=["A03"], select="A02")
    assert plan_bach_slides(slides, train=["A03"]).test == ("A01",)
    with pytest.raises(ConfigError, match=r"slide 'A11' is not an annotated part B slide; expected one of "
                                          r"\['A01', 'A02', 'A03'\]"):
        plan_bach_slides(slides, train=["A11"])
    with pytest.raises(ConfigError, match=r"n_train=2 but 2 slides remain besides selection slide A02"):
        plan_bach_slides(slides, n_train=2)
    with pytest.raises(ConfigError, match=r"no slide among .* has regions of all four classes"):
        plan_bach_slides(slides, train=["A02"])
    with pytest.raises(ConfigError, match=r"no training slide given"):
        plan_bach_slides(slides, train=[], select="A02")
    with pytest.raises(ConfigError, match=r"no part B slide is left for testing"):
        plan_bach_slides(slides, train=["A01", "A03"], select="A02")


def test_prepare_bach_writes_patches_whole_slides_part_a_and_the_split(tmp_path):
    root = _write_bach(tmp_path / "ICIAR2018_BACH_Challenge")
    out = tmp_path / "prepared"
    summary = prepare_bach(root, out, train=["A01"], select="A02", patch_mpp=2.0, patch_size_px=64)
    assert (summary["train"], summary["select"], summary["test"]) == (["A01"], ["A02"], ["A03"])
    assert summary["class_names"] == list(BACH_NAMES)
    assert summary["class_colors"] == [list(c) for c in BACH_COLORS]
    assert summary["mpp"] == 2.0 and summary["part_a_photos"] == 6
    assert summary["slides"]["A02"]["classes"] == [0, 1, 2, 3]
    assert json.loads((out / "split.json").read_text()) == summary
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["A01.geojson", "A02.geojson", "A03.geojson"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["A01.png", "A02.png", "A03.png"]

    # Whole slides at 2 um/px (downsample 4 of the 0.5 um/px level 0), masks drawn by the GeoJSON rasteriser.
    select = MaskSet.from_folder(out / "select", num_classes=4)
    assert select.names == ["A02"] and select.images[0].shape == (192, 256, 3)
    benign, in_situ, invasive = 33 * 33, 33 * 33, 33 * 33
    assert select.class_pixel_counts(4).tolist() == [192 * 256 - benign - in_situ - invasive, benign, in_situ,
                                                     invasive]
    test = MaskSet.from_folder(out / "test", num_classes=4)
    assert test.names == ["A03"] and test.class_pixel_counts(4).tolist() == [192 * 256 - 33 * 33, 0, 33 * 33, 0]
    assert np.array_equal(cv2.imread(str(out / "masks" / "A01.png"), cv2.IMREAD_UNCHANGED),
                          rasterize_bach_xml(root / "WSI" / "A01.xml", (192, 256), 4))

    # Training patches from weakseg-prepare, at the same mpp weakseg-train will read from summary.json.
    train_summary = json.loads((out / "train" / "summary.json").read_text())
    assert train_summary["patch_mpp"] == 2.0
    patches = MaskSet.from_folder(out / "train" / "masks_set", num_classes=4)
    assert len(patches) == summary["train_mask_patches"] > 0
    assert set(np.unique(np.concatenate([m.ravel() for m in patches.masks]))) <= {0, 1, 3}
    part_a = LabelSet.from_folder(out / "part_a", num_classes=4)
    assert part_a.labels == [0, 0, 1, 2, 2, 3] and part_a.images[0].shape == (6, 8, 3)  # 0.42 -> 2.0 um/px

    with pytest.raises(ConfigError, match=r"already holds .* entries"):
        prepare_bach(root, out)


def test_prepare_bach_checks_the_layout_before_writing(tmp_path):
    root = _write_bach(tmp_path / "bach")
    (root / "Photos" / "Benign" / "b001.tif").unlink()
    (root / "Photos" / "Benign").rmdir()
    with pytest.raises(DataError, match=r"lacks the class folder Benign"):
        prepare_bach(root, tmp_path / "out", train=["A01"], select="A02")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- Gleason2019 fixtures

CORES = [f"slide00{1 + i // 3}_core00{1 + i % 3}" for i in range(6)]


def _gleason_map(index: int, pathologist: int) -> np.ndarray:
    """16 x 16 codes: top half benign (1); bottom-left Gleason 3 (both) or 4 (pathologist 2); a 2 x 2 code-6 block."""
    codes = np.zeros((16, 16), np.uint8)
    codes[:8, :] = 1
    codes[8:, :8] = 3 if pathologist == 1 else 4
    codes[8:, 8:] = 5 if index % 2 else 0
    codes[0:2, 0:2] = 6
    return codes


def _write_gleason(root: Path, folder: str = "Train Imgs") -> Path:
    (root / folder).mkdir(parents=True)
    for index, name in enumerate(CORES):
        cv2.imwrite(str(root / folder / f"{name}.jpg"), np.full((16, 16, 3), 100 + 10 * index, np.uint8))
    for pathologist in (1, 2):
        (root / f"Maps{pathologist}_T").mkdir()
        for index, name in enumerate(CORES):
            if pathologist == 1 and index == 5:
                continue  # pathologist 1 did not map the last core
            cv2.imwrite(str(root / f"Maps{pathologist}_T" / f"{name}_classimg_nonconvex.png"),
                        _gleason_map(index, pathologist))
    return root


# ----------------------------------------------------------------------------- Gleason2019


def test_gleason2019_lists_cores_and_each_pathologists_map(tmp_path):
    cores = read_gleason2019(_write_gleason(tmp_path / "Gleason2019"))
    assert [c.name for c in cores] == CORES
    assert [sorted(c.map_paths) for c in cores] == [[1, 2]] * 5 + [[2]]
    assert read_gleason2019(_write_gleason(tmp_path / "copy", folder="Train_imgs"))[0].name == CORES[0]


def test_gleason2019_first_map_class_codes_and_pixel_counts(tmp_path):
    cores = read_gleason2019(_write_gleason(tmp_path / "Gleason2019"))
    first = gleason2019_mask(cores[1])  # pathologist 1: benign 124, Gleason 3 64, Gleason 5 64, code 6 -> 255
    assert np.bincount(first.ravel(), minlength=256)[[0, 1, 2, 3, 4, 255]].tolist() == [0, 124, 64, 0, 64, 4]
    assert first[0, 0] == 255 and first[8, 0] == 2 and first[8, 8] == 4 and first[4, 4] == 1
    last = gleason2019_mask(cores[5])  # no Maps1_T map: the first map is pathologist 2's
    assert np.bincount(last.ravel(), minlength=256)[[0, 1, 2, 3, 4, 255]].tolist() == [0, 124, 0, 64, 64, 4]
    assert gleason2019_mask(cores[5], map=1) is None
    assert gleason2019_mask(cores[0], class_codes={0: 0, 1: 1, 3: 2, 4: 3, 5: 4, 6: 1})[0, 0] == 1
    assert gleason2019_mask(cores[1], downsample=2).shape == (8, 8)


def test_gleason2019_majority_vote_leaves_ties_not_annotated(tmp_path):
    cores = read_gleason2019(_write_gleason(tmp_path / "Gleason2019"))
    vote = gleason2019_mask(cores[1], map="majority")
    # Both say benign (124 px) and Gleason 5 (64 px); Gleason 3 vs 4 is a 1-1 tie; code 6 annotates nothing.
    assert np.bincount(vote.ravel(), minlength=256)[[0, 1, 2, 3, 4, 255]].tolist() == [0, 124, 0, 0, 64, 68]
    assert majority_vote([np.array([[1, 1, 0]], np.uint8), np.array([[1, 2, 255]], np.uint8),
                          np.array([[2, 2, 255]], np.uint8)], 3).tolist() == [[1, 2, 0]]


def test_load_gleason2019_splits_cores_with_classes_colours_and_mpp(tmp_path):
    root = _write_gleason(tmp_path / "Gleason2019")
    split = load_gleason2019(root, downsample=2, seed=0)
    names = split.train.names + split.select.names + split.test.names
    assert sorted(names) == CORES and len(set(names)) == 6
    assert (len(split.train), len(split.select), len(split.test)) == (4, 1, 1)  # 1.5 test cores round to 1
    assert split.class_names == GLEASON_NAMES == ("background", "benign", "Gleason 3", "Gleason 4", "Gleason 5")
    assert split.mpp == 0.5 and split.details["map"] == "first" and split.details["cores_without_map"] == []
    assert all(m.shape == (8, 8) for m in split.train.masks)
    assert load_gleason2019(root, downsample=2, seed=0).train.names == split.train.names  # reproducible

    only_first = load_gleason2019(root, map="1", downsample=2)
    assert only_first.details["cores_without_map"] == [CORES[5]]
    assert CORES[5] not in only_first.train.names + only_first.select.names + only_first.test.names

    out = tmp_path / "prepared"
    summary = prepare_gleason2019(root, out, map="majority", downsample=2)
    assert json.loads((out / "split.json").read_text()) == summary
    assert summary["map"] == "majority" and summary["mpp"] == 0.5
    assert summary["class_colors"][0] == [0, 0, 128]
    counts = sum(MaskSet.from_folder(out / part, num_classes=5).class_pixel_counts(5) for part in
                 ("train", "select", "test"))
    # Per core at 8 x 8: benign 31 px (the 1 x 1 code-6 corner is not annotated); bottom right 16 px background
    # (cores 1, 3, 5) or Gleason 5 (cores 2, 4, 6); bottom left a Gleason 3 / 4 tie, except on core 6, whose
    # only map (pathologist 2's) says Gleason 4.
    assert counts.tolist() == [3 * 16, 6 * 31, 0, 16, 3 * 16]


def test_gleason2019_tile_rule_label_set_of_the_training_pool(tmp_path):
    split = load_gleason2019(_write_gleason(tmp_path / "Gleason2019"), downsample=1, seed=0)
    assert split.train.names == [CORES[0], CORES[2], CORES[4], CORES[5]]
    labels = split.tile_rule_labels(8)
    # 8 px tiles of 16 px cores: top two benign (the code-6 corner counts for nothing); bottom left Gleason 3
    # (Gleason 4 on the last core, mapped by pathologist 2 only); bottom right background (Gleason 5 on the last).
    assert labels.class_counts(5).tolist() == [3, 8, 3, 1, 1]
    assert labels.class_names == GLEASON_NAMES and labels.images[0].shape == (8, 8, 3)
    split.write(tmp_path / "out", label_tiles_px=8)
    assert LabelSet.from_folder(tmp_path / "out" / "train_labels", num_classes=5).labels == labels.labels


def test_gleason2019_errors_name_what_is_missing(tmp_path):
    root = _write_gleason(tmp_path / "g")
    with pytest.raises(DataError, match=r"has no Train Imgs/ folder \(nor Train_imgs/\)"):
        read_gleason2019(tmp_path / "nothing")
    empty = tmp_path / "no-maps"
    (empty / "Train Imgs").mkdir(parents=True)
    cv2.imwrite(str(empty / "Train Imgs" / "slide001_core001.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"has no map folder; expected Maps1_T/ \.\. Maps6_T/"):
        read_gleason2019(empty)

    stray = root / "Maps2_T" / "slide009_core001_classimg_nonconvex.png"
    cv2.imwrite(str(stray), np.zeros((16, 16), np.uint8))
    with pytest.raises(DataError, match=r"map .*slide009_core001_classimg_nonconvex\.png has no core: expected "
                                        r".*Train Imgs/slide009_core001\.jpg"):
        read_gleason2019(root)
    stray.unlink()
    (root / "Maps2_T" / "slide002_core003_classimg_nonconvex.png").unlink()
    with pytest.raises(DataError, match=r"core .*slide002_core003\.jpg has no map in Maps1_T/, Maps2_T/"):
        read_gleason2019(root)

    root = _write_gleason(tmp_path / "codes")
    codes = _gleason_map(0, 1)
    codes[3, 3] = 2
    cv2.imwrite(str(root / "Maps1_T" / f"{CORES[0]}_classimg_nonconvex.png"), codes)
    with pytest.raises(DataError, match=r"slide001_core001_classimg_nonconvex\.png holds code 2; expected "
                                        r"Gleason2019 map codes \[0, 1, 3, 4, 5, 6\]"):
        load_gleason2019(root)
    cv2.imwrite(str(root / "Maps1_T" / f"{CORES[0]}_classimg_nonconvex.png"), np.zeros((8, 16), np.uint8))
    with pytest.raises(DataError, match=r"has shape \(8, 16\) but core slide001_core001\.jpg is \(16, 16\)"):
        load_gleason2019(root)
    with pytest.raises(ConfigError, match=r"map must be 'first', 'majority' or a pathologist in \[1, 2, 3, 4, 5, 6\], "
                                          r"got 'consensus'"):
        load_gleason2019(root, map="consensus")


# ----------------------------------------------------------------------------- DigestPath2019 fixtures

POSITIVES = ["18-03912A_2019-05-07 22_55_07-lv1-13993-9429-2461-4154",
             "18-03912A_2019-05-07 22_55_07-lv1-16713-11566-3121-5791",
             "D201707227_2019-05-14 13_49_08-lv1-7570-2847-5797-5435"]
NEGATIVES = ["2019-06-04 17_51_19-lv1-31593-21857-2805-5089", "2019-06-10 12_32_46-lv1-16547-15918-4321-3621",
             "D20170546301_2019-05-14 12_21_38-lv1-26517-31493-4149-3569"]


def _write_digestpath(root: Path) -> Path:
    positive, negative = root / "tissue-train-pos-v1", root / "tissue-train-neg"
    positive.mkdir(parents=True)
    negative.mkdir(parents=True)
    for index, name in enumerate(POSITIVES):
        cv2.imwrite(str(positive / f"{name}.jpg"), np.full((48, 64, 3), 150, np.uint8))
        mask = np.zeros((48, 64), np.uint8)
        mask[8 : 8 + 8 * (index + 1), 16:32] = 255  # malignant: 128, 256 and 384 px, on JPEG's 8 x 8 blocks
        cv2.imwrite(str(positive / f"{name}_mask.jpg"), mask)
    for name in NEGATIVES:
        cv2.imwrite(str(negative / f"{name}.jpg"), np.full((48, 64, 3), 200, np.uint8))
    # Some tools write empty masks beside the negatives; they are not the challenge's and are ignored.
    cv2.imwrite(str(negative / f"{NEGATIVES[0]}_mask.jpg"), np.full((48, 64), 255, np.uint8))
    return root


# ----------------------------------------------------------------------------- DigestPath2019


def test_digestpath_lists_positives_with_masks_and_negatives_without(tmp_path):
    images = read_digestpath(_write_digestpath(tmp_path / "digestpath"))
    assert [i.name for i in images] == POSITIVES + NEGATIVES
    assert [i.label for i in images] == [1, 1, 1, 0, 0, 0]
    assert [i.mask_path is None for i in images] == [False] * 3 + [True] * 3
    assert [i.slide for i in images][:2] == ["18-03912A_2019-05-07 22_55_07"] * 2
    assert digestpath_slide("2019-06-04 17_51_19-lv1-31593-21857-2805-5089") == "2019-06-04 17_51_19"
    assert digestpath_slide("plain") == "plain"
    nested = tmp_path / "download"
    _write_digestpath(nested / "Colonoscopy_tissue_segment_dataset")
    assert len(read_digestpath(nested)) == 6


def test_load_digestpath_masks_counts_split_by_slide_and_resize(tmp_path):
    root = _write_digestpath(tmp_path / "digestpath")
    native = load_digestpath2019(root, size_px=None, mpp=0.5, seed=0)  # native 0.5 um/px: no resizing
    everything = {n: m for part in (native.train, native.select, native.test) for n, m in zip(part.names, part.masks)}
    assert {n: int(m.sum()) for n, m in everything.items()} == {**dict(zip(POSITIVES, [128, 256, 384])),
                                                                 **dict.fromkeys(NEGATIVES, 0)}
    assert native.class_names == ("benign", "malignant") and native.class_colors == ((0, 0, 128), (128, 0, 0))
    assert native.mpp == 0.5 and native.groups[POSITIVES[1]] == "18-03912A_2019-05-07 22_55_07"
    # The two patches of one slide stay in one set.
    where = {n: part for part, s in (("train", native.train), ("select", native.select), ("test", native.test))
             for n in s.names}
    assert where[POSITIVES[0]] == where[POSITIVES[1]]

    paper = load_digestpath2019(root, seed=0, native_mpp=0.5)  # the paper's 1024 x 1024
    assert paper.mpp is None and paper.details["size_px"] == 1024
    assert paper.details["mpp_per_image"][POSITIVES[0]] == [0.03125, 0.023438]
    square = load_digestpath2019(root, size_px=32, seed=0)  # 64 x 48 -> 32 x 32: columns halved, rows x 2/3
    masks = {n: m for part in (square.train, square.select, square.test) for n, m in zip(part.names, part.masks)}
    assert masks[POSITIVES[0]].shape == (32, 32)
    # Nearest-exact: columns 16..31 -> 8 of 32; rows 8..31 (24) -> 16, output row r reads row floor(1.5 r + 0.75).
    assert int(masks[POSITIVES[2]].sum()) == 8 * 16
    assert square.train.names == native.train.names  # the split does not depend on the size


def test_prepare_digestpath_writes_one_image_at_a_time(tmp_path):
    root = _write_digestpath(tmp_path / "digestpath")
    out = tmp_path / "prepared"
    summary = prepare_digestpath2019(root, out, size_px=32, seed=0)
    assert json.loads((out / "split.json").read_text()) == summary
    assert sorted(summary["positive"]) == sorted(POSITIVES) and summary["mpp"] is None
    in_memory = load_digestpath2019(root, size_px=32, seed=0)
    for part in ("train", "select", "test"):
        written = MaskSet.from_folder(out / part, num_classes=2)
        expected = getattr(in_memory, part)
        assert written.names == summary[part] == expected.names
        assert all(np.array_equal(a, b) for a, b in zip(written.masks, expected.masks))
    malignant = sum(int(MaskSet.from_folder(out / p, num_classes=2).class_pixel_counts(2)[1])
                    for p in ("train", "select", "test"))
    assert malignant == 8 * 6 + 8 * 11 + 8 * 16  # 128, 256, 384 px at 64 x 48 -> 48, 88, 128 at 32 x 32


def test_digestpath_errors_name_what_is_missing(tmp_path):
    root = _write_digestpath(tmp_path / "d")
    with pytest.raises(DataError, match=r"has neither tissue-train-pos-v1/ nor tissue-train-neg/"):
        read_digestpath(tmp_path / "nothing")
    (root / "tissue-train-pos-v1" / f"{POSITIVES[2]}_mask.jpg").unlink()
    with pytest.raises(DataError, match=r"positive image D201707227.*\.jpg has no mask: expected "
                                        r".*tissue-train-pos-v1/D201707227.*_mask\.jpg"):
        read_digestpath(root)
    (root / "tissue-train-pos-v1" / f"{POSITIVES[2]}.jpg").unlink()
    cv2.imwrite(str(root / "tissue-train-pos-v1" / "lonely_mask.jpg"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"mask lonely_mask\.jpg has no image: expected .*lonely\.jpg"):
        read_digestpath(root)
    root = _write_digestpath(tmp_path / "no-neg")
    for path in (root / "tissue-train-neg").iterdir():
        path.unlink()
    (root / "tissue-train-neg").rmdir()
    with pytest.raises(DataError, match=r"has no tissue-train-neg/; expected the negative images \(no masks\)"):
        read_digestpath(root)
    with pytest.raises(ConfigError, match=r"give exactly one of size_px \(the paper's 1024\) and mpp"):
        load_digestpath2019(_write_digestpath(tmp_path / "both"), size_px=1024, mpp=2.0)


# ----------------------------------------------------------------------------- split and command line


def test_grouped_split_keeps_groups_together_and_hits_the_shares():
    names = [f"img{i:02d}" for i in range(40)]
    groups = [f"slide{i // 2}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    train, select, test = plan_grouped_split(names, groups, labels, seed=3)
    assert (len(train), len(select), len(test)) == (20, 10, 10)
    for part in (train, select, test):
        assert {groups[names.index(n)] for n in part}.isdisjoint(
            {groups[names.index(n)] for other in (train, select, test) if other is not part for n in other})
    assert plan_grouped_split(names, groups, labels, seed=3) == (train, select, test)
    with pytest.raises(ConfigError, match=r"fractions must be three shares in \(0, 1\)"):
        plan_grouped_split(names, groups, labels, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match=r"4 images come from 2 groups"):
        plan_grouped_split(names[:4], groups[:4], labels[:4])


def test_weakseg_experiment_prepare_command(tmp_path, capsys):
    root = _write_gleason(tmp_path / "Gleason2019")
    out = tmp_path / "prepared"
    assert experiment_main(["prepare", "gleason2019", str(root), "--out", str(out), "--downsample", "2"]) == 0
    printed = capsys.readouterr().out
    assert "4 train, 1 select, 1 test (images)" in printed
    assert "--label-source tile_rule" in printed and "'background,benign,Gleason 3,Gleason 4,Gleason 5'" in printed
    assert json.loads((out / "split.json").read_text())["map"] == "first"

    assert experiment_main(["prepare", "digestpath2019", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 2
    assert "has neither tissue-train-pos-v1/ nor tissue-train-neg/" in capsys.readouterr().err
