"""``SlideSegmenter``: one exported ONNX model run over whole slides, tile by tile, into viewer-ready files."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from weaksegtf.errors import ConfigError
from weaksegtf.inference.checkpoint import Checkpoint
from weaksegtf.inference.folder_claim import SUMMARY_NAME, WORK_NAME, check_claim, write_claim
from weaksegtf.inference.output_lock import OutputLock
from weaksegtf.inference.prefetch import TilePrefetcher
from weaksegtf.inference.reader_processes import ReaderProcesses, SlideOpener, check_can_start_processes
from weaksegtf.inference.session import ModelSession, load_session
from weaksegtf.inference.slide_outputs import write_slide_outputs
from weaksegtf.inference.slide_tiles import SlideTiles
from weaksegtf.inference.stitcher import Stitcher
from weaksegtf.inference.tile_scheduler import SIZE_MULTIPLE_PX, TilePlan, plan_tiles, tissue_tiles
from weaksegtf.inference.tile_store import TileStore
from weaksegtf.io import (
    discard,
    make_folder,
    refuse_link,
    remove_stale_partials,
    storage_error,
    write_text_atomic,
)
from weaksegtf.output_names import input_key
from weaksegtf.progress import Progress
from weaksegtf.slides.slide_reader import SlideReader

#: Training tile side assumed when the model's metadata has none.
DEFAULT_TRAINING_TILE_PX = 128
BACKGROUND_CLASS = 0
#: Default HSV saturation above which a pixel is tissue (``TissueMask.from_slide``).
DEFAULT_TISSUE_THRESHOLD = 0.1
#: What happens to pixels outside the tissue (or ROI) in tiles that hold some tissue.
OUTSIDE_TISSUE_CHOICES = ("predict", "background")


def _positive(name: str, value: float | None, integer: bool = False) -> None:
    """Refuse a non-positive, non-finite (or non-integral) setting with a message that says which."""
    if value is None:
        return
    ok = isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive whole number" if integer else "a positive number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def default_tiling(training_tile_px: int | None, tile_size_px: int | None = None) -> tuple[int, int]:
    """Inference tile and overlap from the training tile ``t``: ``4 t`` tiles overlapping by ``t``.

    Every kept pixel is then at least ``t / 2`` from a tile border, so it is
    predicted with at least the context a training tile centred on it holds:
    with less, the ResNet-18 trunk's wide receptive field makes tiles disagree
    with a whole-image pass (on the CMU slide, 128-px tiles overlapping by 32
    px agree on 94% of pixels, 512-px tiles overlapping by 128 px on 100%;
    docs/benchmarks.md). The overhead over non-overlapping tiles is
    ``(4 / 3) ** 2``, 1.8x. A given ``tile_size_px`` keeps its size and
    overlaps by a quarter.
    """
    t = int(training_tile_px or DEFAULT_TRAINING_TILE_PX)
    if tile_size_px is None:
        return 4 * t, t
    quarter = tile_size_px // 4 // SIZE_MULTIPLE_PX * SIZE_MULTIPLE_PX
    return int(tile_size_px), max(quarter, SIZE_MULTIPLE_PX) if tile_size_px > SIZE_MULTIPLE_PX else 0


@dataclass
class SlideResult:
    """Outcome of one slide: ``status`` is ``"done"``, ``"skipped"`` (already complete) or ``"failed"``."""

    path: Path
    status: str
    out_dir: Path | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"path": str(self.path), "status": self.status,
                               "out_dir": None if self.out_dir is None else str(self.out_dir)}
        if self.error is not None:
            row["error"] = self.error
        if self.summary is not None:
            row["tiles"] = self.summary.get("tiles")
            row["seconds"] = self.summary.get("timings_s", {}).get("total")
        return row


class SlideSegmenter:
    """Segment whole slides with an exported ``.onnx`` model, without TensorFlow.

    Tiles are read at ``mpp`` from the closest pyramid level by background
    threads (or ``readers`` processes) while the onnxruntime session runs
    batches; tiles without tissue are labelled background (class 0) without
    running the model; each tile keeps only the centre of its overlap
    (seam-free, see ``Stitcher``); results stream to disk, so memory does
    not grow with slide area; a killed run resumes from its checkpoint. Per
    slide it writes, into its output folder: ``labels.tif`` (pyramidal
    palette TIFF of class indices at ``mpp``),
    ``probabilities_<i>_<class>.tif`` (optional, uint8), ``overlay.png``,
    ``annotations.geojson`` (QuPath) and ``summary.json`` (written last: its
    presence means the slide is complete).

    Args:
        model: str, path or ModelSession. A model written by ``weakseg-export``.
        mpp: float, optional. Inference resolution in microns per pixel.
            Defaults to ``None``: the model's training mpp from its metadata.
        tile_size_px: int, optional. Tile side, a multiple of 16. Defaults to
            ``None``: four times the model's training tile size (from its
            metadata; 128 px when it has none), see :func:`default_tiling`.
        overlap_px: int, optional. Overlap of neighbouring tiles, a multiple of
            16. Defaults to ``None``: the training tile size (a quarter of a
            given ``tile_size_px``).
        batch_size: int. Tiles per onnxruntime call. Defaults to 8.
        providers: str or list of str, optional. onnxruntime providers
            (``"cuda,cpu"``). Defaults to ``None``: CUDA if available, else CPU.
        threads: int, optional. onnxruntime threads. Defaults to the usable cores.
            ``providers`` and ``threads`` only apply when ``model`` is a path; with a
            ``ModelSession`` they are kept for :meth:`get_config` (the processes
            of a Dask run open the model with them).
        probabilities: bool. Also write per-class probability pyramids. Defaults to ``False``.
        geojson: bool. Write ``annotations.geojson``. Defaults to ``True``.
        skip_background: bool. Label tiles without tissue as background without
            running the model. Defaults to ``True``.
        min_tissue_fraction: float. Tiles whose owned box has at most this
            tissue fraction are skipped. Defaults to 0.
        tissue_mpp: float. Resolution of the tissue mask. Defaults to 8.
        reader_threads: int. Threads reading tiles when ``readers`` is ``None``. Defaults to 2.
        readers: int, optional. Reader processes: each opens the slide once
            and reads, decodes and stain-normalises whole batches for this
            process's one onnxruntime session, so reading scales past the one
            core threads get (see :class:`ReaderProcesses`). Results are taken
            in order: the outputs are byte-identical to a run without it.
            Slides not read through OpenSlide (plain images, arrays in memory)
            are read by threads anyway. Defaults to ``None``: threads.
        checkpoint_interval_s: float. Seconds between checkpoint commits. Defaults to 5.
        geojson_max_px: int. Polygons are traced on the finest label level whose
            longer side is at most this (bounding memory). Defaults to 4096.
        geojson_simplify_um: float. Tolerance in µm within which each GeoJSON
            polygon is simplified (topology kept; neighbouring regions may part or
            overlap by up to it). Defaults to 0: polygons follow label-pixel edges.
        thumbnail_px: int. Longer side of ``overlay.png``. Defaults to 1024.
        progress: bool. Print progress to stderr. Defaults to ``True``.
        tissue_threshold: float. HSV saturation (0 to 1) above which a pixel
            of the tissue mask is tissue. Defaults to 0.1.
        roi: str or path, optional. A mask image (non-zero inside, any
            resolution, covering the slide) or a GeoJSON file (polygons in
            level-0 pixels) limiting the analysis to tissue inside it;
            ``{stem}`` and ``{name}`` are replaced by the slide's. Defaults to
            ``None``.
        outside_tissue: str. ``"predict"`` labels every pixel of a tile that
            holds tissue with the model; ``"background"`` sets pixels outside
            the tissue (and the ROI) to background. Defaults to ``"predict"``.
        max_pixels: int, optional. Largest plain image (and ROI mask image)
            decoded whole; its header is checked first. Defaults to ``None``:
            2**28 pixels.
        overwrite: bool. Replace a slide folder's results made with another
            model (never another input's). Defaults to ``False``.
        lock_wait_s: float. Seconds to wait for another run writing the same
            folder; 0 refuses at once. Defaults to 0.

    Example:
    >>> segmenter = SlideSegmenter("model.onnx", batch_size=16)  # doctest: +SKIP
    >>> result = segmenter.segment("CMU-1.svs", "out/CMU-1")  # doctest: +SKIP
    >>> result.summary["class_area_mm2"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path | ModelSession,
        mpp: float | None = None,
        tile_size_px: int | None = None,
        overlap_px: int | None = None,
        batch_size: int = 8,
        providers: Sequence[str] | str | None = None,
        threads: int | None = None,
        probabilities: bool = False,
        geojson: bool = True,
        skip_background: bool = True,
        min_tissue_fraction: float = 0.0,
        tissue_mpp: float = 8.0,
        reader_threads: int = 2,
        readers: int | None = None,
        checkpoint_interval_s: float = 5.0,
        geojson_max_px: int = 4096,
        thumbnail_px: int = 1024,
        progress: bool = True,
        tissue_threshold: float = DEFAULT_TISSUE_THRESHOLD,
        roi: str | Path | None = None,
        outside_tissue: str = "predict",
        max_pixels: int | None = None,
        overwrite: bool = False,
        lock_wait_s: float = 0.0,
        geojson_simplify_um: float = 0.0,
    ) -> None:
        # Every setting is checked before the model is opened, so a typo costs no model load.
        _positive("inference mpp (--inference-mpp)", mpp)
        _positive("batch_size (--batch-size)", batch_size, integer=True)
        _positive("tile_size_px (--tile-size)", tile_size_px, integer=True)
        _positive("threads (--threads)", threads, integer=True)
        _positive("tissue_mpp", tissue_mpp)
        _positive("max_pixels (--max-pixels)", max_pixels, integer=True)
        _positive("reader_threads", reader_threads, integer=True)
        _positive("readers (--readers)", readers, integer=True)
        if readers is not None:
            check_can_start_processes(int(readers))
        _positive("geojson_max_px", geojson_max_px, integer=True)
        _positive("thumbnail_px", thumbnail_px, integer=True)
        if overlap_px is not None and not (float(overlap_px).is_integer() and overlap_px >= 0):
            raise ConfigError(f"overlap_px (--overlap) must be a whole number of pixels >= 0, got {overlap_px!r}")
        if not (isinstance(tissue_threshold, (int, float)) and 0.0 <= tissue_threshold < 1.0):
            raise ConfigError(f"tissue_threshold (--tissue-threshold) must be an HSV saturation from 0 to 1 "
                              f"(0.1 by default), got {tissue_threshold!r}")
        if not (isinstance(min_tissue_fraction, (int, float)) and 0.0 <= min_tissue_fraction < 1.0):
            raise ConfigError(f"min_tissue_fraction must be from 0 to 1, got {min_tissue_fraction!r}")
        if outside_tissue not in OUTSIDE_TISSUE_CHOICES:
            raise ConfigError(f"outside_tissue (--outside-tissue) must be one of {', '.join(OUTSIDE_TISSUE_CHOICES)},"
                              f" got {outside_tissue!r}")
        if not (isinstance(geojson_simplify_um, (int, float)) and math.isfinite(geojson_simplify_um)
                and geojson_simplify_um >= 0):
            raise ConfigError(f"geojson_simplify_um (--geojson-simplify-um) must be a distance in µm >= 0, "
                              f"got {geojson_simplify_um!r}")
        if not (isinstance(lock_wait_s, (int, float)) and lock_wait_s >= 0):
            raise ConfigError(f"lock_wait_s (--wait) must be a number of seconds >= 0, got {lock_wait_s!r}")
        self.model = model if isinstance(model, ModelSession) else load_session(model, providers, threads)
        # Kept as given (not as resolved here): a worker process that opens the model from
        # ``get_config()`` chooses its own providers and cores.
        self.providers = providers if providers is None or isinstance(providers, str) else list(providers)
        self.threads = None if threads is None else int(threads)
        metadata = self.model.metadata
        self.mpp = float(mpp) if mpp is not None else metadata.mpp
        if self.mpp is None or not self.mpp > 0:
            raise ConfigError(
                f"model {self.model.path.name} has no mpp in its metadata and none was given; pass mpp= "
                f"(--inference-mpp) with the microns per pixel the model was trained at"
            )
        self.tile_size_px, default_overlap = default_tiling(metadata.tile_size_px, tile_size_px)
        self.overlap_px = default_overlap if overlap_px is None else int(overlap_px)
        plan_tiles(self.tile_size_px, self.tile_size_px, self.tile_size_px, self.overlap_px)  # validates both
        self.batch_size = int(batch_size)
        self._check_fixed_dimensions()
        self.tissue_threshold = float(tissue_threshold)
        self.roi = None if roi is None else str(roi)
        self.outside_tissue = outside_tissue
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.overwrite = bool(overwrite)
        self.lock_wait_s = float(lock_wait_s)
        self.probabilities = bool(probabilities)
        self.geojson = bool(geojson)
        self.skip_background = bool(skip_background)
        self.min_tissue_fraction = float(min_tissue_fraction)
        self.tissue_mpp = float(tissue_mpp)
        self.reader_threads = int(reader_threads)
        self.readers = None if readers is None else int(readers)
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self.geojson_max_px = int(geojson_max_px)
        self.geojson_simplify_um = float(geojson_simplify_um)
        self.thumbnail_px = int(thumbnail_px)
        self.progress = bool(progress)
        macenko = metadata.macenko
        self._normalizer = _macenko_from_metadata(macenko, self.model.path) if macenko else None

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments, with the model as its path: ``SlideSegmenter(**config)`` builds the same
        segmenter, in another process too (a Dask worker opens its own session from it).

        ``mpp``, ``tile_size_px`` and ``overlap_px`` are the resolved values; ``providers`` and ``threads``
        are as given (``None`` lets each process choose its providers and use its own cores).
        """
        return {
            "model": str(self.model.path), "mpp": self.mpp, "tile_size_px": self.tile_size_px,
            "overlap_px": self.overlap_px, "batch_size": self.batch_size, "providers": self.providers,
            "threads": self.threads, "probabilities": self.probabilities, "geojson": self.geojson,
            "skip_background": self.skip_background, "min_tissue_fraction": self.min_tissue_fraction,
            "tissue_mpp": self.tissue_mpp, "reader_threads": self.reader_threads, "readers": self.readers,
            "checkpoint_interval_s": self.checkpoint_interval_s, "geojson_max_px": self.geojson_max_px,
            "thumbnail_px": self.thumbnail_px, "progress": self.progress, "tissue_threshold": self.tissue_threshold,
            "roi": self.roi, "outside_tissue": self.outside_tissue, "max_pixels": self.max_pixels,
            "overwrite": self.overwrite, "lock_wait_s": self.lock_wait_s,
            "geojson_simplify_um": self.geojson_simplify_um,
        }

    # ------------------------------------------------------------------ one slide
    def segment(
        self,
        path: str | Path | SlideReader,
        out_dir: str | Path,
        slide_mpp: float | None = None,
        force: bool = False,
        progress: Progress | None = None,
    ) -> SlideResult:
        """Segment one slide or image into ``out_dir``.

        The folder is locked while the slide runs, and must be new, empty, or
        made earlier for this same input (``source.json`` says which); results
        of another model in it are replaced only with ``overwrite``.

        Args:
            path: str, path or SlideReader. Slide (any OpenSlide format) or
                plain image, or an open reader such as an ``ArrayReader`` over
                an image in memory (never skipped or resumed: it has no file).
            out_dir: str or path. Output folder of this slide.
            slide_mpp: float, optional. Level-0 microns per pixel, overriding
                the file (required for files without resolution). Defaults to ``None``.
            force: bool. Run again even if ``out_dir`` holds a complete result
                made with the same settings. Defaults to ``False``.
            progress: Progress, optional. Shared progress of a batch run.

        Returns:
            SlideResult with the summary (``status`` ``"done"`` or ``"skipped"``).

        Raises:
            SlideError: the slide is missing, corrupt or has no mpp.
            OutputError: the folder is locked, belongs to another input or
                model, is a link, or cannot be written (full, read-only).
            WeaksegError: other bad input.
        """
        from weaksegtf.slides import open_slide

        _positive("slide mpp (--mpp)", slide_mpp)
        start = time.perf_counter()
        out_dir = Path(out_dir)
        progress = progress or Progress(1, enabled=self.progress)
        if isinstance(path, SlideReader):
            opened = contextlib.nullcontext(path)
            path = path.path if path.path is not None else Path(f"<{path.name}>")
            key = input_key(path) if path.is_file() else f"<in memory: {path.name}>"
        else:
            path = Path(path)
            key = input_key(path)
            opened = None
        check_claim(out_dir, key, self.model.model_sha256, self.overwrite or force)
        if opened is None:
            opened = open_slide(path, mpp=slide_mpp, max_pixels=self.max_pixels)
        with opened as slide:
            width, height = slide.size_at_mpp(self.mpp)
            plan = plan_tiles(width, height, self.tile_size_px, self.overlap_px)
            settings = self._settings(slide, plan)
            if not out_dir.parent.is_dir():
                try:
                    out_dir.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise storage_error(error, out_dir.parent) from None
            make_folder(out_dir)
            with OutputLock(out_dir, self.lock_wait_s):
                check_claim(out_dir, key, self.model.model_sha256, self.overwrite or force)
                remove_stale_partials(out_dir)
                previous = _read_json(out_dir / SUMMARY_NAME)
                if not force and previous is not None and previous.get("settings") == settings:
                    progress.start_slide(slide.name, 0)
                    progress.end_slide("already complete")
                    return SlideResult(path, "skipped", out_dir, previous)
                write_claim(out_dir, key, str(self.model.path), self.model.model_sha256)
                if previous is not None:  # the folder is incomplete from here until the new summary
                    refuse_link(out_dir / SUMMARY_NAME)
                    discard(out_dir / SUMMARY_NAME)
                summary = self._segment_locked(slide, path, out_dir, plan, settings, progress)
                _remove_stale_outputs(out_dir, previous, summary)
                summary["timings_s"]["total"] = round(time.perf_counter() - start, 3)
                write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
                shutil.rmtree(out_dir / WORK_NAME, ignore_errors=True)
            progress.end_slide(f"done in {summary['timings_s']['total']:.1f}s")
            return SlideResult(path, "done", out_dir, summary)

    def _segment_locked(
        self, slide: SlideReader, path: Path, out_dir: Path, plan: TilePlan, settings: dict[str, Any],
        progress: Progress,
    ) -> dict[str, Any]:
        """The tiles and outputs of one slide, in its locked folder; returns the summary (without total time)."""
        work = make_folder(out_dir / WORK_NAME)
        remove_stale_partials(work)
        # Reader processes start now and open the slide while this process makes the tissue mask.
        opener = SlideOpener.for_slide(slide, self.max_pixels) if self.readers is not None else None
        with ReaderProcesses(opener, self.readers) if opener is not None else contextlib.nullcontext() as readers:
            summary = self._segment_with(slide, path, out_dir, work, plan, settings, progress, readers)
        summary["tile_readers"] = ({"processes": self.readers} if opener is not None else
                                   {"threads": self.reader_threads})
        return summary

    def _segment_with(
        self, slide: SlideReader, path: Path, out_dir: Path, work: Path, plan: TilePlan, settings: dict[str, Any],
        progress: Progress, readers: ReaderProcesses | None,
    ) -> dict[str, Any]:
        timings: dict[str, float] = {}
        tick = time.perf_counter()
        tissue = self._tissue(slide)
        scale = self.mpp / slide.mpp  # level-0 pixels per inference pixel
        if self.skip_background:
            run = tissue_tiles(plan, tissue.tissue_fractions, scale, self.min_tissue_fraction)
        else:
            run = (plan.owned_boxes()[:, 2:] > plan.owned_boxes()[:, :2]).all(axis=1)
        timings["tissue"] = time.perf_counter() - tick

        checkpoint = Checkpoint(work, settings, plan.n_tiles, self.checkpoint_interval_s)
        labels = TileStore(work / "labels.bin", plan, 1)
        probabilities = None
        try:
            if self.probabilities:
                probabilities = TileStore(work / "probabilities.bin", plan, self.model.metadata.num_classes)
            resumed_run = int((run & checkpoint.done).sum())
            outside = _outside_mask(tissue, plan, scale) if self.outside_tissue == "background" else None
            tick = time.perf_counter()
            wait_s, session_s = self._run_tiles(slide, plan, run, checkpoint, labels, probabilities, progress,
                                                outside, readers)
            timings.update(inference=time.perf_counter() - tick, session=session_s, session_wait=wait_s)
            if readers is not None:
                readers.close()  # idle from here on: their memory is free while the outputs are written
            tick = time.perf_counter()
            summary = write_slide_outputs(
                slide, plan, self.model.metadata, self.mpp, labels, probabilities, out_dir,
                self.geojson, self.geojson_max_px, self.thumbnail_px,
                id_seed=f"{settings['model_sha256']}:{settings['slide']}", geojson_simplify_um=self.geojson_simplify_um)
            timings["writing"] = time.perf_counter() - tick
        finally:
            checkpoint.close()
            labels.close()
            if probabilities is not None:
                probabilities.close()
        n_run = int(run.sum())
        run_now = n_run - resumed_run
        width, height = plan.width_px, plan.height_px
        return {
            "slide": str(path), "input": settings["slide"], "status": "done",
            "slide_size_px": list(slide.dimensions), "slide_mpp": slide.mpp, "mpp": self.mpp,
            "level_read": slide.best_level_for_mpp(self.mpp), "output_size_px": [width, height],
            "tile_size_px": plan.tile_size_px, "overlap_px": plan.overlap_px, "batch_size": self.batch_size,
            "tissue_area_mm2": tissue.area_um2 * 1e-6, "tissue_threshold": self.tissue_threshold,
            "roi": settings["roi"], "outside_tissue": self.outside_tissue, **summary,
            # ``run`` counts every tissue tile of the slide; ``resumed`` those of them a previous,
            # interrupted run had finished, so ``run_now = run - resumed`` ran in this one.
            "tiles": {"total": plan.n_tiles, "run": n_run, "skipped_background": plan.n_tiles - n_run,
                      "resumed": resumed_run, "run_now": run_now},
            "tiles_per_s": run_now / timings["inference"] if run_now and timings["inference"] > 0 else None,
            "model": self.model.describe(),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "settings": settings,
        }

    # ------------------------------------------------------------------ steps
    def _check_fixed_dimensions(self) -> None:
        """A model exported with a fixed batch or tile size must be run with those sizes."""
        shape = list(self.model.session.get_inputs()[0].shape)
        name = self.model.path.name
        if isinstance(shape[0], int) and shape[0] > 0 and shape[0] != self.batch_size:
            raise ConfigError(f"model {name} takes batches of exactly {shape[0]} tiles; pass --batch-size "
                              f"{shape[0]} (batch_size={shape[0]}), got {self.batch_size}")
        for dim in shape[1:3]:
            if isinstance(dim, int) and dim > 0 and dim != self.tile_size_px:
                raise ConfigError(f"model {name} takes tiles of exactly {shape[1]} x {shape[2]} px; pass "
                                  f"--tile-size {dim}, got {self.tile_size_px}")

    def _tissue(self, slide: SlideReader):
        """The slide's tissue mask, limited to the ROI when there is one."""
        from weaksegtf.inference.region_of_interest import roi_mask, roi_path
        from weaksegtf.preprocessing import TissueMask

        tissue = TissueMask.from_slide(slide, mpp=self.tissue_mpp, saturation_threshold=self.tissue_threshold)
        if self.roi is not None:
            downsample = slide.dimensions[0] / tissue.mask.shape[1]
            region = roi_mask(roi_path(self.roi, slide.path), tissue.mask.shape, downsample, self.max_pixels)
            tissue = TissueMask(tissue.mask & region, tissue.mpp, tissue.slide_size_px, tissue.slide_mpp)
        return tissue

    def _settings(self, slide: SlideReader, plan: TilePlan) -> dict[str, Any]:
        """Everything the result depends on; a checkpoint or summary with other settings is not reused."""
        from weaksegtf.inference.region_of_interest import roi_path
        from weaksegtf.inference.session import file_sha256

        if slide.path is not None and slide.path.is_file():
            stat = slide.path.stat()
            source = {"slide": input_key(slide.path), "slide_bytes": stat.st_size,
                      "slide_mtime_ns": stat.st_mtime_ns}
        else:  # an image in memory: nothing identifies it, so never reuse a result
            source = {"slide": f"<in memory: {slide.name}>", "in_memory_run": time.time_ns()}
        roi = None
        if self.roi is not None:
            roi_file = roi_path(self.roi, slide.path)
            roi = {"path": str(roi_file), "sha256": file_sha256(roi_file) if roi_file.is_file() else None}
        return {
            "model_sha256": self.model.model_sha256, **source,
            "slide_size_px": list(slide.dimensions), "slide_mpp": slide.mpp, "mpp": self.mpp,
            "plan": plan.as_dict(), "probabilities": self.probabilities, "geojson": self.geojson,
            "skip_background": self.skip_background, "min_tissue_fraction": self.min_tissue_fraction,
            "tissue_mpp": self.tissue_mpp, "geojson_max_px": self.geojson_max_px,
            "geojson_simplify_um": self.geojson_simplify_um,
            "thumbnail_px": self.thumbnail_px, "tissue_threshold": self.tissue_threshold, "roi": roi,
            "outside_tissue": self.outside_tissue,
        }

    def _run_tiles(
        self,
        slide: SlideReader,
        plan: TilePlan,
        run: np.ndarray,
        checkpoint: Checkpoint,
        labels: TileStore,
        probabilities: TileStore | None,
        progress: Progress,
        outside=None,
        readers: ReaderProcesses | None = None,
    ) -> tuple[float, float]:
        """Run the model on every unfinished tissue tile; returns (session wait, session run) seconds."""
        todo = np.flatnonzero(run & ~checkpoint.done)
        background = np.flatnonzero(~run & ~checkpoint.done)
        progress.start_slide(slide.name, int(run.sum()), int(run.sum()) - len(todo))
        tiles = SlideTiles(plan, self.mpp, self.mpp / slide.mpp, self._normalizer)

        def prefetch() -> TilePrefetcher:
            if readers is None:
                return TilePrefetcher(lambda index: tiles.read(slide, index), todo, self.batch_size, tiles.prepare,
                                      self.reader_threads)
            return TilePrefetcher(None, todo, self.batch_size,
                                  read_batches=lambda chunks: readers.read_batches(tiles, chunks))

        session_s = 0.0
        with Stitcher(plan, labels, checkpoint, probabilities, BACKGROUND_CLASS, outside=outside) as stitcher:
            for chunk in np.array_split(background, max(1, len(background) // 256)):
                if len(chunk):
                    stitcher.submit_background(chunk)
            with prefetch() as batches:
                for indices, images in batches:
                    if len(indices) < self.batch_size:
                        # Always the same batch shape: a tile's result must not depend on its batch.
                        images = np.concatenate(
                            [images, np.zeros((self.batch_size - len(indices),) + images.shape[1:], images.dtype)])
                    tick = time.perf_counter()
                    logits = self.model.run(images)
                    session_s += time.perf_counter() - tick
                    stitcher.submit(indices, logits)
                    progress.advance(len(indices))
                wait_s = batches.wait_s
        return wait_s, session_s


def _outside_mask(tissue, plan: TilePlan, scale: float):
    """``index -> (h, w) bool`` of a tile's owned box: True where the tissue mask (nearest pixel) has none."""
    mask = tissue.mask
    height, width = mask.shape
    to_mask_x = width / tissue.slide_size_px[0] * scale
    to_mask_y = height / tissue.slide_size_px[1] * scale

    def outside(index: int) -> np.ndarray:
        x0, y0, x1, y1 = plan.owned_box(index)
        cols = np.minimum(((np.arange(x0, x1) + 0.5) * to_mask_x).astype(np.int64), width - 1)
        rows = np.minimum(((np.arange(y0, y1) + 0.5) * to_mask_y).astype(np.int64), height - 1)
        return ~mask[np.ix_(rows, cols)]

    return outside


def _remove_stale_outputs(out_dir: Path, previous: dict | None, summary: dict) -> None:
    """Delete probability files an earlier run of this slide wrote that this run did not (same names only)."""
    if not previous:
        return
    old = set((previous.get("outputs") or {}).get("probabilities") or [])
    new = set(summary["outputs"]["probabilities"])
    for name in sorted(old - new):
        if isinstance(name, str) and "/" not in name and name.startswith("probabilities_"):
            refuse_link(out_dir / name)
            discard(out_dir / name)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _macenko_from_metadata(document: dict[str, Any], model_path: Path):
    """A fitted ``MacenkoNormalizer`` from the (checked) reference stored in the model's metadata."""
    from weaksegtf.preprocessing.macenko_normalizer import MacenkoNormalizer

    return MacenkoNormalizer.from_reference(document, f"in the metadata of {model_path}")
