"""SlideSegmenter end to end on small real files: synthetic pyramidal TIFFs and plain images
written here, with tiny hand-built ONNX models whose receptive field is known."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import openslide
import pytest
import tifffile
from _onnx_models import CLASSES, COLOR_BIAS, COLOR_WEIGHTS, COLORS, color_classifier, conv3x3_model
from _slide_files import write_tiled_tiff

from weaksegtf.errors import ConfigError, SlideError
from weaksegtf.inference import SlideSegmenter, load_session, plan_tiles, polygon_area, seam_agreement
from weaksegtf.preprocessing import read_geojson
from weaksegtf.slides import open_slide, write_pyramidal_tiff

SLIDE_MPP = 0.5
INFERENCE_MPP = 1.0  # pyramid level 1 of the slides below: tiles are read without resampling
WHITE, PINK, PURPLE = (245, 245, 245), (230, 120, 170), (120, 80, 200)


def blob_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """White glass, a pink 'stroma' rectangle, purple 'nuclei' discs: three classes the colour model tells apart."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), WHITE, np.uint8)
    image[height // 8 : 7 * height // 8, width // 8 : 7 * width // 8] = PINK
    for _ in range(6):
        centre = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4)))
        cv2.circle(image, centre, int(rng.integers(30, 90)), PURPLE, -1)
    return image


def whole_image_logits(model: Path, image: np.ndarray, plan) -> np.ndarray:
    """One forward pass over the whole image, padded white to the plan's canvas as the tiles are."""
    canvas = np.full((int(plan.ys[-1]) + plan.tile_size_px, int(plan.xs[-1]) + plan.tile_size_px, 3), 255, np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    logits = load_session(model, providers="cpu").run(canvas[None].astype(np.float32))[0]
    return logits[: plan.height_px, : plan.width_px]


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "blobs.tif"
    write_pyramidal_tiff(path, blob_image(1280, 1536), SLIDE_MPP)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"color": color_classifier(folder / "color.onnx", mpp=INFERENCE_MPP, tile_size_px=128),
            "conv": conv3x3_model(folder / "conv.onnx", mpp=INFERENCE_MPP, tile_size_px=64)}


@pytest.fixture(scope="module")
def color_run(slide, models, tmp_path_factory):
    out = tmp_path_factory.mktemp("color_run")
    result = SlideSegmenter(models["color"], tile_size_px=128, overlap_px=32, batch_size=4, probabilities=True,
                            progress=False).segment(slide, out)
    return result


def read_level(path: Path, level: int = 0) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[level].asarray()


# ---------------------------------------------------------------------- stitching
def test_tiled_equals_whole_image_exactly_for_a_5px_receptive_field(slide, models, tmp_path):
    segmenter = SlideSegmenter(models["conv"], tile_size_px=64, overlap_px=16, batch_size=8,
                               probabilities=True, skip_background=False, geojson=False, progress=False)
    result = segmenter.segment(slide, tmp_path)
    plan = plan_tiles(768, 640, 64, 16)
    assert result.summary["output_size_px"] == [768, 640] and result.summary["level_read"] == 1
    with open_slide(slide) as reader:
        image = reader.read_region((0, 0), 1, (768, 640))
    whole = whole_image_logits(models["conv"], image, plan)
    tiled = read_level(tmp_path / "labels.tif")
    assert np.array_equal(tiled, whole.argmax(axis=-1))
    from weaksegtf.inference.stitcher import softmax_uint8

    for index, name in enumerate(CLASSES):
        probabilities = read_level(tmp_path / f"probabilities_{index}_{name}.tif")
        assert np.abs(probabilities.astype(int) - softmax_uint8(whole.copy())[..., index]).max() <= 1


def test_without_overlap_the_same_model_shows_seams(slide, models, tmp_path):
    """The exact match above is the overlap's doing: without it, tile borders lack context."""
    segmenter = SlideSegmenter(models["conv"], tile_size_px=64, overlap_px=0, skip_background=False,
                               geojson=False, progress=False)
    segmenter.segment(slide, tmp_path)
    plan = plan_tiles(768, 640, 64, 0)
    with open_slide(slide) as reader:
        whole = whole_image_logits(models["conv"], reader.read_region((0, 0), 1, (768, 640)), plan).argmax(-1)
    report = seam_agreement(read_level(tmp_path / "labels.tif"), whole, plan, band_px=2)
    assert report["interior_agreement"] == 1.0 and report["seam_agreement"] < 0.99


# ---------------------------------------------------------------------- outputs
def test_label_pyramid_opens_in_openslide_at_the_inference_mpp(color_run):
    out = color_run.out_dir
    with openslide.OpenSlide(str(out / "labels.tif")) as labels:
        assert labels.properties["openslide.vendor"] == "generic-tiff"
        assert float(labels.properties["openslide.mpp-x"]) == pytest.approx(INFERENCE_MPP)
        assert labels.level_dimensions == ((768, 640), (384, 320), (192, 160))
        # Palette colours are the classes' colours: the middle of the slide is pink stroma or purple nuclei.
        colour = tuple(np.asarray(labels.read_region((100, 100), 0, (1, 1)))[0, 0, :3])
        assert colour == COLORS[2]
    for index, name in enumerate(CLASSES):
        with openslide.OpenSlide(str(out / f"probabilities_{index}_{name}.tif")) as probabilities:
            assert probabilities.level_count == 3
    labels = read_level(out / "labels.tif")
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[5, 5] == 0 and labels[100, 100] == 2


