"""The one pyramidal TIFF writer: a uint8 image (1 or 3 channels), streamed a strip of tiles at a time.

Every tiled pyramid weaksegtf writes comes from :func:`write_tiff_pyramid`:
``weakseg-infer``'s label and probability pyramids (streamed from its on-disk
tile store) and the synthetic slides of the demo and the tests
(:func:`write_pyramidal_tiff`, an image in memory). Each coarser level is built
from a temporary file of the level before, so memory stays at a few strips
whatever the slide's size. Each level is its own tiled page, marked as a
reduced image, with its resolution in pixels per centimetre, so OpenSlide opens
the file as ``generic-tiff`` with ``openslide.mpp-x`` and QuPath reads its levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.io import discard, open_new, publish, temporary_path
from weaksegtf.slides.array_reader import as_rgb_uint8

#: ``(y0, y1)`` to rows ``y0:y1`` of a ``(height, width)`` or ``(height, width, 3)`` uint8 image.
RowSource = Callable[[int, int], npt.NDArray[np.uint8]]
#: What a pyramid holds, and so how a level is halved and how many channels it has.
KINDS = ("labels", "probabilities", "rgb")


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


def pyramid_sizes(
    width_px: int, height_px: int, tile_size_px: int = 256, n_levels: int | None = None
) -> list[tuple[int, int]]:
    """Level sizes: halved (rounding up) until the longer side fits in one tile, or ``n_levels`` of them."""
    sizes = [(int(width_px), int(height_px))]
    while (max(sizes[-1]) > tile_size_px) if n_levels is None else (len(sizes) < n_levels):
        width, height = sizes[-1]
        sizes.append((max(1, -(-width // 2)), max(1, -(-height // 2))))
    return sizes


def _halve(strip: np.ndarray, kind: str) -> np.ndarray:
    """Half-size rows of an even-aligned strip: nearest for labels, rounded 2x2 means otherwise.

    On even sides the means equal ``cv2.resize(..., INTER_AREA)``; an odd side repeats its last row or column.
    """
    if kind == "labels":
        return strip[::2, ::2]  # class indices must not be averaged
    rows, cols = strip.shape[:2]
    edges = ((0, rows % 2), (0, cols % 2)) + ((0, 0),) * (strip.ndim - 2)
    padded = np.pad(strip, edges, mode="edge").astype(np.uint16)
    total = padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def _file_rows(path: Path, width_px: int, height_px: int, channels: int) -> RowSource:
    row_bytes = width_px * channels
    shape = (width_px, channels) if channels > 1 else (width_px,)

    def read(y0: int, y1: int) -> np.ndarray:
        y1 = min(y1, height_px)
        with open(path, "rb") as handle:
            handle.seek(y0 * row_bytes)
            data = handle.read((y1 - y0) * row_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape((y1 - y0,) + shape)

    return read


def _photometric(kind: str, colormap: Sequence[Sequence[int]] | None) -> dict:
    if kind == "rgb":
        return {"photometric": "rgb"}
    if colormap is None:
        return {"photometric": "minisblack"}
    table = np.zeros((3, 256), dtype=np.uint16)
    table[:, : len(colormap)] = np.asarray(colormap, dtype=np.uint16).T * 257
    return {"photometric": "palette", "colormap": table}


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
    n_levels: int | None = None,
) -> PyramidInfo:
    """Write a uint8 image, read strip by strip, as a tiled pyramidal TIFF with resolution tags.

    Level 0 is at ``mpp``; each further level halves the one before (rounding
    up) until the longer side fits in one tile, and is its own page, marked as
    a reduced image, with its own resolution, so OpenSlide opens the file as
    ``generic-tiff`` with ``openslide.mpp-x == mpp``. Compression is deflate.

    Args:
        path: str or path. The ``.tif`` to write; it must not exist (write to
            a temporary name and rename it). Never written through a link.
        read_rows: callable. ``(y0, y1)`` to image rows ``(y1 - y0, width_px)``,
            or ``(y1 - y0, width_px, 3)`` for ``kind="rgb"``.
        width_px: int. Image width.
        height_px: int. Image height.
        mpp: float. Microns per pixel of level 0.
        kind: str. ``"labels"`` (one channel; coarser levels keep every other
            pixel, so classes stay classes), ``"probabilities"`` (one channel,
            2x2 means) or ``"rgb"`` (three channels, 2x2 means). Defaults to ``"labels"``.
        colormap: sequence of (r, g, b), optional. Colour of each value of a
            one-channel image: the file is written as a palette image, so
            viewers show class colours and analysis still reads class indices.
            Defaults to ``None`` (grey).
        tile_size_px: int. TIFF tile side, a multiple of 16. Defaults to 256.
        work_dir: str or path, optional. Folder for the temporary level files.
            Defaults to the folder of ``path``.
        keep_max_px: int, optional. Return the finest level whose longer side
            is at most this. Defaults to ``None`` (keep nothing).
        on_rows: callable, optional. Called with every strip of level 0 (to
            count classes in the same pass). Defaults to ``None``.
        compression_level: int. Deflate level, 1 (fast) to 9. Defaults to 6.
        n_levels: int, optional. Number of levels. Defaults to ``None``: halve
            until the longer side fits in one tile.

    Returns:
        PyramidInfo: level sizes and the kept level.

    Example:
    >>> write_tiff_pyramid("labels.tif", lambda a, b: labels[a:b], 2000, 1500, mpp=2.0,  # doctest: +SKIP
    ...                    colormap=[(240, 240, 240), (220, 40, 40)])
    """
    import tifffile

    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    if tile_size_px <= 0 or tile_size_px % 16:
        raise ConfigError(f"tile_size_px must be a positive multiple of 16, got {tile_size_px}")
    if kind == "rgb" and colormap is not None:
        raise ConfigError("a colormap colours one-channel values; an RGB pyramid (kind='rgb') takes none")
    path = Path(path)
    work_dir = Path(work_dir) if work_dir is not None else path.parent
    sizes = pyramid_sizes(width_px, height_px, tile_size_px, n_levels)
    info = PyramidInfo(level_sizes=sizes)
    extra = _photometric(kind, colormap)
    channels = 3 if kind == "rgb" else 1
    pixel = (channels,) if channels > 1 else ()
    temporaries: list[Path] = []
    source = read_rows
    t = tile_size_px
    try:
        with open_new(path) as handle, tifffile.TiffWriter(
            handle, bigtiff=width_px * height_px * channels > 2**31
        ) as writer:
            for level, (width, height) in enumerate(sizes):
                keep = keep_max_px is not None and info.kept is None and max(width, height) <= keep_max_px
                kept = np.empty((height, width) + pixel, np.uint8) if keep else None
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
                            padded = np.zeros((t, -(-width // t) * t) + pixel, np.uint8)
                            padded[: strip.shape[0], :width] = strip
                            for x in range(0, width, t):
                                yield padded[:, x : x + t]
                    finally:
                        if handle is not None:
                            handle.close()

                per_cm = 1e4 / (mpp * 2**level)
                writer.write(
                    tiles(), shape=(height, width) + pixel, dtype=np.uint8, tile=(t, t),
                    compression="zlib", compressionargs={"level": compression_level},
                    resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                    subfiletype=0 if level == 0 else 1, metadata=None, **extra,
                )
                if kept is not None:
                    info.kept, info.kept_level = kept, level
                if next_path is not None:
                    source = _file_rows(next_path, *sizes[level + 1], channels)
    except BaseException:
        discard(path)
        raise
    finally:
        for temporary in temporaries:
            discard(temporary)
    return info


def write_pyramidal_tiff(
    path: Path | str,
    image: np.ndarray,
    mpp: float,
    n_levels: int | None = None,
    tile_size_px: int = 256,
    compression_level: int = 6,
) -> list[tuple[int, int]]:
    """Write an RGB image in memory as a tiled pyramid with resolution tags (:func:`write_tiff_pyramid`).

    The file is written under a temporary name and renamed over ``path``.

    Args:
        path: str or path. Output ``.tif`` file.
        image: uint8 ``(H, W, 3)`` array (grey or RGBA is converted), level 0.
        mpp: float. Microns per pixel of level 0.
        n_levels: int, optional. Number of levels. Defaults to ``None``: halve
            until the longer side fits in one tile.
        tile_size_px: int. Tile side, a multiple of 16. Defaults to 256.
        compression_level: int. Deflate level, 1 (fast) to 9. Defaults to 6.

    Returns:
        ``(width, height)`` of each level written.

    Example:
    >>> write_pyramidal_tiff("/tmp/s.tif", np.zeros((1024, 768, 3), np.uint8), 0.5, 3)
    [(768, 1024), (384, 512), (192, 256)]
    """
    path = Path(path)
    level0 = as_rgb_uint8(image, str(path))
    temporary = temporary_path(path)
    try:
        info = write_tiff_pyramid(
            temporary, lambda y0, y1: level0[y0:y1], level0.shape[1], level0.shape[0], mpp, kind="rgb",
            tile_size_px=tile_size_px, compression_level=compression_level, n_levels=n_levels,
        )
        publish(temporary, path)
    finally:
        discard(temporary)
    return info.level_sizes
