"""Slide readers behind one small interface (no TensorFlow).

:func:`open_slide` picks the back-end; :class:`SlideReader` is the interface
(level geometry, mpp, ``read_region``, ``read_at_mpp``, ``close``, context
manager); :class:`OpenSlideReader`, :class:`ImageReader` and
:class:`ArrayReader` are the interchangeable back-ends.
:func:`write_tiff_pyramid` is the one pyramidal TIFF writer (streamed rows, 1 or
3 channels); :func:`write_pyramidal_tiff` writes an image in memory with it.
"""

from weaksegtf.slides.array_reader import ArrayReader
from weaksegtf.slides.image_reader import ImageReader
from weaksegtf.slides.open_slide import open_slide
from weaksegtf.slides.openslide_reader import OpenSlideReader
from weaksegtf.slides.pyramid_tiff import write_pyramidal_tiff, write_tiff_pyramid
from weaksegtf.slides.slide_reader import SlideReader, mpp_from_resolution

__all__ = [
    "ArrayReader",
    "ImageReader",
    "OpenSlideReader",
    "SlideReader",
    "mpp_from_resolution",
    "open_slide",
    "write_pyramidal_tiff",
    "write_tiff_pyramid",
]
