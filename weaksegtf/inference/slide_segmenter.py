"""``SlideSegmenter``: one exported ONNX model run over whole slides, tile by tile, into viewer-ready files."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from weaksegtf.errors import ConfigError
from weaksegtf.inference.checkpoint import Checkpoint
from weaksegtf.inference.prefetch import TilePrefetcher
from weaksegtf.inference.progress import Progress
from weaksegtf.inference.session import ModelSession, load_session
from weaksegtf.inference.slide_outputs import write_slide_outputs
from weaksegtf.inference.stitcher import Stitcher
from weaksegtf.inference.tile_scheduler import SIZE_MULTIPLE_PX, TilePlan, plan_tiles, tissue_tiles
from weaksegtf.inference.tile_store import TileStore
from weaksegtf.inference.writers import write_text_atomic
from weaksegtf.slides.slide_reader import SlideReader

#: Training tile side assumed when the model's metadata has none.
DEFAULT_TRAINING_TILE_PX = 128
BACKGROUND_CLASS = 0
SUMMARY_NAME = "summary.json"


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
    threads while the onnxruntime session runs batches; tiles without tissue
    are labelled background (class 0) without running the model; each tile
    keeps only the centre of its overlap (seam-free, see ``Stitcher``);
    results stream to disk, so memory does not grow with slide area; a
    killed run resumes from its checkpoint. Per slide it writes, into its
    output folder: ``labels.tif`` (pyramidal palette TIFF of class indices at
    ``mpp``), ``probabilities_<i>_<class>.tif`` (optional, uint8),
    ``overlay.png``, ``annotations.geojson`` (QuPath) and ``summary.json``
    (written last: its presence means the slide is complete).

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
        probabilities: bool. Also write per-class probability pyramids. Defaults to ``False``.
        geojson: bool. Write ``annotations.geojson``. Defaults to ``True``.
        skip_background: bool. Label tiles without tissue as background without
            running the model. Defaults to ``True``.
        min_tissue_fraction: float. Tiles whose owned box has at most this
            tissue fraction are skipped. Defaults to 0.
        tissue_mpp: float. Resolution of the tissue mask. Defaults to 8.
        reader_threads: int. Threads reading tiles. Defaults to 2.
        checkpoint_interval_s: float. Seconds between checkpoint commits. Defaults to 5.
        geojson_max_px: int. Polygons are traced on the finest label level whose
            longer side is at most this (bounding memory). Defaults to 4096.
        thumbnail_px: int. Longer side of ``overlay.png``. Defaults to 1024.
        progress: bool. Print progress to stderr. Defaults to ``True``.

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
        checkpoint_interval_s: float = 5.0,
        geojson_max_px: int = 4096,
        thumbnail_px: int = 1024,
        progress: bool = True,
    ) -> None:
        self.model = model if isinstance(model, ModelSession) else load_session(model, providers, threads)
        metadata = self.model.metadata
        self.mpp = mpp if mpp is not None else metadata.mpp
        if self.mpp is None or not self.mpp > 0:
            raise ConfigError(
                f"model {self.model.path.name} has no mpp in its metadata and none was given; pass mpp= "
                f"(--inference-mpp) with the microns per pixel the model was trained at, got {mpp!r}"
            )
        self.tile_size_px, default_overlap = default_tiling(metadata.tile_size_px, tile_size_px)
        self.overlap_px = default_overlap if overlap_px is None else int(overlap_px)
        plan_tiles(self.tile_size_px, self.tile_size_px, self.tile_size_px, self.overlap_px)  # validates both
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.probabilities = bool(probabilities)
        self.geojson = bool(geojson)
        self.skip_background = bool(skip_background)
        self.min_tissue_fraction = float(min_tissue_fraction)
        self.tissue_mpp = float(tissue_mpp)
        self.reader_threads = int(reader_threads)
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self.geojson_max_px = int(geojson_max_px)
        self.thumbnail_px = int(thumbnail_px)
        self.progress = bool(progress)
        macenko = metadata.macenko
        self._normalizer = _macenko_from_metadata(macenko) if macenko else None

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
            WeaksegError: other bad input; OSError for a full disk and the like.
        """
        from weaksegtf.preprocessing import TissueMask
        from weaksegtf.slides import open_slide

        start = time.perf_counter()
        out_dir = Path(out_dir)
        progress = progress or Progress(1, enabled=self.progress)
        if isinstance(path, SlideReader):
            opened = contextlib.nullcontext(path)
            path = path.path if path.path is not None else Path(f"<{path.name}>")
        else:
            path = Path(path)
            opened = open_slide(path, mpp=slide_mpp)
        with opened as slide:
            width, height = slide.size_at_mpp(self.mpp)
            plan = plan_tiles(width, height, self.tile_size_px, self.overlap_px)
            settings = self._settings(slide, plan)
            previous = _read_json(out_dir / SUMMARY_NAME)
            if not force and previous is not None and previous.get("settings") == settings:
                progress.start_slide(slide.name, 0)
                progress.end_slide("already complete")
                return SlideResult(path, "skipped", out_dir, previous)
            out_dir.mkdir(parents=True, exist_ok=True)
            work = out_dir / ".work"
            timings: dict[str, float] = {}

            tick = time.perf_counter()
            tissue = TissueMask.from_slide(slide, mpp=self.tissue_mpp)
            scale = self.mpp / slide.mpp  # level-0 pixels per inference pixel
            if self.skip_background:
                run = tissue_tiles(plan, tissue.tissue_fractions, scale, self.min_tissue_fraction)
            else:
                run = (plan.owned_boxes()[:, 2:] > plan.owned_boxes()[:, :2]).all(axis=1)
            timings["tissue"] = time.perf_counter() - tick

            checkpoint = Checkpoint(work, settings, plan.n_tiles, self.checkpoint_interval_s)
            labels = TileStore(work / "labels.bin", plan, 1)
            probabilities = (TileStore(work / "probabilities.bin", plan, self.model.metadata.num_classes)
                             if self.probabilities else None)
            try:
                tick = time.perf_counter()
                wait_s, session_s = self._run_tiles(slide, plan, run, checkpoint, labels, probabilities, progress)
                timings.update(inference=time.perf_counter() - tick, session=session_s, session_wait=wait_s)
                tick = time.perf_counter()
                summary = write_slide_outputs(
                    slide, plan, self.model.metadata, self.mpp, labels, probabilities, out_dir,
                    self.geojson, self.geojson_max_px, self.thumbnail_px)
                timings["writing"] = time.perf_counter() - tick
            finally:
                checkpoint.close()
                labels.close()
                if probabilities is not None:
                    probabilities.close()
            n_run = int(run.sum())
            timings["total"] = time.perf_counter() - start
            summary = {
                "slide": str(path), "status": "done",
                "slide_size_px": list(slide.dimensions), "slide_mpp": slide.mpp, "mpp": self.mpp,
                "level_read": slide.best_level_for_mpp(self.mpp), "output_size_px": [width, height],
                "tile_size_px": plan.tile_size_px, "overlap_px": plan.overlap_px, "batch_size": self.batch_size,
                "tissue_area_mm2": tissue.area_um2 * 1e-6, **summary,
                "tiles": {"total": plan.n_tiles, "run": n_run, "skipped_background": plan.n_tiles - n_run,
                          "resumed": checkpoint.resumed_tiles},
                "tiles_per_s": (n_run - min(n_run, checkpoint.resumed_tiles)) / max(timings["inference"], 1e-9),
                "model": self.model.describe(),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "settings": settings,
            }
            write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
            shutil.rmtree(work, ignore_errors=True)
            progress.end_slide(f"done in {timings['total']:.1f}s")
            return SlideResult(path, "done", out_dir, summary)

    # ------------------------------------------------------------------ steps
    def _settings(self, slide: SlideReader, plan: TilePlan) -> dict[str, Any]:
        """Everything the result depends on; a checkpoint or summary with other settings is not reused."""
        if slide.path is not None and slide.path.is_file():
            stat = slide.path.stat()
            source = {"slide": str(slide.path.resolve()), "slide_bytes": stat.st_size,
                      "slide_mtime_ns": stat.st_mtime_ns}
        else:  # an image in memory: nothing identifies it, so never reuse a result
            source = {"slide": slide.name, "in_memory_run": time.time_ns()}
        return {
            "model_sha256": self.model.model_sha256, **source,
            "slide_size_px": list(slide.dimensions), "slide_mpp": slide.mpp, "mpp": self.mpp,
            "plan": plan.as_dict(), "probabilities": self.probabilities, "geojson": self.geojson,
            "skip_background": self.skip_background, "min_tissue_fraction": self.min_tissue_fraction,
            "tissue_mpp": self.tissue_mpp, "geojson_max_px": self.geojson_max_px,
            "thumbnail_px": self.thumbnail_px,
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
    ) -> tuple[float, float]:
        """Run the model on every unfinished tissue tile; returns (session wait, session run) seconds."""
        todo = np.flatnonzero(run & ~checkpoint.done)
        background = np.flatnonzero(~run & ~checkpoint.done)
        progress.start_slide(slide.name, int(run.sum()), int(run.sum()) - len(todo))
        scale = self.mpp / slide.mpp
        size = (plan.tile_size_px, plan.tile_size_px)

        def read_tile(index: int) -> np.ndarray:
            x, y = plan.origin(index)
            return slide.read_at_mpp((int(round(x * scale)), int(round(y * scale))), size, self.mpp)

        session_s = 0.0
        with Stitcher(plan, labels, checkpoint, probabilities, BACKGROUND_CLASS) as stitcher:
            for chunk in np.array_split(background, max(1, len(background) // 256)):
                if len(chunk):
                    stitcher.submit_background(chunk)
            with TilePrefetcher(read_tile, todo, self.batch_size, self._preprocess, self.reader_threads) as batches:
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

    def _preprocess(self, tiles: np.ndarray) -> np.ndarray:
        if self._normalizer is None:
            return tiles
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unstained (background) tiles are left as they are
            return self._normalizer.transform(tiles)

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _macenko_from_metadata(document: dict[str, Any]):
    """A fitted ``MacenkoNormalizer`` from the reference stored in the model's metadata."""
    from weaksegtf.preprocessing import MacenkoNormalizer

    normalizer = MacenkoNormalizer(**document.get("config", {}))
    normalizer.stain_matrix = np.asarray(document["stain_matrix"], dtype=np.float64)
    normalizer.max_concentrations = np.asarray(document["max_concentrations"], dtype=np.float64)
    return normalizer
