"""Many slides in one run: a failing slide is recorded with its reason and the others go on."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from weaksegtf.errors import WeaksegError
from weaksegtf.inference.inputs import find_inputs, output_names
from weaksegtf.inference.progress import Progress
from weaksegtf.inference.slide_segmenter import SlideResult, SlideSegmenter
from weaksegtf.inference.writers import write_text_atomic

BATCH_SUMMARY_NAME = "batch_summary.json"


@dataclass
class BatchResult:
    """Every slide's :class:`SlideResult`, in input order, and where the run summary went."""

    slides: list[SlideResult] = field(default_factory=list)
    summary_path: Path | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[SlideResult]:
        return [s for s in self.slides if s.status == "failed"]

    def as_dict(self) -> dict:
        counts = {status: sum(s.status == status for s in self.slides) for status in ("done", "skipped", "failed")}
        return {
            "slides": [s.as_dict() for s in self.slides], "counts": counts,
            "failures": [{"path": str(s.path), "error": s.error} for s in self.failed],
            "seconds": round(self.seconds, 3),
        }


def segment_slides(
    segmenter: SlideSegmenter,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    slide_mpp: float | None = None,
    force: bool = False,
) -> BatchResult:
    """Segment every slide of ``inputs`` into ``out_dir/<slide name>/``.

    Inputs may be files, folders (their slide and image files) and glob
    patterns. A slide that cannot be read (missing, corrupt, truncated, no
    mpp, an unreadable region) is recorded as ``"failed"`` with the reason and
    the run continues; a slide whose folder already holds a complete result
    made with the same settings is ``"skipped"``. ``out_dir/batch_summary.json``
    lists every slide and every failure (rewritten atomically after each
    slide, so it is current even if the run is stopped).

    Args:
        segmenter: SlideSegmenter. Model and settings.
        inputs: iterable of str or path. Slides, folders and globs.
        out_dir: str or path. Output folder.
        slide_mpp: float, optional. Level-0 mpp for slides that lack one (or
            to override theirs). Defaults to ``None``.
        force: bool. Recompute complete slides. Defaults to ``False``.

    Returns:
        BatchResult. ``result.failed`` lists the failures.

    Example:
    >>> result = segment_slides(SlideSegmenter("model.onnx"), ["slides/*.svs"], "out")  # doctest: +SKIP
    >>> [(s.path.name, s.error) for s in result.failed]  # doctest: +SKIP
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    paths = find_inputs(inputs)
    names = output_names(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BatchResult(summary_path=out_dir / BATCH_SUMMARY_NAME)
    progress = Progress(len(paths), enabled=segmenter.progress)
    for path, name in zip(paths, names):
        try:
            slide = segmenter.segment(path, out_dir / name, slide_mpp=slide_mpp, force=force, progress=progress)
        except (WeaksegError, OSError, MemoryError) as error:
            reason = str(error) or type(error).__name__
            slide = SlideResult(path, "failed", out_dir / name, error=reason)
            progress.fail_slide(path.name, reason)
        except Exception as error:  # noqa: BLE001 - a bug or a library error on one slide must not stop the run
            reason = f"{type(error).__name__}: {error}"
            slide = SlideResult(path, "failed", out_dir / name, error=reason)
            progress.fail_slide(path.name, reason)
        result.slides.append(slide)
        result.seconds = time.perf_counter() - start
        write_text_atomic(result.summary_path, json.dumps(result.as_dict(), indent=2) + "\n")
    return result
