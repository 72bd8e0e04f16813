"""The main job on a built-in default: train S+C on a synthetic H&E set (or GlaS) and show the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weaksegtf.training import TrainingResult, run_training

# The synthetic images have no physical scale; the demo declares them 1 um/px (in the model
# card, so the exported model and its demo slide agree). GlaS's mpp comes from load_glas.
SYNTHETIC_DEMO_MPP = 1.0
DEMO_SLIDE_PX = 1024
COMMAND = "weakseg-demo"
#: What the demo writes beside run_training's outputs.
DEMO_OUTPUTS = ("model.onnx", "slide")


def run_demo(
    out_dir: str | Path = "weakseg-demo",
    glas: str | Path | None = None,
    mode: str = "S+C",
    epochs: int | None = None,
    n_images: int = 160,
    n_val: int = 32,
    masked: int | float | None = None,
    tile_size_px: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    verbose: int | str = 2,
    export_onnx: bool = True,
    segment_slide: bool = True,
    overwrite: bool = False,
) -> TrainingResult:
    """Train a weak segmenter end to end and write model, metrics and an overlay PNG.

    With ``glas=None`` a synthetic H&E-like set is generated (no download):
    ``n_images`` training images of which ``masked`` (default 20%) keep their
    masks and the rest only their label, plus ``n_val`` validation images. With
    ``glas`` pointing at the GlaS training folder, the patient-wise GlaS split
    is used instead (``masked`` defaults to 7 images, 2x downsampling).

    Args:
        out_dir: str or path. Output folder. Defaults to ``"weakseg-demo"``.
        glas: str or path, optional. GlaS training folder. Defaults to ``None``.
        mode: str. ``"S"``, ``"S+C"``, ``"S+C*"`` or ``"C"``. Defaults to ``"S+C"``.
        epochs: int, optional. Defaults to 12 (synthetic) or 15 (GlaS).
        n_images: int. Synthetic training images. Defaults to ``160``.
        n_val: int. Synthetic validation images. Defaults to ``32``.
        masked: int or float, optional. Masked training images (count or fraction).
        tile_size_px: int. Training tile side. Defaults to ``128``.
        learning_rate: float. Adam learning rate. Defaults to ``1e-3``: ten times
            the paper's 1e-4, because the demo trains for a few hundred steps
            instead of 100 epochs, and at 1e-4 the 80-weight classifier barely
            moves in that time.
        seed: int. Seed of data generation, split and training. Defaults to ``0``.
        export_onnx: bool. End with ``model.onnx`` beside ``model.keras``, checked
            against Keras (``weaksegtf.export.export_model``); its parity numbers
            go into ``metrics["onnx"]`` and ``metrics.json``. Defaults to ``True``.
        segment_slide: bool. After the export, tile validation images onto a
            1024 x 1024 px pyramidal slide (``slide/demo_slide.tif``) and segment
            it with ``model.onnx`` and ``weaksegtf.inference.SlideSegmenter``,
            writing every output into ``slide/segmentation/``; a summary goes into
            ``metrics["slide"]``. Needs ``export_onnx``. Defaults to ``True``.
        overwrite: bool. Accept a non-empty ``out_dir``, replacing what weaksegtf
            wrote there (``weaksegtf.output_guard.OutputFolder``). Defaults to ``False``.
    """
    from weaksegtf.data import (
        GLAS_CLASS_NAMES,
        SYNTHETIC_CLASS_NAMES,
        LabelSet,
        load_glas,
        make_synthetic_dataset,
    )
    from weaksegtf.output_guard import OutputFolder
    from weaksegtf.training.outputs import TRAINING_OUTPUTS

    folder = OutputFolder(Path(out_dir), COMMAND, overwrite=overwrite)
    folder.check(TRAINING_OUTPUTS + DEMO_OUTPUTS)

    if glas is not None:
        split = load_glas(glas, masked=7 if masked is None else masked, seed=seed)
        result = run_training(
            split.train_masks, split.train_labels, split.val, out_dir,
            class_names=GLAS_CLASS_NAMES, mode=mode, tile_size_px=tile_size_px,
            epochs=15 if epochs is None else epochs, learning_rate=learning_rate, seed=seed, verbose=verbose,
            model_card={"mpp": split.mpp, "mpp_source": f"GlaS adapter (load_glas, {glas})"}, overwrite=overwrite,
        )
        return _finish(result, folder, export_onnx, segment_slide, split.val.images, split.mpp, glas, seed, overwrite)

    everything, labels = make_synthetic_dataset(n_images=n_images + n_val, size_px=tile_size_px, seed=seed)
    val = everything.subset(range(n_images, n_images + n_val))
    masked = 0.2 if masked is None else masked
    n_masked = int(masked) if masked >= 1 else max(1, round(masked * n_images))
    order = np.random.default_rng(seed).permutation(n_images)
    train_masks = everything.subset(order[:n_masked])
    label_rows = order[n_masked:]
    train_labels = LabelSet(
        [everything.images[i] for i in label_rows],
        [int(labels[i]) for i in label_rows],
        [everything.names[i] for i in label_rows],
        tuple(SYNTHETIC_CLASS_NAMES),
    )
    result = run_training(
        train_masks, train_labels, val, out_dir,
        class_names=SYNTHETIC_CLASS_NAMES, mode=mode, tile_size_px=tile_size_px,
        epochs=12 if epochs is None else epochs, learning_rate=learning_rate, seed=seed, verbose=verbose,
        model_card={"mpp": SYNTHETIC_DEMO_MPP, "mpp_source": "synthetic demo set (declared scale)"},
        overwrite=overwrite,
    )
    return _finish(result, folder, export_onnx, segment_slide, val.images, SYNTHETIC_DEMO_MPP, None, seed, overwrite)


def _finish(result, folder, export_onnx: bool, segment_slide: bool, images, mpp: float, samples, seed: int,
            overwrite: bool) -> TrainingResult:
    """Export and segment the demo slide as asked, then record what the demo wrote."""
    written = []
    if export_onnx:
        result = _export_onnx(result, samples, overwrite)
        written.append("model.onnx")
        if segment_slide:
            result = _segment_slide(result, images, mpp, seed)
            written.append("slide")
    folder.commit(written)
    return result


def _export_onnx(result: TrainingResult, samples, overwrite: bool) -> TrainingResult:
    """Write a verified ``model.onnx`` beside ``model.keras`` (mpp and tile size from its model card)."""
    import json

    from weaksegtf.export import export_model
    from weaksegtf.io import write_text_atomic

    report = export_model(result.model_path, result.model_path.with_suffix(".onnx"), samples_dir=samples,
                          overwrite=overwrite)
    result.metrics["onnx"] = {
        "path": str(report.onnx_path),
        "opset": report.opset,
        "max_abs_logit_diff": report.parity.max_abs_diff,
        "argmax_agreement": report.parity.agreement,
        "tolerance": report.parity.tolerance,
        "inputs": report.parity.source,
    }
    write_text_atomic(result.metrics_path, json.dumps(result.metrics, indent=2))
    return result


def _segment_slide(result: TrainingResult, images, mpp: float, seed: int) -> TrainingResult:
    """Tile ``images`` onto white glass as a pyramidal slide and segment it with the exported model."""
    import json

    from weaksegtf.inference import SlideSegmenter
    from weaksegtf.slides import write_pyramidal_tiff
    from weaksegtf.io import write_text_atomic

    folder = result.model_path.parent / "slide"
    folder.mkdir(parents=True, exist_ok=True)
    slide_path = folder / "demo_slide.tif"
    write_pyramidal_tiff(slide_path, _mosaic(images, DEMO_SLIDE_PX, seed), mpp)
    segmenter = SlideSegmenter(result.model_path.with_suffix(".onnx"), mpp=mpp, probabilities=True)
    slide = segmenter.segment(slide_path, folder / "segmentation", force=True)
    summary = slide.summary
    result.metrics["slide"] = {
        "slide": str(slide_path), "outputs": str(slide.out_dir), "tiles": summary["tiles"],
        "tissue_area_mm2": summary["tissue_area_mm2"], "class_area_mm2": summary["class_area_mm2"],
        "providers": summary["model"]["providers_in_use"], "seconds": summary["timings_s"]["total"],
    }
    write_text_atomic(result.metrics_path, json.dumps(result.metrics, indent=2))
    return result


def _mosaic(images, size_px: int, seed: int) -> np.ndarray:
    """Images on a grid of cells over white glass, about three cells in four filled, with a glass margin."""
    cell_h = max(image.shape[0] for image in images)
    cell_w = max(image.shape[1] for image in images)
    margin = size_px // 16
    rows, cols = max(1, (size_px - 2 * margin) // cell_h), max(1, (size_px - 2 * margin) // cell_w)
    rng = np.random.default_rng(seed)
    canvas = np.full((size_px, size_px, 3), 245, np.uint8)
    for cell in range(rows * cols):
        if rng.random() > 0.75:
            continue
        image = images[int(rng.integers(len(images)))]
        y, x = margin + (cell // cols) * cell_h, margin + (cell % cols) * cell_w
        height, width = min(image.shape[0], size_px - y), min(image.shape[1], size_px - x)
        canvas[y : y + height, x : x + width] = image[:height, :width]
    return canvas
