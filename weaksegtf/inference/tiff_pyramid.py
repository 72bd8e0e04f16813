"""Stream a one-channel image from disk into a tiled, pyramidal TIFF that OpenSlide and QuPath open.

``weaksegtf.slides.write_pyramidal_tiff`` needs the whole image in memory;
this writer reads it a strip of tiles at a time, and builds each coarser
level from a temporary file of the level before, so memory stays at a few
strips whatever the slide's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.io import discard, open_new, temporary_path

#: ``(y0, y1)`` to rows ``y0:y1`` of a ``(height, width)`` uint8 image.
RowSource = Callable[[int, int], npt.NDArray[np.uint8]]


@dataclass
class PyramidInfo:
    """What :func:`write_tiff_pyramid` wrote.

    Args:
        level_sizes: list of (width, height). Size of each level, finest first.
        kept_level: int, optional. Index of the level returned in ``kept``.
        kept: uint8 array, optional. The finest level whose longer side is at
            most ``keep_max_px``, for thumbnails and polygons.
    """

    level_sizes: list[tuple[int, int]] = field(default_factory=list)
    kept_level: int | None = None
    kept: npt.NDArray[np.uint8] | None = None


def pyramid_sizes(width_px: int, height_px: int, tile_size_px: int = 256) -> list[tuple[int, int]]:
    """Level sizes: halved (rounding up) until the longer side fits in one tile."""
    sizes = [(int(width_px), int(height_px))]
    while max(sizes[-1]) > tile_size_px:
        width, height = sizes[-1]
        sizes.append((-(-width // 2), -(-height // 2)))
    return sizes


def _halve(strip: np.ndarray, kind: str) -> np.ndarray:
    """Half-size rows of an even-aligned strip: nearest for labels, 2x2 mean for probabilities."""
    if kind == "labels":
        return strip[::2, ::2]  # class indices must not be averaged
    rows, cols = strip.shape
    padded = np.pad(strip, ((0, rows % 2), (0, cols % 2)), mode="edge").astype(np.uint16)
    total = padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def _file_rows(path: Path, width_px: int, height_px: int) -> RowSource:
    def read(y0: int, y1: int) -> np.ndarray:
        y1 = min(y1, height_px)
        with open(path, "rb") as handle:
            handle.seek(y0 * width_px)
            data = handle.read((y1 - y0) * width_px)
        return np.frombuffer(data, dtype=np.uint8).reshape(y1 - y0, width_px)

    return read


def write_tiff_pyramid(
    path: Path | str,
    read_rows: RowSource,
    width_px: int,
    height_px: int,
    mpp: float,
    kind: str = "labels",
    colormap: Sequence[Sequence[int]] | None = None,
    tile_size_px: int = 256,
    work_dir: Path | str | None = None,
    keep_max_px: int | None = None,
    on_rows: Callable[[np.ndarray], None] | None = None,
    compression_level: int = 6,
) -> PyramidInfo:
    """Write a uint8 image, read strip by strip, as a tiled pyramidal TIFF with resolution tags.

    Level 0 is at ``mpp``; each further level halves the one before (rounding
    up) until the longer side fits in one tile, and is its own page, marked as
    a reduced image, with its own resolution, so OpenSlide opens the file as
    ``generic-tiff`` with ``openslide.mpp-x == mpp``. Compression is deflate.

    Args:
        path: str or path. The ``.tif`` to write; it must not exist (write to
            a temporary name and rename it). Never written through a link.
        read_rows: callable. ``(y0, y1)`` to image rows ``(y1 - y0, width_px)``.
        width_px: int. Image width.
        height_px: int. Image height.
        mpp: float. Microns per pixel of level 0.
        kind: str. ``"labels"`` (coarser levels keep every other pixel, so
            classes stay classes) or ``"probabilities"`` (2x2 means).
            Defaults to ``"labels"``.
        colormap: sequence of (r, g, b), optional. Colour of each value: the
            file is written as a palette image, so viewers show class colours
            and analysis still reads class indices. Defaults to ``None`` (grey).
        tile_size_px: int. TIFF tile side, a multiple of 16. Defaults to 256.
        work_dir: str or path, optional. Folder for the temporary level files.
            Defaults to the folder of ``path``.
        keep_max_px: int, optional. Return the finest level whose longer side
            is at most this. Defaults to ``None`` (keep nothing).
        on_rows: callable, optional. Called with every strip of level 0 (to
            count classes in the same pass). Defaults to ``None``.
        compression_level: int. Deflate level, 1 (fast) to 9. Defaults to 6.

    Returns:
        PyramidInfo: level sizes and the kept level.

    Example:
    >>> write_tiff_pyramid("labels.tif", lambda a, b: labels[a:b], 2000, 1500, mpp=2.0,  # doctest: +SKIP
    ...                    colormap=[(240, 240, 240), (220, 40, 40)])
    """
    import tifffile

    if kind not in ("labels", "probabilities"):
        raise ConfigError(f"kind must be 'labels' or 'probabilities', got {kind!r}")
    if tile_size_px <= 0 or tile_size_px % 16:
        raise ConfigError(f"tile_size_px must be a positive multiple of 16, got {tile_size_px}")
    path = Path(path)
    work_dir = Path(work_dir) if work_dir is not None else path.parent
    sizes = pyramid_sizes(width_px, height_px, tile_size_px)
    info = PyramidInfo(level_sizes=sizes)
    extra: dict = {"photometric": "minisblack"}
    if colormap is not None:
        table = np.zeros((3, 256), dtype=np.uint16)
        table[:, : len(colormap)] = np.asarray(colormap, dtype=np.uint16).T * 257
        extra = {"photometric": "palette", "colormap": table}
    temporaries: list[Path] = []
    source = read_rows
    t = tile_size_px
    try:
        with open_new(path) as handle, tifffile.TiffWriter(handle, bigtiff=width_px * height_px > 2**31) as writer:
            for level, (width, height) in enumerate(sizes):
                keep = keep_max_px is not None and info.kept is None and max(width, height) <= keep_max_px
                kept = np.empty((height, width), np.uint8) if keep else None
                next_path = None
                if level + 1 < len(sizes):
                    next_path = temporary_path(work_dir / f"{path.name}.level{level + 1}")
                    temporaries.append(next_path)

                def tiles(source=source, width=width, height=height, kept=kept, level=level,
                          next_path=next_path) -> Iterator[np.ndarray]:
                    handle = open_new(next_path) if next_path is not None else None
                    try:
                        for y in range(0, height, t):
                            strip = np.asarray(source(y, min(y + t, height)), dtype=np.uint8)
                            if level == 0 and on_rows is not None:
                                on_rows(strip)
                            if kept is not None:
                                kept[y : y + strip.shape[0]] = strip
                            if handle is not None:
                                handle.write(np.ascontiguousarray(_halve(strip, kind)).tobytes())
                            padded = np.zeros((t, -(-width // t) * t), np.uint8)
                            padded[: strip.shape[0], :width] = strip
                            for x in range(0, width, t):
                                yield padded[:, x : x + t]
                    finally:
                        if handle is not None:
                            handle.close()

                per_cm = 1e4 / (mpp * 2**level)
                writer.write(
                    tiles(), shape=(height, width), dtype=np.uint8, tile=(t, t),
                    compression="zlib", compressionargs={"level": compression_level},
                    resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                    subfiletype=0 if level == 0 else 1, metadata=None, **extra,
                )
                if kept is not None:
                    info.kept, info.kept_level = kept, level
                if next_path is not None:
                    source = _file_rows(next_path, *sizes[level + 1])
    except BaseException:
        discard(path)
        raise
    finally:
        for temporary in temporaries:
            discard(temporary)
    return info
