"""Everything a slide run writes once its tiles are done: label and probability pyramids, overlay, GeoJSON.

Every file is written under a temporary name unique to the process, and all
of them are renamed into place only once the last one is complete: a full
disk, an error or a kill leaves no half file and no partial set (the
temporaries are removed, or swept by the next run). ``summary.json``,
written by the caller after these, marks the slide as complete.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from weaksegtf.inference.tile_scheduler import TilePlan
from weaksegtf.inference.tile_store import TileStore
from weaksegtf.inference.writers import write_geojson, write_overlay_png
from weaksegtf.io import discard, publish, refuse_link, temporary_path
from weaksegtf.model_card import OnnxMetadata
from weaksegtf.slides.pyramid_tiff import write_tiff_pyramid
from weaksegtf.slides.slide_reader import SlideReader


def probability_file_name(index: int, name: str) -> str:
    """``probabilities_<index>_<name>.tif``, the class name reduced to letters, digits and dashes."""
    return f"probabilities_{index}_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-') or 'class'}.tif"


def write_slide_outputs(
    slide: SlideReader,
    plan: TilePlan,
    metadata: OnnxMetadata,
    mpp: float,
    labels: TileStore,
    probabilities: TileStore | None,
    out_dir: Path,
    geojson: bool = True,
    geojson_max_px: int = 4096,
    thumbnail_px: int = 1024,
    id_seed: str = "",
    geojson_simplify_um: float = 0.0,
) -> dict[str, Any]:
    """Write a finished slide's outputs into ``out_dir`` from its tile stores.

    Args:
        slide: SlideReader. The slide (for its thumbnail and level-0 geometry).
        plan: TilePlan. Geometry of the stores.
        metadata: OnnxMetadata. Class names and colours.
        mpp: float. Resolution of the stores.
        labels: TileStore. Arg-max classes (one channel).
        probabilities: TileStore, optional. uint8 probabilities (one channel per class).
        out_dir: Path. Output folder.
        geojson: bool. Write ``annotations.geojson``. Defaults to ``True``.
        geojson_max_px: int. Polygons come from the finest label level whose
            longer side is at most this. Defaults to 4096.
        thumbnail_px: int. Longer side of ``overlay.png``. Defaults to 1024.
        id_seed: str. Seed of the GeoJSON feature ids. Defaults to ``""``.
        geojson_simplify_um: float. Polygon simplification tolerance in µm
            (:func:`~weaksegtf.inference.writers.label_features`). Defaults to 0 (exact pixel edges).

    Returns:
        The summary fields for these outputs: sizes, class areas, file names.
    """
    num_classes = metadata.num_classes
    counts = np.zeros(num_classes, dtype=np.int64)

    def count(strip: np.ndarray) -> None:
        counts[:] += np.bincount(strip.ravel(), minlength=num_classes)[:num_classes]

    work_dir = labels.path.parent
    staged: list[tuple[Path, Path]] = []

    def stage(name: str) -> Path:
        final_path = out_dir / name
        staged.append((temporary_path(final_path), final_path))
        return staged[-1][0]

    try:
        info = write_tiff_pyramid(
            stage("labels.tif"), lambda a, b: labels.read_rows(a, b)[..., 0], plan.width_px, plan.height_px,
            mpp, kind="labels", colormap=metadata.class_colors, work_dir=work_dir,
            keep_max_px=geojson_max_px, on_rows=count,
        )
        probability_files, kept_probabilities = [], []
        if probabilities is not None:
            for index, name in enumerate(metadata.class_names):
                level = write_tiff_pyramid(
                    stage(probability_file_name(index, name)),
                    lambda a, b, c=index: probabilities.read_rows(a, b)[..., c],
                    plan.width_px, plan.height_px, mpp, kind="probabilities", work_dir=work_dir,
                    compression_level=1, keep_max_px=geojson_max_px if geojson else None,
                )
                probability_files.append(probability_file_name(index, name))
                kept_probabilities.append(level.kept)
        thumbnail, _ = slide.thumbnail(thumbnail_px)
        kept = info.kept if info.kept is not None else np.zeros((1, 1), np.uint8)
        write_overlay_png(stage("overlay.png"), thumbnail, kept, metadata.class_colors)
        n_features = None
        level0_px_per_px = mpp / slide.mpp * 2 ** (info.kept_level or 0)
        if geojson:
            n_features = write_geojson(
                stage("annotations.geojson"), kept, metadata.class_names, metadata.class_colors,
                level0_px_per_px, slide_size_px=slide.dimensions, slide_mpp=slide.mpp,
                probabilities=kept_probabilities or None, id_seed=id_seed,
                simplify_px=geojson_simplify_um / slide.mpp if geojson_simplify_um else 0.0)
        for _, final_path in staged:  # refuse a planted link before anything is renamed
            refuse_link(final_path)
        for temporary, final_path in staged:
            publish(temporary, final_path)
    finally:
        for temporary, _ in staged:
            discard(temporary)
    pixel_mm2 = (mpp * 1e-3) ** 2
    return {
        "classes": list(metadata.class_names),
        "class_area_mm2": {name: float(c) * pixel_mm2 for name, c in zip(metadata.class_names, counts)},
        "outputs": {
            "labels": "labels.tif", "label_levels_px": [list(size) for size in info.level_sizes],
            "probabilities": probability_files, "overlay": "overlay.png",
            "geojson": "annotations.geojson" if geojson else None,
            "geojson_features": n_features, "geojson_level": info.kept_level,
            "geojson_simplify_um": geojson_simplify_um if geojson else None,
            "geojson_level0_px_per_px": level0_px_per_px,
            "geojson_measurements": (["Area µm^2", "Mean probability"] if probabilities is not None
                                     else ["Area µm^2"]) if geojson else None,
        },
    }
