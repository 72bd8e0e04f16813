"""The pieces of weakseg-infer on tiny hand-made inputs: tile plan, tile store, checkpoint,
polygons, TIFF pyramid, inputs, session, and the no-TensorFlow guarantee."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from _onnx_models import color_classifier

from weaksegtf.errors import ConfigError, ModelFileError
from weaksegtf.inference import (
    Checkpoint,
    TileStore,
    find_inputs,
    load_session,
    mask_polygons,
    plan_tiles,
    polygon_area,
    seam_agreement,
    tissue_tiles,
    write_tiff_pyramid,
)
from weaksegtf.output_names import input_hash, output_names
from weaksegtf.slides.pyramid_tiff import pyramid_sizes


def test_inference_never_imports_tensorflow_or_keras(tmp_path):
    """Run a whole slide, then look at sys.modules (tests/test_import_boundary.py checks the imports)."""
    model = color_classifier(tmp_path / "m.onnx", mpp=1.0, tile_size_px=32)
    image = tmp_path / "tile.png"
    import cv2

    cv2.imwrite(str(image), np.full((40, 50, 3), 128, np.uint8))
    code = (
        "import sys\n"
        + "from weaksegtf.inference import SlideSegmenter\n"
        + f"SlideSegmenter({str(model)!r}, progress=False).segment({str(image)!r}, {str(tmp_path / 'out')!r}, slide_mpp=1.0)\n"
        + "print(','.join(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'weaksegtf.export', 'weaksegtf.training',"
        + " 'weaksegtf.data') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"
    assert (tmp_path / "out" / "summary.json").is_file()


# ---------------------------------------------------------------------- tile plan
def test_plan_tiles_exact_coordinates():
    # 200 x 100 px, 64-px tiles, 32-px overlap: padded to 208 x 112, stride 32, last tile flush.
    plan = plan_tiles(200, 100, 64, 32)
    assert plan.xs.tolist() == [0, 32, 64, 96, 128, 144]
    assert plan.ys.tolist() == [0, 32, 48]
    # Borders in the middle of each overlap: (0 + 64 + 32) // 2 = 48, ...; the last ones clip to the image.
    assert plan.x_cuts.tolist() == [0, 48, 80, 112, 144, 168, 200]
    assert plan.y_cuts.tolist() == [0, 48, 72, 100]
    assert plan.n_tiles == 18 and plan.origin(7) == (32, 32) and plan.owned_box(7) == (48, 48, 80, 72)


@pytest.mark.parametrize(("width", "height", "tile", "overlap"),
                         [(555, 742, 128, 32), (1000, 17, 64, 16), (33, 33, 32, 16), (48, 48, 48, 0)])
def test_owned_boxes_tile_the_image_once_with_half_the_overlap_as_context(width, height, tile, overlap):
    plan = plan_tiles(width, height, tile, overlap)
    cover = np.zeros((height, width), np.int32)
    for index, (x0, y0, x1, y1) in enumerate(plan.owned_boxes()):
        cover[y0:y1, x0:x1] += 1
        ox, oy = plan.origin(index)
        assert ox % 16 == 0 and oy % 16 == 0
        if x1 > x0 and y1 > y0:
            # Context on each side, except where the owned box reaches the image edge.
            assert x0 == 0 or x0 - ox >= overlap // 2
            assert y0 == 0 or y0 - oy >= overlap // 2
            assert x1 == width or ox + tile - x1 >= overlap // 2
            assert y1 == height or oy + tile - y1 >= overlap // 2
    assert (cover == 1).all()


def test_slide_smaller_than_one_tile_gets_one_padded_tile():
    plan = plan_tiles(20, 30, 64, 16)
    assert plan.n_tiles == 1 and plan.owned_box(0) == (0, 0, 20, 30)


@pytest.mark.parametrize(("tile", "overlap", "match"), [(100, 16, "multiple of 16"), (64, 24, "overlap_px"),
                                                        (64, 64, "overlap_px"), (0, 0, "tile_size_px")])
def test_plan_refuses_sizes_off_the_16_px_grid(tile, overlap, match):
    with pytest.raises(ConfigError, match=match):
        plan_tiles(500, 500, tile, overlap)


def test_tissue_tiles_skips_owned_boxes_without_tissue():
    plan = plan_tiles(128, 64, 64, 0)  # two tiles side by side

    def fractions(boxes):  # tissue only in the left half of level 0 (scale 2: 256 px wide)
        return np.where(boxes[:, 0] < 128, 1.0, 0.0)

    assert tissue_tiles(plan, fractions, 2.0).tolist() == [True, False]


# ---------------------------------------------------------------------- tile store and checkpoint
def test_tile_store_round_trip_and_reopen(tmp_path):
    plan = plan_tiles(203, 117, 48, 16)
    image = np.random.default_rng(0).integers(0, 256, (117, 203, 2)).astype(np.uint8)
    with TileStore(tmp_path / "s.bin", plan, channels=2) as store:
        for index, (x0, y0, x1, y1) in enumerate(plan.owned_boxes()):
            store.write_tile(index, image[y0:y1, x0:x1])
        assert np.array_equal(np.concatenate([store.read_rows(y, y + 37) for y in range(0, 117, 37)]), image)
        with pytest.raises(ConfigError, match=r"tile 0 crop has shape \(2, 2, 2\); expected"):
            store.write_tile(0, np.zeros((2, 2, 2), np.uint8))
    assert (tmp_path / "s.bin").stat().st_size == image.size
    with TileStore(tmp_path / "s.bin", plan, channels=2) as again:  # same geometry: data kept (resume)
        assert np.array_equal(again.read_rows(0, 117), image)


def test_checkpoint_records_flushed_tiles_and_restarts_on_new_settings(tmp_path):
    flushed = []

    class Store:
        def flush(self):
            flushed.append(True)

    checkpoint = Checkpoint(tmp_path, {"model": "a"}, n_tiles=10, interval_s=0)
    checkpoint.mark([3, 4])
    checkpoint.commit([Store()])
    checkpoint.mark([7])  # never committed: redone after a kill
    checkpoint.close()
    assert flushed == [True]
    with open(tmp_path / "done.u32", "ab") as handle:
        handle.write(b"\x09\x00")  # a record cut short by SIGKILL
    again = Checkpoint(tmp_path, {"model": "a"}, n_tiles=10)
    assert np.flatnonzero(again.done).tolist() == [3, 4] and again.resumed_tiles == 2
    again.close()
    other = Checkpoint(tmp_path, {"model": "b"}, n_tiles=10)
    assert not other.done.any()
    other.close()


# ---------------------------------------------------------------------- polygons
def test_polygons_follow_pixel_edges_with_holes():
    mask = np.array([
        [1, 1, 1, 1, 0],
        [1, 0, 0, 1, 0],
        [1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ], bool)
    polygons = mask_polygons(mask)
    assert len(polygons) == 2
    ring = sorted(polygons, key=lambda p: -polygon_area(p))[0]
    assert sorted(map(tuple, ring[0].tolist())) == [(0, 0), (0, 3), (4, 0), (4, 3)]
    assert sorted(map(tuple, ring[1].tolist())) == [(1, 1), (1, 2), (3, 1), (3, 2)]
    assert polygon_area(ring) == 10
    # The lone pixel touches the ring at corner (4, 3) only.
    assert sorted(polygon_area(p) for p in polygons) == [1, 10]


def test_polygon_area_equals_pixel_count_on_random_masks():
    import cv2

    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = rng.integers(1, 40, 2)
        mask = rng.random((height, width)) < rng.random()
        if trial % 2:
            mask = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (5, 5), 0) > 0.5
        assert sum(polygon_area(p) for p in mask_polygons(mask)) == mask.sum()


# ---------------------------------------------------------------------- TIFF pyramid
def test_tiff_pyramid_opens_in_openslide_with_mpp_levels_and_class_values(tmp_path):
    import openslide

    labels = ((np.arange(700)[:, None] // 100 + np.arange(900)[None, :] // 90) % 3).astype(np.uint8)
    counted = []
    info = write_tiff_pyramid(tmp_path / "l.tif", lambda a, b: labels[a:b], 900, 700, mpp=2.0,
                              colormap=[(240, 240, 240), (220, 40, 40), (40, 170, 60)], keep_max_px=500,
                              on_rows=lambda strip: counted.append(strip.size))
    assert info.level_sizes == pyramid_sizes(900, 700) == [(900, 700), (450, 350), (225, 175)]
    assert info.kept_level == 1 and np.array_equal(info.kept, labels[::2, ::2])
    assert sum(counted) == labels.size
    assert not list(tmp_path.glob(".*raw"))  # temporary level files are gone
    with openslide.OpenSlide(str(tmp_path / "l.tif")) as slide:
        assert slide.properties["openslide.vendor"] == "generic-tiff"
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(2.0)
        assert slide.level_dimensions == ((900, 700), (450, 350), (225, 175))
        assert tuple(np.asarray(slide.read_region((95, 5), 0, (1, 1)))[0, 0]) == (220, 40, 40, 255)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert np.array_equal(tif.pages[0].asarray(), labels)
        assert np.array_equal(tif.pages[2].asarray(), labels[::4, ::4])


def test_probability_levels_are_rounded_2x2_means(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (21, 19)).astype(np.uint8)
    write_tiff_pyramid(tmp_path / "p.tif", lambda a, b: image[a:b], 19, 21, 1.0, kind="probabilities", tile_size_px=16)
    # Odd sides repeat their last row and column; means round half up.
    padded = np.pad(image, ((0, 1), (0, 1)), mode="edge").astype(np.int64)
    expected = (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2] + 2) // 4
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert [page.shape for page in tif.pages] == [(21, 19), (11, 10)]
        assert np.array_equal(tif.pages[1].asarray(), expected)


# ---------------------------------------------------------------------- inputs and session
def test_find_inputs_expands_folders_and_globs_and_keeps_missing_files(tmp_path):
    for name in ("b.svs", "a.tif", "notes.txt", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"x")
    found = find_inputs([tmp_path, str(tmp_path / "sub" / "*.png"), tmp_path / "missing.svs", tmp_path / "b.svs"])
    assert [p.name for p in found] == ["a.tif", "b.svs", "c.png", "a.png", "missing.svs"]
    second_a = f"a-{input_hash(tmp_path / 'sub' / 'a.png')}"
    assert output_names(found) == ["a", "b", "c", second_a, "missing"]
    # The clash is settled by the inputs' own paths, not by which others are in the run.
    assert output_names([tmp_path / "sub" / "a.png"], lambda name: str(tmp_path / "a.tif") if name == "a" else None) \
        == [second_a]


def test_session_is_created_once_and_reports_providers(tmp_path):
    model = color_classifier(tmp_path / "m.onnx")
    first = load_session(model, providers="cpu", threads=1)
    assert load_session(model, providers=["CPUExecutionProvider"], threads=1) is first
    assert first.providers_in_use == ["CPUExecutionProvider"] and first.warning is None
    assert first.metadata.class_names == ("background", "nuclei", "stroma")
    assert len(first.model_sha256) == 64
    with pytest.raises(ConfigError, match=r"NoSuchExecutionProvider is not in this onnxruntime build .* has"):
        load_session(model, providers="NoSuchExecutionProvider")
    (tmp_path / "bad.onnx").write_text("not a model")
    with pytest.raises(ModelFileError, match=r"cannot open .*bad.onnx as an ONNX model"):
        load_session(tmp_path / "bad.onnx")


def test_seam_agreement_separates_border_band_from_interior():
    plan = plan_tiles(64, 32, 32, 16)  # one vertical border at x = 24 and 40
    whole = np.zeros((32, 64), np.uint8)
    tiled = whole.copy()
    tiled[:, 24] = 1  # a seam
    report = seam_agreement(tiled, whole, plan, band_px=1)
    assert report["interior_agreement"] == 1.0 and report["seam_agreement"] < 1.0
    assert json.dumps(report)


def test_default_tiling_gives_every_kept_pixel_a_training_tile_of_context():
    from weaksegtf.inference.slide_segmenter import default_tiling

    assert default_tiling(128) == (512, 128)  # 4 t tiles, overlap t: t / 2 of context each side
    assert default_tiling(None) == (512, 128)
    assert default_tiling(128, tile_size_px=256) == (256, 64)
    assert default_tiling(128, tile_size_px=32) == (32, 16)
