"""From whole slides to training patches (numpy and OpenCV, no TensorFlow).

- :func:`tissue_mask` / :class:`TissueMask`: foreground by HSV saturation
  (Ciga & Martel 2021, Appendix B.1).
- :func:`centred_patch_centres`, :func:`kmeans_split_count`: centred
  ground-truth extraction with K-means splitting (Appendix B.2).
- :func:`classify_tile`: the 90% / two-class tile rule (section 3.3).
- :class:`LabelMap`, :func:`rasterize_geojson`: annotations as label images.
- :func:`plan_patches`, :func:`read_patches`, :class:`PatchSetWriter`: placing,
  reading and writing patches; :func:`prepare_patches` does it all.
- :class:`MacenkoNormalizer`: stain normalisation with fit/transform.
"""

from weaksegtf.preprocessing.centred_extraction import (
    centred_patch_centres,
    kmeans,
    kmeans_split_count,
)
from weaksegtf.preprocessing.geojson_rasterizer import rasterize_geojson, read_geojson
from weaksegtf.io import read_label_image
from weaksegtf.preprocessing.label_map import IGNORE_INDEX, LabelMap, check_aspect, remap_labels
from weaksegtf.preprocessing.macenko_normalizer import MacenkoNormalizer, StainWarning
from weaksegtf.preprocessing.manifest import PatchRecord, read_manifest, write_manifest
from weaksegtf.preprocessing.patch_extraction import (
    Patch,
    PatchPlan,
    plan_centred_patches,
    plan_patches,
    plan_tiled_patches,
    read_patches,
)
from weaksegtf.preprocessing.patch_overlay import draw_patch_overlay
from weaksegtf.preprocessing.patch_set_writer import PatchSetWriter
from weaksegtf.preprocessing.prepare import (
    PreparationWarning,
    PrepareSummary,
    load_label_map,
    prepare_patches,
)
from weaksegtf.preprocessing.tile_rule import TileDecision, classify_tile
from weaksegtf.preprocessing.tissue_mask import TissueMask, tissue_mask

__all__ = [
    "IGNORE_INDEX",
    "LabelMap",
    "MacenkoNormalizer",
    "Patch",
    "PatchPlan",
    "PatchRecord",
    "PatchSetWriter",
    "PreparationWarning",
    "PrepareSummary",
    "StainWarning",
    "TileDecision",
    "TissueMask",
    "centred_patch_centres",
    "check_aspect",
    "classify_tile",
    "draw_patch_overlay",
    "kmeans",
    "kmeans_split_count",
    "load_label_map",
    "plan_centred_patches",
    "plan_patches",
    "plan_tiled_patches",
    "prepare_patches",
    "rasterize_geojson",
    "read_geojson",
    "read_label_image",
    "read_manifest",
    "read_patches",
    "remap_labels",
    "tissue_mask",
    "write_manifest",
]
