"""End to end: slides plus annotations to the trainer's folders, library and CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _slide_files import pyramid_levels, tissue_image, write_tiled_tiff

from weaksegtf.cli.prepare import main
from weaksegtf.errors import ConfigError, DataError, OutputError, SlideError
from weaksegtf.preprocessing import PreparationWarning, prepare_patches, read_manifest
from weaksegtf.slides import open_slide

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_GEOJSON = REPO / "docs" / "examples" / "CMU-1-Small-Region.geojson"


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image[:, :, ::-1] if image.ndim == 3 else image


@pytest.fixture(scope="module")
def slide_and_mask(tmp_path_factory) -> tuple[Path, Path]:
    """A 1024 x 1024 px slide at 0.5 um/px (levels 0.5, 1, 2 um/px) and its labels.

    At 2 um/px the slide is 256 x 256 px: sixteen 64-px tiles. Tissue fills
    rows 64..191 and columns 32..223, so four tiles hold only tissue and the
    four beside them are half glass. The labels (at 2 um/px) are class 1 in
    tile (64, 64), class 2 in the top half of tile (128, 128), else 0.
    """
    folder = tmp_path_factory.mktemp("prepare")
    slide = write_tiled_tiff(folder / "slide.tif", pyramid_levels(tissue_image(1024, 1024), 3), 0.5)
    labels = np.zeros((256, 256), np.uint8)
    labels[64:128, 64:128] = 1
    labels[128:160, 128:192] = 2
    cv2.imwrite(str(folder / "slide_labels.png"), labels)
    return slide, folder / "slide_labels.png"


def test_prepare_writes_the_trainer_folders(tmp_path, slide_and_mask):
    slide, mask = slide_and_mask
    out = tmp_path / "out"
    summary = prepare_patches([slide], [mask], out, patch_mpp=2.0, patch_size_px=64)

    # Centred: one patch per region (both fit in 64 px), level-0 top-left
    # corners (256, 256) and (512, 448). Tiled: (256,256) -> label 1,
    # (512,256) and (256,512) -> label 0, (512,512) -> mask with classes 0 and 2.
    records = read_manifest(out / "manifest.csv")
    table = [(r.source, r.set, r.x_px, r.y_px, r.label, r.classes) for r in records]
    assert table == [
        ("centred", "masks_set", 256, 256, None, "1"),
        ("centred", "masks_set", 512, 448, None, "0 2"),
        ("tiled", "label_set", 256, 256, 1, "1"),
        ("tiled", "label_set", 512, 256, 0, "0"),
        ("tiled", "label_set", 256, 512, 0, "0"),
        ("tiled", "masks_set", 512, 512, None, "0 2"),
    ]
    assert {(r.level, r.mpp, r.patch_size_px) for r in records} == {(2, 2.0, 64)}
    assert summary.label_patches_per_class == {0: 2, 1: 1}
    assert (summary.mask_patches, summary.label_patches) == (3, 3)

    # Mask set: images/ and masks/ with the same names; masks are class indices.
    images = sorted(p.name for p in (out / "masks_set" / "images").glob("*.png"))
    assert images == sorted(p.name for p in (out / "masks_set" / "masks").glob("*.png"))
    assert images == [
        "slide_x256_y256_centred.png", "slide_x512_y448_centred.png", "slide_x512_y512_tiled.png",
    ]
    tiled_mask = read_png(out / "masks_set" / "masks" / "slide_x512_y512_tiled.png")
    assert tiled_mask.dtype == np.uint8 and tiled_mask.shape == (64, 64)
    assert (tiled_mask[:32] == 2).all() and (tiled_mask[32:] == 0).all()
    centred_mask = read_png(out / "masks_set" / "masks" / "slide_x512_y448_centred.png")
    assert (centred_mask[16:48] == 2).all() and (centred_mask[:16] == 0).all()

    # Label set: labels.csv with paths relative to label_set/.
    with (out / "label_set" / "labels.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "label"]
    assert rows[1:] == [
        ["images/slide_x256_y256_tiled.png", "1"],
        ["images/slide_x512_y256_tiled.png", "0"],
        ["images/slide_x256_y512_tiled.png", "0"],
    ]
    # Pixels are the slide read at 2 um/px, written as RGB (not BGR).
    with open_slide(slide) as reader:
        expected = reader.read_at_mpp((512, 256), (64, 64), 2.0)
    np.testing.assert_array_equal(read_png(out / "label_set" / rows[2][0]), expected)

    assert (out / "thumbnails" / "slide.png").is_file()
    assert read_png(out / "thumbnails" / "slide_tissue.png").dtype == np.uint8
    assert json.loads((out / "summary.json").read_text())["mask_patches"] == 3


def test_the_trainer_reads_what_prepare_writes(tmp_path, slide_and_mask):
    from weaksegtf.data import LabelSet, MaskSet

    slide, mask = slide_and_mask
    out = tmp_path / "out"
    prepare_patches([slide], [mask], out, patch_mpp=2.0, patch_size_px=64)
    assert len(MaskSet.from_folder(out / "masks_set", num_classes=3)) == 3
    label_set = LabelSet.from_folder(out / "label_set", num_classes=3)
    assert label_set.labels == [1, 0, 0]


def test_slides_sharing_a_name_get_the_hashed_name_of_weakseg_infer(tmp_path, slide_and_mask):
    from weaksegtf.output_names import input_hash

    slide, mask = slide_and_mask
    other = tmp_path / "other" / slide.name
    other.parent.mkdir()
    other.write_bytes(slide.read_bytes())
    out = tmp_path / "out"
    prepare_patches([slide, other], [mask, mask], out, patch_mpp=2.0, patch_size_px=64, extraction="centred")
    second = f"slide-{input_hash(other)}"
    assert sorted(p.name for p in (out / "thumbnails").iterdir()) == sorted(
        ["slide.png", "slide_tissue.png", f"{second}.png", f"{second}_tissue.png"])
    names = sorted(p.name for p in (out / "masks_set" / "images").iterdir())
    assert names == sorted(["slide_x256_y256_centred.png", "slide_x512_y448_centred.png",
                            f"{second}_x256_y256_centred.png", f"{second}_x512_y448_centred.png"])
    with pytest.raises(ConfigError, match="slide .*slide.tif is given more than once"):
        prepare_patches([slide, slide], [mask, mask], tmp_path / "twice")


def test_extraction_modes_and_overwrite(tmp_path, slide_and_mask):
    slide, mask = slide_and_mask
    out = tmp_path / "out"
    summary = prepare_patches([slide], [mask], out, patch_mpp=2.0, patch_size_px=64, extraction="centred")
    assert (summary.mask_patches, summary.label_patches) == (2, 0)
    with pytest.raises(OutputError, match="is not empty .holds label_set, manifest.csv, masks_set"):
        prepare_patches([slide], [mask], out, patch_mpp=2.0, patch_size_px=64)
    summary = prepare_patches(
        [slide], [mask], out, patch_mpp=2.0, patch_size_px=64, extraction="tiles", overwrite=True
    )
    assert (summary.mask_patches, summary.label_patches) == (1, 3)
    assert len(list((out / "masks_set" / "images").glob("*.png"))) == 1  # old files are gone


def test_cli_writes_files_and_reports_counts(tmp_path, slide_and_mask, capsys):
    slide, mask = slide_and_mask
    out = tmp_path / "cli"
    code = main([str(slide), "--masks", str(mask), "--out", str(out), "--patch-mpp", "2",
                 "--patch-size", "64", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 3 mask patches and 3 label patches" in printed
    assert printed.splitlines()[0].split() == ["class", "label", "patches", "mask", "patches", "mask", "pixels"]
    assert len(read_manifest(out / "manifest.csv")) == 6


def test_cli_reports_bad_input_without_a_traceback(tmp_path, slide_and_mask, capsys):
    slide, _ = slide_and_mask
    wrong = tmp_path / "wrong.png"
    cv2.imwrite(str(wrong), np.zeros((100, 300), np.uint8))
    code = main([str(slide), "--masks", str(wrong), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: annotation mask wrong.png is 300x100 px")
    assert "slide slide.tif is 1024x1024 px" in error and "Traceback" not in error
    assert not (tmp_path / "o" / "manifest.csv").exists()


def test_cli_help_is_fast_and_lists_options():
    result = subprocess.run(
        [sys.executable, "-m", "weaksegtf.cli.prepare", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "--patch-mpp" in result.stdout and "--class-map" in result.stdout


def test_cli_on_the_real_slide_with_the_example_geojson(tmp_path, cmu_slide):
    # The README's command.
    out = tmp_path / "cmu"
    result = subprocess.run(
        [sys.executable, "-m", "weaksegtf.cli.prepare", str(cmu_slide),
         "--masks", str(EXAMPLE_GEOJSON), "--class-map", "Epidermis=1,Dermis=2", "--outside", "0",
         "--patch-mpp", "1.0", "--patch-size", "128", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CMU-1-Small-Region.svs" in result.stderr  # progress
    records = read_manifest(out / "manifest.csv")
    assert {r.set for r in records} == {"masks_set", "label_set"}
    assert {r.label for r in records if r.set == "label_set"} <= {0, 1, 2}
    for record in records:
        image = read_png(out / record.path)
        assert image.shape == (128, 128, 3)
        if record.set == "masks_set":
            mask = read_png(out / "masks_set" / "masks" / Path(record.path).name)
            assert set(np.unique(mask)) <= {0, 1, 2, 255}
    assert (out / "thumbnails" / "CMU-1-Small-Region.png").is_file()


# ---------------------------------------------------------------------- edge cases
def test_slide_smaller_than_one_patch(tmp_path):
    image = np.full((40, 50, 3), (200, 120, 180), np.uint8)
    cv2.imwrite(str(tmp_path / "tiny.png"), image[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "tiny_mask.png"), np.ones((40, 50), np.uint8))
    summary = prepare_patches(
        [tmp_path / "tiny.png"], [tmp_path / "tiny_mask.png"], tmp_path / "out",
        mpp=8.0, patch_mpp=8.0, patch_size_px=64, extraction="tiles",
    )
    assert summary.label_patches_per_class == {1: 1}
    patch = read_png(tmp_path / "out" / "label_set" / "images" / "tiny_x0_y0_tiled.png")
    assert patch.shape == (64, 64, 3)
    np.testing.assert_array_equal(patch[:40, :50], image)
    assert (patch[40:] == 255).all() and (patch[:, 50:] == 255).all()  # padded with glass


def test_slide_without_tissue_gives_zero_patches_and_a_warning(tmp_path):
    cv2.imwrite(str(tmp_path / "glass.png"), np.full((200, 200, 3), 248, np.uint8))
    cv2.imwrite(str(tmp_path / "glass_mask.png"), np.ones((200, 200), np.uint8))
    with pytest.warns(PreparationWarning, match="glass.png has no tissue"):
        summary = prepare_patches(
            [tmp_path / "glass.png"], [tmp_path / "glass_mask.png"], tmp_path / "out",
            mpp=2.0, patch_mpp=2.0, patch_size_px=32,
        )
    assert (summary.mask_patches, summary.label_patches) == (0, 0)
    assert len(summary.warnings) == 1
    assert (tmp_path / "out" / "label_set" / "labels.csv").read_text().strip() == "path,label"
    assert read_manifest(tmp_path / "out" / "manifest.csv") == []


def test_stain_reference_normalises_patches(tmp_path, slide_and_mask, cmu_slide):
    slide, mask = slide_and_mask
    with open_slide(cmu_slide) as reader:
        reference = reader.read_region((1100, 1800), 0, (256, 256))
    cv2.imwrite(str(tmp_path / "reference.png"), reference[:, :, ::-1])
    out = tmp_path / "out"
    prepare_patches([slide], [mask], out, patch_mpp=2.0, patch_size_px=64, extraction="tiles",
                    stain_reference=tmp_path / "reference.png")
    assert (out / "stain_normalizer.json").is_file()
    with open_slide(slide) as reader:
        raw = reader.read_at_mpp((512, 256), (64, 64), 2.0)
    written = read_png(out / "label_set" / "images" / "slide_x512_y256_tiled.png")
    assert np.abs(written.astype(int) - raw).mean() > 5


# ---------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_file(tmp_path, slide_and_mask, cmu_slide):
    slide, mask = slide_and_mask
    out = tmp_path / "never"

    wrong = tmp_path / "wide.png"
    cv2.imwrite(str(wrong), np.zeros((100, 300), np.uint8))
    with pytest.raises(DataError, match=r"wide.png is 300x100 px \(aspect 3.0000\) but slide slide.tif"):
        prepare_patches([slide], [wrong], out)

    geojson = tmp_path / "ann.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Necrosis"}},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]}}]}))
    with pytest.raises(DataError, match=r"ann.geojson: feature 0 has class 'Necrosis'"):
        prepare_patches([slide], [geojson], out, class_map={"Tumor": 1})
    with pytest.raises(ConfigError, match="ann.geojson is GeoJSON but no class map"):
        prepare_patches([slide], [geojson], out)

    no_mpp = write_tiled_tiff(tmp_path / "no_mpp.tif", pyramid_levels(tissue_image(512, 512), 1), None)
    small_mask = tmp_path / "small.png"
    cv2.imwrite(str(small_mask), np.zeros((64, 64), np.uint8))
    with pytest.raises(SlideError, match=r"no_mpp.tif has no resolution.*--mpp"):
        prepare_patches([no_mpp], [small_mask], out)

    cut = tmp_path / "cut.svs"
    cut.write_bytes(cmu_slide.read_bytes()[:500_000])
    with pytest.raises(SlideError, match=r"cut.svs: it is corrupt or truncated"):
        prepare_patches([cut], [mask], out)

    text = tmp_path / "readme.svs"
    text.write_text("not a slide")
    with pytest.raises(SlideError, match=r"readme.svs: it is not a slide"):
        prepare_patches([text], [mask], out)

    with pytest.raises(ConfigError, match="got 2 slides but 1 annotation masks"):
        prepare_patches([slide, slide], [mask], out)
    assert not out.exists()  # every check ran before anything was written

    summary = prepare_patches([no_mpp], [small_mask], out, mpp=0.5, patch_mpp=2.0, patch_size_px=32)
    assert summary.slides[0].mpp == 0.5
