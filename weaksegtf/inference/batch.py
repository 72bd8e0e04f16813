"""Many slides in one run: a failing slide is recorded with its reason and the others go on.

The slides run one after another in this process, or as tasks on a Dask
cluster (``cluster=``); either way this module alone locks ``--out`` and
writes the run's records.

The output folder is locked for the whole run, every output is checked
before the first slide starts, and the run's records (``batch_summary.json``,
``cohort.csv``) are merged with those of earlier runs into the same folder,
one row per slide, never overwritten wholesale.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from weaksegtf.errors import OutputError, WeaksegError
from weaksegtf.inference.cluster_settings import ClusterSettings
from weaksegtf.inference.folder_claim import SOURCE_NAME, check_claim, claimed_input
from weaksegtf.inference.inputs import find_inputs
from weaksegtf.inference.output_lock import LOCK_NAME, OutputLock
from weaksegtf.io import (
    is_storage_error,
    refuse_link,
    remove_stale_partials,
    storage_error,
    write_text_atomic,
)
from weaksegtf.inference.slide_segmenter import SlideResult, SlideSegmenter
from weaksegtf.output_names import input_key, output_names
from weaksegtf.progress import Progress

BATCH_SUMMARY_NAME = "batch_summary.json"
COHORT_NAME = "cohort.csv"
#: Names in ``--out`` that no slide folder may take.
RESERVED_NAMES = (BATCH_SUMMARY_NAME, COHORT_NAME, LOCK_NAME, SOURCE_NAME)


@dataclass
class BatchResult:
    """Every slide's :class:`SlideResult`, in input order, and where the run summary went."""

    slides: list[SlideResult] = field(default_factory=list)
    summary_path: Path | None = None
    cohort_path: Path | None = None
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


def _folder_key(slide: SlideResult) -> str:
    return slide.out_dir.name if slide.out_dir is not None else str(slide.path)


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def merged_batch_summary(previous: dict, result: BatchResult, run: dict[str, Any]) -> dict[str, Any]:
    """This run's rows merged into an earlier ``batch_summary.json``: one row per slide folder, latest first wins.

    ``slides``, ``counts`` and ``failures`` describe every slide ever run into
    the folder (its latest outcome); ``runs`` lists every run with its own counts.
    """
    rows = {row.get("out_dir") or row.get("path"): row for row in previous.get("slides", []) if isinstance(row, dict)}
    for slide in result.slides:
        row = slide.as_dict()
        row["run_started"] = run["started"]
        rows[row["out_dir"] or row["path"]] = row
    slides = sorted(rows.values(), key=lambda r: str(r.get("out_dir") or r.get("path")))
    runs = [r for r in previous.get("runs", []) if isinstance(r, dict) and r.get("started") != run["started"]]
    counts = {status: sum(r.get("status") == status for r in slides) for status in ("done", "skipped", "failed")}
    return {
        "slides": slides, "counts": counts,
        "failures": [{"path": r.get("path"), "error": r.get("error")} for r in slides if r.get("status") == "failed"],
        "runs": runs + [{**run, **result.as_dict(), "slides": [_folder_key(s) for s in result.slides]}],
    }


def cohort_rows(result: BatchResult) -> list[dict[str, str]]:
    """One cohort row per slide of this run: folder, input, status, areas (mm²), model, error."""
    rows = []
    for slide in result.slides:
        summary = slide.summary or {}
        row = {"slide": _folder_key(slide), "input": str(summary.get("input") or slide.path),
               "status": "failed" if slide.status == "failed" else "done",
               "tissue_area_mm2": "", "model_sha256": str((summary.get("settings") or {}).get("model_sha256", "")),
               "error": slide.error or ""}
        if summary:
            row["tissue_area_mm2"] = f"{summary.get('tissue_area_mm2', 0.0):.6f}"
            for name, area in (summary.get("class_area_mm2") or {}).items():
                row[f"area_mm2_{name}"] = f"{area:.6f}"
        rows.append(row)
    return rows


