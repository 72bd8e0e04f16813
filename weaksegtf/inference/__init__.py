"""Whole-slide segmentation with ONNX Runtime (numpy, OpenCV, OpenSlide, tifffile; never TensorFlow).

- :class:`SlideSegmenter`: one model, many slides; ``segment(path, out_dir)``.
- :func:`segment_slides`: a batch run over files, folders and globs that
  records failures and goes on; with :class:`ClusterSettings`, one Dask task
  per slide (``dask.distributed`` is imported only then).
- :func:`load_session`: the onnxruntime session, once per process, with the
  providers actually in use.
- :func:`plan_tiles`, :class:`TilePlan`: overlapping tiles and the box each
  one owns (seam-free centre crops).
- :class:`TileStore`, :class:`Checkpoint`, :class:`Stitcher`: streaming
  results to disk and resuming after a kill.
- :func:`write_tiff_pyramid`, :func:`write_geojson`, :func:`mask_polygons`:
  viewer-ready outputs (valid polygons, clipped to the slide).
- :class:`OutputLock`, :func:`output_names`, :mod:`~weaksegtf.io`:
  one run per output folder, stable collision-free slide folders, writes that
  never follow links or leave half files.
"""

from weaksegtf.inference.batch import BatchResult, segment_slides
from weaksegtf.inference.checkpoint import Checkpoint
from weaksegtf.inference.cluster_settings import ClusterSettings
from weaksegtf.inference.inputs import find_inputs
from weaksegtf.inference.mask_polygons import label_regions, mask_polygons, polygon_area
from weaksegtf.inference.output_lock import OutputLock
from weaksegtf.inference.prefetch import TilePrefetcher
from weaksegtf.progress import Progress
from weaksegtf.inference.seam_report import seam_agreement
from weaksegtf.inference.session import ModelSession, load_session
from weaksegtf.inference.slide_segmenter import SlideResult, SlideSegmenter
from weaksegtf.inference.stitcher import Stitcher
from weaksegtf.slides.pyramid_tiff import write_tiff_pyramid
from weaksegtf.inference.tile_scheduler import TilePlan, plan_tiles, tissue_tiles
from weaksegtf.inference.tile_store import TileStore
from weaksegtf.inference.writers import write_geojson, write_overlay_png
from weaksegtf.output_names import output_names

__all__ = [
    "BatchResult",
    "Checkpoint",
    "ClusterSettings",
    "ModelSession",
    "OutputLock",
    "Progress",
    "SlideResult",
    "SlideSegmenter",
    "Stitcher",
    "TilePlan",
    "TilePrefetcher",
    "TileStore",
    "find_inputs",
    "label_regions",
    "load_session",
    "mask_polygons",
    "output_names",
    "plan_tiles",
    "polygon_area",
    "seam_agreement",
    "segment_slides",
    "tissue_tiles",
    "write_geojson",
    "write_overlay_png",
    "write_tiff_pyramid",
]
