"""Tiled inference on the real CMU slide with an exported WeakSegmenter (ResNet-18 trunk, 16x
downsampling, receptive field over 200 px) against one whole-image forward pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from weaksegtf.inference import SlideSegmenter, load_session, plan_tiles, seam_agreement
from weaksegtf.slides import open_slide

TILE_PX = 256
OVERLAP_PX = 128  # 64 px of context around every kept pixel


def _export(folder, **options):
    import keras

    from weaksegtf.export import export_model
    from weaksegtf.models import WeakSegmenter

    keras.utils.set_random_seed(1)
    model = WeakSegmenter(num_classes=3, class_names=["background", "epidermis", "dermis"], **options)
    model(np.zeros((1, 32, 32, 3), "float32"))
    model.save(folder / "model.keras")
    export_model(folder / "model.keras", folder / "model.onnx", mpp=2.0, tile_size_px=64,
                 parity_shapes_px=[(32, 32), (48, 64)], parity_batch_sizes=(1,))
    return folder / "model.onnx"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("cmu_model"))


@pytest.mark.slow
def test_tiled_matches_whole_image_on_the_cmu_slide(exported, cmu_slide, tmp_path):
    _check_tiled_matches_whole_image(exported, cmu_slide, tmp_path)


@pytest.mark.slow
def test_smooth_decoder_tiled_matches_whole_image_on_the_cmu_slide(cmu_slide, tmp_path):
    """The skip decoder with bilinear logits (issue 15) stays seam-free too."""
    (tmp_path / "model_skip").mkdir()
    exported = _export(tmp_path / "model_skip", decoder="skip", upsampling="bilinear")
    _check_tiled_matches_whole_image(exported, cmu_slide, tmp_path / "out")


def _check_tiled_matches_whole_image(exported, cmu_slide, tmp_path):
    with open_slide(cmu_slide) as slide:
        # 4x the slide's 0.499 um/px (about 2 um/px): each tile pixel is the mean of a 4 x 4 block
        # of level 0, exactly as in the whole-image resize below, so both see the same pixels.
        mpp = 4 * slide.mpp
        level0 = slide.read_region((0, 0), 0, slide.dimensions)
    result = SlideSegmenter(exported, mpp=mpp, tile_size_px=TILE_PX, overlap_px=OVERLAP_PX, batch_size=4,
                            skip_background=False, geojson=False, progress=False).segment(cmu_slide, tmp_path)
    width, height = result.summary["output_size_px"]
    assert (width, height) == (555, 742)
    plan = plan_tiles(width, height, TILE_PX, OVERLAP_PX)
    assert plan.n_tiles == 20
    padded = np.full((-(-level0.shape[0] // 4) * 4, -(-level0.shape[1] // 4) * 4, 3), 255, np.uint8)
    padded[: level0.shape[0], : level0.shape[1]] = level0
    image = cv2.resize(padded, (padded.shape[1] // 4, padded.shape[0] // 4), interpolation=cv2.INTER_AREA)
    canvas = np.full((int(plan.ys[-1]) + TILE_PX, int(plan.xs[-1]) + TILE_PX, 3), 255, np.uint8)
    canvas[:height, :width] = image[:height, :width]
    logits = load_session(exported, providers="cpu").run(canvas[None].astype(np.float32))[0]
    whole = logits[:height, :width].argmax(axis=-1)
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        tiled = tif.pages[0].asarray()
    report = seam_agreement(tiled, whole, plan, band_px=2)
    print(f"\nCMU at {mpp:.3f} um/px, {TILE_PX}-px tiles overlapping by {OVERLAP_PX} px: {report}")
    assert len(np.unique(whole)) == 3  # the untrained model still draws all three classes
    assert report["agreement"] >= 0.995
    assert report["seam_agreement"] >= 0.98


@pytest.mark.slow
def test_demo_ends_by_segmenting_a_synthetic_pyramidal_slide(exported, tmp_path):
    """The last step of weakseg-demo, on the exported model above (no training needed)."""
    import json
    import shutil

    import openslide

    from weaksegtf.data import make_synthetic_dataset
    from weaksegtf.demo import _segment_slide
    from weaksegtf.training import TrainingResult

    shutil.copy(exported, tmp_path / "model.onnx")
    result = TrainingResult(tmp_path / "model.keras", tmp_path / "history.csv", tmp_path / "metrics.json", None)
    images, _ = make_synthetic_dataset(n_images=6, size_px=128, seed=0)
    _segment_slide(result, images.images, mpp=2.0, seed=0)
    out = tmp_path / "slide" / "segmentation"
    for name in ["labels.tif", "overlay.png", "annotations.geojson", "summary.json",
                 "probabilities_0_background.tif", "probabilities_1_epidermis.tif", "probabilities_2_dermis.tif"]:
        assert (out / name).is_file(), name
    with openslide.OpenSlide(str(tmp_path / "slide" / "demo_slide.tif")) as slide:
        assert slide.dimensions == (1024, 1024) and slide.level_count == 3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["slide"]["tiles"]["run"] > 0 and metrics["slide"]["providers"] == ["CPUExecutionProvider"]