def test_geojson_polygons_cover_the_predicted_areas(color_run):
    out = color_run.out_dir
    labels = read_level(out / "labels.tif")
    document = json.loads((out / "annotations.geojson").read_text())
    assert document["type"] == "FeatureCollection"
    scale = color_run.summary["outputs"]["geojson_level0_px_per_px"]
    assert scale == pytest.approx(INFERENCE_MPP / SLIDE_MPP)
    names = {f["properties"]["classification"]["name"] for f in document["features"]}
    assert names == {"nuclei", "stroma"}
    for feature in document["features"]:
        assert feature["properties"]["objectType"] == "annotation"
        assert tuple(feature["properties"]["classification"]["color"]) == COLORS[CLASSES.index(
            feature["properties"]["classification"]["name"])]
        assert all(ring[0] == ring[-1] for ring in feature["geometry"]["coordinates"])
    for index, name in [(1, "nuclei"), (2, "stroma")]:
        polygons = [[np.asarray(ring)[:-1] for ring in f["geometry"]["coordinates"]]
                    for f in document["features"] if f["properties"]["classification"]["name"] == name]
        area_px = sum(polygon_area(p) for p in polygons) / scale**2
        assert area_px == pytest.approx((labels == index).sum(), rel=1e-4)
    # Every pixel centre inside a class's polygons is a pixel of that class, and the other way round.
    from skimage.draw import polygon2mask

    for index, name in [(1, "nuclei"), (2, "stroma")]:
        covered = np.zeros(labels.shape, bool)
        for feature in document["features"]:
            if feature["properties"]["classification"]["name"] == name:
                for ring in feature["geometry"]["coordinates"]:
                    # (x, y) level-0 corners to (row, col) label coordinates with pixel centres on integers.
                    points = np.asarray(ring)[:, ::-1] / scale - 0.5
                    covered ^= polygon2mask(labels.shape, points)
        assert np.array_equal(covered, labels == index)
    # The project's own QuPath reader (weakseg-prepare) reads the file back.
    assert {name for name, _ in read_geojson(out / "annotations.geojson")} == {"nuclei", "stroma"}


def test_summary_has_areas_tiles_providers_timings_and_hash(color_run, slide):
    summary = json.loads((color_run.out_dir / "summary.json").read_text())
    labels = read_level(color_run.out_dir / "labels.tif")
    pixel_mm2 = (INFERENCE_MPP / 1000) ** 2
    for index, name in enumerate(CLASSES):
        assert summary["class_area_mm2"][name] == pytest.approx((labels == index).sum() * pixel_mm2)
    # The tissue (pink rectangle) is 3/4 x 3/4 of a 1536 x 1280 px slide at 0.5 um/px.
    assert summary["tissue_area_mm2"] == pytest.approx(0.75 * 0.768 * 0.75 * 0.64, rel=0.05)
    tiles = summary["tiles"]
    assert tiles["total"] == tiles["run"] + tiles["skipped_background"] and tiles["skipped_background"] > 0
    assert tiles["resumed"] == 0
    assert summary["model"]["providers_in_use"] == ["CPUExecutionProvider"]
    assert len(summary["model"]["sha256"]) == 64
    assert set(summary["timings_s"]) >= {"tissue", "inference", "session", "session_wait", "writing", "total"}
    assert summary["mpp"] == INFERENCE_MPP and summary["slide_mpp"] == pytest.approx(SLIDE_MPP)
    overlay = cv2.imread(str(color_run.out_dir / "overlay.png"))
    assert overlay.shape[:2] == (853, 1024)  # the slide's thumbnail, longer side 1024
    assert not (color_run.out_dir / ".work").exists()


def test_a_complete_slide_is_skipped_on_rerun(color_run, slide, models):
    before = (color_run.out_dir / "labels.tif").stat().st_mtime_ns
    again = SlideSegmenter(models["color"], tile_size_px=128, overlap_px=32, batch_size=4, probabilities=True,
                           progress=False).segment(slide, color_run.out_dir)
    assert again.status == "skipped" and (color_run.out_dir / "labels.tif").stat().st_mtime_ns == before