def merge_cohort_csv(path: Path, rows: list[dict[str, str]]) -> str:
    """The text of ``cohort.csv`` with ``rows`` replacing earlier rows of the same slide (others kept)."""
    merged: dict[str, dict[str, str]] = {}
    columns = ["slide", "input", "status", "tissue_area_mm2"]
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns += [c for c in reader.fieldnames or [] if c not in columns]
            for row in reader:
                if row.get("slide"):
                    merged[row["slide"]] = row
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise OutputError(f"cannot read {path} to update it: {error}; expected the cohort CSV weakseg-infer "
                          f"wrote (move it away to start a new one)") from None
    for row in rows:
        merged[row["slide"]] = row
        columns += [c for c in row if c not in columns and c not in ("model_sha256", "error")]
    columns += ["model_sha256", "error"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(columns)), restval="", extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for key in sorted(merged):
        writer.writerow(merged[key])
    return text.getvalue()


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``--out`` if needed; refuse a file or a folder that cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file; expected a folder (new or made by weakseg-infer)")
    if not out_dir.exists():
        refuse_link(out_dir)  # a dangling link
        try:
            out_dir.mkdir(parents=True)
        except FileExistsError:
            pass
        except OSError as error:
            raise storage_error(error, out_dir) from None
    return out_dir


def run_slide(
    segmenter: SlideSegmenter,
    path: Path,
    folder: Path,
    slide_mpp: float | None,
    force: bool,
    progress: Progress,
) -> SlideResult:
    """One slide of a batch run: its result, or a ``"failed"`` result with the reason.

    Used alike by the single-process run and by each Dask task, so that a
    slide fails the same way wherever it runs.

    Raises:
        OutputError: the output folder cannot take the results (full, read-only,
            locked, a link): this stops the whole run.
    """
    try:
        return segmenter.segment(path, folder, slide_mpp=slide_mpp, force=force, progress=progress)
    except BaseException as error:  # noqa: BLE001 - sorted below: storage stops the run, the rest fail one slide
        if is_storage_error(error):
            raise error if isinstance(error, OutputError) else storage_error(
                error, error.filename or folder) from None
        if not isinstance(error, Exception):
            raise
        reason = str(error) if isinstance(error, (WeaksegError, OSError, MemoryError)) else (
            f"{type(error).__name__}: {error}")
        slide = SlideResult(path, "failed", folder, error=reason or type(error).__name__)
        progress.fail_slide(path.name, slide.error)
        return slide


