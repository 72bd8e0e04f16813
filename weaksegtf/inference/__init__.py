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

Importing the package loads none of its modules: each name loads its module
on first use (PEP 562), so ``import weaksegtf.inference`` is instant and a
tool that needs one piece (the CLI's ``--help``, a Dask worker) pays for that
piece only. ``tests/test_import_boundary.py`` checks what it may load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Each public name and the module that defines it.
_SOURCES = {
    "BatchResult": "weaksegtf.inference.batch",
    "segment_slides": "weaksegtf.inference.batch",
    "Checkpoint": "weaksegtf.inference.checkpoint",
    "ClusterSettings": "weaksegtf.inference.cluster_settings",
    "find_inputs": "weaksegtf.inference.inputs",
    "label_regions": "weaksegtf.inference.mask_polygons",
    "mask_polygons": "weaksegtf.inference.mask_polygons",
    "polygon_area": "weaksegtf.inference.mask_polygons",
    "OutputLock": "weaksegtf.inference.output_lock",
    "TilePrefetcher": "weaksegtf.inference.prefetch",
    "ReaderProcesses": "weaksegtf.inference.reader_processes",
    "seam_agreement": "weaksegtf.inference.seam_report",
    "ModelSession": "weaksegtf.inference.session",
    "load_session": "weaksegtf.inference.session",
    "SlideResult": "weaksegtf.inference.slide_segmenter",
    "SlideSegmenter": "weaksegtf.inference.slide_segmenter",
    "Stitcher": "weaksegtf.inference.stitcher",
    "TilePlan": "weaksegtf.inference.tile_scheduler",
    "plan_tiles": "weaksegtf.inference.tile_scheduler",
    "tissue_tiles": "weaksegtf.inference.tile_scheduler",
    "TileStore": "weaksegtf.inference.tile_store",
    "write_geojson": "weaksegtf.inference.writers",
    "write_overlay_png": "weaksegtf.inference.writers",
    "output_names": "weaksegtf.output_names",
    "Progress": "weaksegtf.progress",
    "write_tiff_pyramid": "weaksegtf.slides.pyramid_tiff",
}

__all__ = sorted(_SOURCES, key=lambda name: (not name[0].isupper(), name))


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(_SOURCES)


# ``mask_polygons`` names both a function and the module that defines it. Importing the module anywhere binds
# the module to the package's attribute of that name, after which the lazy lookup above is never asked and
# ``from weaksegtf.inference import mask_polygons`` would give the module. Importing the function now makes
# the package attribute the function for good (a later import of the module finds it in sys.modules and
# rebinds nothing).
from weaksegtf.inference.mask_polygons import mask_polygons  # noqa: E402


if TYPE_CHECKING:  # what type checkers and IDEs see
    from weaksegtf.inference.batch import BatchResult, segment_slides
    from weaksegtf.inference.checkpoint import Checkpoint
    from weaksegtf.inference.cluster_settings import ClusterSettings
    from weaksegtf.inference.inputs import find_inputs
    from weaksegtf.inference.mask_polygons import label_regions, mask_polygons, polygon_area
    from weaksegtf.inference.output_lock import OutputLock
    from weaksegtf.inference.prefetch import TilePrefetcher
    from weaksegtf.inference.reader_processes import ReaderProcesses
    from weaksegtf.inference.seam_report import seam_agreement
    from weaksegtf.inference.session import ModelSession, load_session
    from weaksegtf.inference.slide_segmenter import SlideResult, SlideSegmenter
    from weaksegtf.inference.stitcher import Stitcher
    from weaksegtf.inference.tile_scheduler import TilePlan, plan_tiles, tissue_tiles
    from weaksegtf.inference.tile_store import TileStore
    from weaksegtf.inference.writers import write_geojson, write_overlay_png
    from weaksegtf.output_names import output_names
    from weaksegtf.progress import Progress
    from weaksegtf.slides.pyramid_tiff import write_tiff_pyramid