# ---------------------------------------------------------------------- odd slides
def test_slide_smaller_than_one_tile(models, tmp_path):
    pixels = np.full((30, 40, 3), WHITE, np.uint8)
    pixels[5:25, 5:35] = PINK
    cv2.circle(pixels, (20, 15), 6, PURPLE, -1)
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    # A 40 x 30 um image is below the tissue mask's smallest region (10,000 um2): run it whole.
    result = SlideSegmenter(models["color"], skip_background=False, progress=False).segment(
        image, tmp_path / "out", slide_mpp=INFERENCE_MPP)
    assert result.summary["tiles"]["total"] == 1
    labels = read_level(tmp_path / "out" / "labels.tif")
    assert labels.shape == (30, 40) and result.summary["outputs"]["label_levels_px"] == [[40, 30]]
    # The 1x1 colour model, pixel by pixel:
    assert np.array_equal(labels, (pixels.astype(np.float32) @ COLOR_WEIGHTS.T + COLOR_BIAS).argmax(axis=-1))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_slide_without_tissue_runs_no_tile(models, tmp_path):
    path = tmp_path / "glass.tif"
    write_pyramidal_tiff(path, np.full((600, 800, 3), 250, np.uint8), SLIDE_MPP)
    result = SlideSegmenter(models["color"], probabilities=True, progress=False).segment(path, tmp_path / "out")
    summary = result.summary
    assert summary["tiles"]["run"] == 0 and summary["tiles"]["skipped_background"] == summary["tiles"]["total"]
    assert summary["tissue_area_mm2"] == 0 and summary["outputs"]["geojson_features"] == 0
    assert not read_level(tmp_path / "out" / "labels.tif").any()
    assert (read_level(tmp_path / "out" / "probabilities_0_background.tif") == 255).all()
    assert json.loads((tmp_path / "out" / "annotations.geojson").read_text())["features"] == []


def test_missing_mpp_is_a_clear_error_and_slide_mpp_fixes_it(models, tmp_path):
    path = write_tiled_tiff(tmp_path / "nompp.tif", [blob_image(256, 320)], mpp=None)
    segmenter = SlideSegmenter(models["color"], progress=False)
    with pytest.raises(SlideError, match=r"nompp.tif has no resolution: .*pass mpp= \(or --mpp"):
        segmenter.segment(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = segmenter.segment(path, tmp_path / "out", slide_mpp=SLIDE_MPP)
    assert result.status == "done" and result.summary["output_size_px"] == [160, 128]


def test_model_without_mpp_needs_one(tmp_path):
    model = color_classifier(tmp_path / "m.onnx", mpp=None, tile_size_px=None)
    with pytest.raises(ConfigError, match=r"m.onnx has no mpp in its metadata and none was given"):
        SlideSegmenter(model)
    segmenter = SlideSegmenter(model, mpp=2.0, progress=False)
    assert (segmenter.tile_size_px, segmenter.overlap_px) == (512, 128)  # 4 x 128 px, overlapping by 128 px
    assert (SlideSegmenter(model, mpp=2.0, tile_size_px=256).overlap_px) == 64


def test_an_image_in_memory_is_segmented_like_its_file(slide, models, tmp_path):
    from weaksegtf.slides import ArrayReader

    segmenter = SlideSegmenter(models["color"], tile_size_px=128, overlap_px=32, geojson=False, progress=False)
    with open_slide(slide) as reader:
        level1 = reader.read_region((0, 0), 1, (768, 640))
    from_file = segmenter.segment(slide, tmp_path / "file")
    in_memory = segmenter.segment(ArrayReader(level1, mpp=INFERENCE_MPP), tmp_path / "memory")
    assert in_memory.summary["slide"] == "<<array>>"
    assert np.array_equal(read_level(tmp_path / "memory" / "labels.tif"), read_level(tmp_path / "file" / "labels.tif"))
    assert segmenter.segment(ArrayReader(level1, mpp=INFERENCE_MPP), tmp_path / "memory").status == "done"


# ---------------------------------------------------------------------- GeoJSON simplification
def test_geojson_simplified_in_microns_keeps_labels_and_objects(slide, models, color_run, tmp_path):
    """--geojson-simplify-um: same label pyramid and objects, fewer vertices, every polygon valid and within
    the tolerance of the exact one (converted to level-0 pixels with the slide's mpp)."""
    import shapely

    tolerance_um = 2.0
    result = SlideSegmenter(models["color"], tile_size_px=128, overlap_px=32, batch_size=4, probabilities=True,
                            progress=False, geojson_simplify_um=tolerance_um).segment(slide, tmp_path)
    exact_dir, simple_dir = color_run.out_dir, result.out_dir
    assert (read_level(exact_dir / "labels.tif") == read_level(simple_dir / "labels.tif")).all()
    summary = json.loads((simple_dir / "summary.json").read_text())
    assert summary["outputs"]["geojson_simplify_um"] == tolerance_um
    exact = json.loads((exact_dir / "annotations.geojson").read_text())["features"]
    simple = json.loads((simple_dir / "annotations.geojson").read_text())["features"]
    assert [f["id"] for f in simple] == [f["id"] for f in exact]
    n_exact = sum(len(ring) for f in exact for ring in f["geometry"]["coordinates"])
    n_simple = sum(len(ring) for f in simple for ring in f["geometry"]["coordinates"])
    assert n_simple < 0.7 * n_exact
    for a, b in zip(exact, simple):
        before = shapely.Polygon(a["geometry"]["coordinates"][0], a["geometry"]["coordinates"][1:])
        after = shapely.Polygon(b["geometry"]["coordinates"][0], b["geometry"]["coordinates"][1:])
        assert after.is_valid
        assert after.hausdorff_distance(before) <= tolerance_um / SLIDE_MPP + 1e-6
