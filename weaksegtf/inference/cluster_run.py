"""A batch run's slides as tasks on a Dask cluster: one task per slide; the client records every result.

``dask.distributed`` is imported only here, inside the functions, and only
when a run asks for a cluster (``--workers`` / ``--scheduler``): the base
install and the single-process run never need it. What a task does is
:func:`~weaksegtf.inference.batch.run_slide`, the single-process run's own
step, in a worker that opened the model once (:class:`SegmenterPlugin`);
:func:`~weaksegtf.inference.segment_slides` keeps the lock on ``--out``, the
checks before the first slide and the records, so both runs write the same
files.

A worker lost mid-slide (killed, out of memory, node gone) releases the
slide folder's lock with its process; the scheduler starts the slide again
on another worker, which resumes from the tile store and checkpoint on
disk, up to ``worker_losses`` times (Dask's ``allowed-failures``). After
that, or for any error of the slide itself, the slide is recorded as
failed and the others go on.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

from weaksegtf.errors import ClusterError, WeaksegError
from weaksegtf.inference.cluster_settings import CLUSTER_EXTRA, ClusterSettings
from weaksegtf.inference.session import default_threads
from weaksegtf.inference.slide_segmenter import SlideResult, SlideSegmenter
from weaksegtf.progress import Progress


def require_distributed():
    """The ``distributed`` module, or a :class:`ClusterError` naming the extra to install."""
    try:
        import distributed
    except ImportError as error:
        raise ClusterError(f"--workers and --scheduler need dask.distributed, which is not installed ({error}); "
                           f"install it with: pip install \"{CLUSTER_EXTRA}\"") from None
    return distributed


@contextlib.contextmanager
def connect(settings: ClusterSettings, reader_processes: bool = False) -> Iterator:
    """A ``distributed.Client`` of a new local cluster (closed afterwards) or of a running scheduler.

    With ``reader_processes``, the local workers are started as non-daemonic
    processes (replacements too, for the whole run), since daemonic ones may
    not start the reader processes of ``--readers``.
    """
    distributed = require_distributed()
    if settings.n_workers is not None:
        import dask

        # One thread per worker process: a slide is one task, and the process's onnxruntime
        # session and tile readers are what use its cores.
        with dask.config.set({"distributed.worker.daemon": False} if reader_processes else {}), \
                distributed.LocalCluster(
                    n_workers=settings.n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                    scheduler_kwargs={"allowed_failures": settings.worker_losses},
                ) as cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(settings.n_workers)
            yield client
        return
    try:
        client = distributed.Client(settings.scheduler_address, timeout=f"{settings.connect_timeout_s}s")
    except (OSError, ValueError, TypeError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {settings.scheduler_address} ({error}); expected "
                           f"the address a running `dask scheduler` prints, such as tcp://HOST:8786") from None
    with client:
        yield client


def worker_path(settings: ClusterSettings, path: Path | str) -> str:
    """A path as a worker opens it: as given for local workers (they share this working directory), else absolute.

    So a local cluster writes exactly what a single-process run writes, and
    the workers of an existing cluster find the files wherever they were
    started (the summaries then name the absolute paths).
    """
    return str(path) if settings.n_workers is not None else os.path.abspath(path)


def worker_config(settings: ClusterSettings, segmenter: SlideSegmenter) -> dict:
    """What each worker builds its segmenter from: the client's settings, with paths the workers can open.

    Progress is the client's (one line per finished slide). Local workers
    share this machine's cores unless ``threads`` was given; the workers of
    an existing cluster use their own cores.
    """
    config = {**segmenter.get_config(), "model": worker_path(settings, segmenter.model.path), "progress": False}
    if config["threads"] is None and settings.n_workers is not None:
        config["threads"] = max(1, default_threads() // settings.n_workers)
    return config


def _lost_reason(error: BaseException) -> str:
    """A failed slide's reason after its workers kept dying (``distributed.KilledWorker``)."""
    losses = getattr(error, "allowed_failures", None)
    last = getattr(getattr(error, "last_worker", None), "address", None)
    times = f" {losses + 1} time{'s' if losses else ''}" if isinstance(losses, int) else ""
    return (f"the Dask worker holding it died{times} (last: {last or 'unknown'}); the slide may need more memory "
            f"than a worker has, or crash its reader: see the workers' logs, then run again to resume it")


def _report(progress: Progress, slide: SlideResult, worker: str | None) -> None:
    if slide.status == "failed":
        progress.fail_slide(slide.path.name, slide.error or "failed")
        return
    summary = slide.summary or {}
    tiles = (summary.get("tiles") or {}).get("run_now", 0) if slide.status == "done" else 0
    seconds = (summary.get("timings_s") or {}).get("total", 0.0) if slide.status == "done" else 0.0
    status = f"done in {seconds:.1f}s" if slide.status == "done" else "already complete"
    progress.slide_finished(slide.path.name, tiles, seconds, f"{status} on {worker}")


def segment_on_cluster(
    settings: ClusterSettings,
    segmenter: SlideSegmenter,
    jobs: list[tuple[Path, Path]],
    slide_mpp: float | None,
    force: bool,
    progress: Progress,
    record: Callable[[int, SlideResult], None],
) -> None:
    """Run every ``(slide, folder)`` of ``jobs`` as one task; call ``record(index, result)`` as each finishes.

    Called by :func:`~weaksegtf.inference.segment_slides` while it holds the
    lock on the output folder. Results keep the paths as the client named
    them (see :func:`worker_path` for what the workers get).

    Raises:
        OutputError: a worker could not write a slide's folder (the run stops,
            as it does in one process; slides already running finish).
        ClusterError: the scheduler cannot be reached or lost the run.
        WeaksegError: the workers cannot open the model or its providers.
    """
    distributed = require_distributed()
    from weaksegtf.inference.segmenter_plugin import SegmenterPlugin, segment_on_worker

    run_id = uuid.uuid4().hex[:12]
    name = f"weaksegtf-segmenter-{run_id}"
    with connect(settings, reader_processes=segmenter.readers is not None) as client:
        futures: dict = {}
        try:
            client.register_plugin(SegmenterPlugin(worker_config(settings, segmenter), name), name=name)
            for index, (path, folder) in enumerate(jobs):
                future = client.submit(segment_on_worker, name, worker_path(settings, path),
                                       worker_path(settings, folder), slide_mpp, force,
                                       key=f"weakseg-slide-{run_id}-{index}")
                futures[future] = index
            for future in distributed.as_completed(list(futures)):
                index = futures[future]
                path, folder = jobs[index]
                try:
                    slide, worker = future.result()
                except distributed.KilledWorker as error:
                    slide, worker = SlideResult(path, "failed", folder, error=_lost_reason(error)), None
                slide.path, slide.out_dir = path, folder
                _report(progress, slide, worker)
                record(index, slide)
        except WeaksegError:
            client.cancel(list(futures))
            raise
        except Exception as error:
            client.cancel(list(futures))
            raise ClusterError(f"{settings.where} failed the run: {type(error).__name__}: {error}; the slides "
                               f"recorded so far are complete: run the same command again to resume") from error
        except BaseException:
            client.cancel(list(futures))
            raise
        finally:
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(name)