def segment_slides(
    segmenter: SlideSegmenter,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    slide_mpp: float | None = None,
    force: bool = False,
    lock_wait_s: float | None = None,
    cluster: ClusterSettings | None = None,
) -> BatchResult:
    """Segment every slide of ``inputs`` into its own folder of ``out_dir``.

    Inputs may be files, folders (their slide and image files) and glob
    patterns. Each slide's folder is named by :func:`output_names`: its file
    name without the suffix, or with a hash of its resolved path added when
    another input holds that name, so a slide keeps its folder whatever else
    a run holds. Before the first slide starts, ``out_dir`` is locked
    (another run on it is refused, see :class:`OutputLock`) and every slide
    folder that exists is checked: one made for another model is refused
    unless the segmenter has ``overwrite``. A slide's folder is created (and
    claimed in ``source.json``) once its file opens, so nothing is written
    for a slide that cannot be read.

    A slide that cannot be read (missing, corrupt, truncated, no mpp, too
    large) is recorded as ``"failed"`` with the reason and the run continues;
    a slide whose folder already holds a complete result made with the same
    settings is ``"skipped"``. A full disk or read-only folder stops the run
    with :class:`OutputError` (what was finished stays; running the same
    command again resumes). ``batch_summary.json`` and ``cohort.csv`` are
    updated after each slide, merged by slide folder with earlier runs.

    With ``cluster``, each slide is one task on a Dask cluster (see
    :class:`ClusterSettings` and :mod:`~weaksegtf.inference.cluster_run`);
    everything else, the records above included, is done here as without it,
    so both give the same files.

    Args:
        segmenter: SlideSegmenter. Model and settings.
        inputs: iterable of str or path. Slides, folders and globs.
        out_dir: str or path. Output folder.
        slide_mpp: float, optional. Level-0 mpp for slides that lack one (or
            to override theirs). Defaults to ``None``.
        force: bool. Recompute complete slides. Defaults to ``False``.
        lock_wait_s: float, optional. Seconds to wait for another run on
            ``out_dir``. Defaults to ``None``: the segmenter's ``lock_wait_s``.
        cluster: ClusterSettings, optional. Run the slides on Dask workers.
            Defaults to ``None``: one slide after another in this process.

    Returns:
        BatchResult. ``result.failed`` lists the failures.

    Raises:
        OutputError: ``out_dir`` is a file, locked, not writable or full, or a
            slide folder belongs to another model (without ``overwrite``).
        ClusterError: with ``cluster``: dask.distributed is not installed, the
            scheduler cannot be reached, or the cluster lost the run.

    Example:
    >>> result = segment_slides(SlideSegmenter("model.onnx"), ["slides/*.svs"], "out")  # doctest: +SKIP
    >>> [(s.path.name, s.error) for s in result.failed]  # doctest: +SKIP
    """
    start = time.perf_counter()
    if cluster is not None:
        from weaksegtf.inference.cluster_run import require_distributed

        require_distributed()  # before anything is written
    out_dir = prepare_out_dir(Path(out_dir))
    paths = find_inputs(inputs)
    wait_s = segmenter.lock_wait_s if lock_wait_s is None else float(lock_wait_s)
    run = {"started": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
           "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "model": str(segmenter.model.path),
           "model_sha256": segmenter.model.model_sha256}
    result = BatchResult(summary_path=out_dir / BATCH_SUMMARY_NAME, cohort_path=out_dir / COHORT_NAME)
    with OutputLock(out_dir, wait_s):
        for name in RESERVED_NAMES[:2]:
            refuse_link(out_dir / name)
        remove_stale_partials(out_dir)
        names = output_names(paths, lambda name: claimed_input(out_dir / name), RESERVED_NAMES)
        folders = [out_dir / name for name in names]
        overwrite = segmenter.overwrite or force
        for path, folder in zip(paths, folders):  # every refusal before any slide is touched
            check_claim(folder, input_key(path), segmenter.model.model_sha256, overwrite)
            if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(f"cannot write {folder}: permission denied; expected a folder this user can "
                                  f"write, or choose another --out")
        previous = _read_json(result.summary_path)
        progress = Progress(len(paths), enabled=segmenter.progress)
        finished: dict[int, SlideResult] = {}

        def record(index: int, slide: SlideResult) -> None:
            """Rewrite the run's records with every slide finished so far, in input order."""
            finished[index] = slide
            result.slides = [finished[i] for i in sorted(finished)]
            result.seconds = time.perf_counter() - start
            document = merged_batch_summary(previous, result, {**run, "seconds": round(result.seconds, 3)})
            write_text_atomic(result.summary_path, json.dumps(document, indent=2) + "\n")
            write_text_atomic(result.cohort_path, merge_cohort_csv(result.cohort_path, cohort_rows(result)))

        if cluster is None:
            for index, (path, folder) in enumerate(zip(paths, folders)):
                record(index, run_slide(segmenter, path, folder, slide_mpp, force, progress))
        else:
            from weaksegtf.inference.cluster_run import segment_on_cluster

            segment_on_cluster(cluster, segmenter, list(zip(paths, folders)), slide_mpp, force, progress, record)
    return result
