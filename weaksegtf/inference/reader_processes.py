"""``ReaderProcesses``: worker processes that each open one slide once and read, decode and prepare its tiles.

Threads share one interpreter and one OpenSlide handle: whatever part of a
tile read holds the GIL (the Python around OpenSlide's call, array copies,
stain normalisation) or a lock of the handle runs one thread at a time, and
the threads also share their cores with the parent's session and stitcher.
Processes share neither. Each reader process opens the slide itself (its
own OpenSlide handle), reads, decodes and prepares whole batches of tiles
and sends them back as uint8 arrays to the one onnxruntime session of the
parent process.

The processes come from the standard library's ``ProcessPoolExecutor``,
started with ``forkserver`` (``spawn`` where there is none): never a fork of
the parent, whose onnxruntime and writer threads a fork would copy
mid-flight. A process that dies (killed, out of memory, a crash in a
decoder) breaks the pool, which ``concurrent.futures`` reports at once, so
the slide fails with a message instead of hanging.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from weaksegtf.errors import ConfigError, SlideError, WeaksegError
from weaksegtf.inference.slide_tiles import SlideTiles, Tiles
from weaksegtf.slides.slide_reader import SlideReader

#: How reader processes start: a clean server process forks them (or a fresh interpreter where there is none).
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
#: What the fork server imports once, so that each reader forked from it starts with numpy, OpenCV and OpenSlide
#: loaded (``__main__`` is the standard library's own default).
FORKSERVER_PRELOAD = ("__main__", "weaksegtf.inference.reader_processes", "weaksegtf.slides.openslide_reader",
                      "openslide")
#: Seconds :meth:`ReaderProcesses.close` lets a reader finish its batch before it is terminated.
CLOSE_WAIT_S = 10.0
#: How a daemonic Dask worker is told to let its tasks start processes.
DASK_DAEMON_ADVICE = ("start the Dask workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (or "
                      "distributed.worker.daemon: false in their Dask configuration); weakseg-infer --workers "
                      "does this itself")


def check_can_start_processes(readers: int) -> None:
    """Refuse reader processes where ``multiprocessing`` forbids children: in a daemonic process (a Dask worker).

    Raises:
        ConfigError: naming the setting and how to start the workers instead.
    """
    if multiprocessing.current_process().daemon:
        raise ConfigError(f"readers={readers} (--readers) starts reader processes, but this process "
                          f"({multiprocessing.current_process().name}) is daemonic and may not have children; "
                          f"{DASK_DAEMON_ADVICE}")


@dataclass(frozen=True)
class SlideOpener:
    """Opens, in a reader process, the very slide file the parent process opened (a picklable recipe).

    Build it with :meth:`for_slide`. The file's identity (device, inode,
    size, modification time) is recorded when the parent opens it; a reader
    that finds the file gone or replaced fails with a message naming it,
    rather than read another slide's pixels.

    Args:
        path: Path. The slide file.
        mpp: float. Level-0 microns per pixel, as the parent resolved it.
        max_pixels: int, optional. ``open_slide``'s limit for plain images.
        identity: tuple of int. ``(st_dev, st_ino, st_size, st_mtime_ns)`` of the file.
        level_dimensions: tuple. The pyramid the parent saw.
    """

    path: Path
    mpp: float
    max_pixels: int | None
    identity: tuple[int, int, int, int]
    level_dimensions: tuple[tuple[int, int], ...]

    @classmethod
    def for_slide(cls, slide: SlideReader, max_pixels: int | None = None) -> "SlideOpener | None":
        """The opener of ``slide``, or ``None`` when reader processes cannot or need not reopen it.

        Only slides read through OpenSlide qualify: an in-memory array has no
        file, and a plain image is decoded whole when it opens, so each
        process would hold a copy while reading it is a memory copy anyway.
        """
        from weaksegtf.slides.openslide_reader import OpenSlideReader

        if not isinstance(slide, OpenSlideReader) or slide.path is None or not slide.path.is_file():
            return None
        return cls(slide.path, slide.mpp, max_pixels, _identity(slide.path), tuple(slide.level_dimensions))

    def __call__(self) -> SlideReader:
        from weaksegtf.slides import open_slide

        if self.path.exists() and _identity(self.path) != self.identity:
            raise SlideError(f"slide {self.path} changed on disk while it was being segmented (another file "
                             f"now has its name); expected the file that was opened: run again to start over")
        slide = open_slide(self.path, mpp=self.mpp, max_pixels=self.max_pixels)
        if tuple(slide.level_dimensions) != self.level_dimensions:
            slide.close()
            raise SlideError(f"slide {self.path} has levels {slide.level_dimensions} in a reader process but "
                             f"{self.level_dimensions} when it was opened; expected the same file")
        return slide


def _context():
    """The ``multiprocessing`` context of reader processes (:data:`START_METHOD`)."""
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        # Only read when the fork server starts (the first pool of the process); later calls change nothing.
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    return context


def _identity(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


# ---------------------------------------------------------------------- in each reader process
_slide: SlideReader | None = None
_open_error: BaseException | None = None


def _exit_with_parent() -> None:
    """End this reader when its parent ends, however it ends (``kill -9`` included): no orphan processes."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _start_reader(opener: SlideOpener) -> None:
    """A reader process's initializer: open the slide once, keeping an error for the tasks to raise."""
    global _slide, _open_error
    # Ctrl-C in a terminal reaches the whole process group: only the parent acts on it, and closes the readers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    try:
        _slide = opener()
    except Exception as error:  # noqa: BLE001 - raised by every task, so the parent gets the slide's own message
        _open_error = error


def _ready() -> int:
    return os.getpid()


def _read_batch(tiles: SlideTiles, indices: np.ndarray) -> Tiles:
    if _open_error is not None:
        raise _open_error
    return tiles.read_batch(_slide, indices.tolist())


# ---------------------------------------------------------------------- in the parent
class ReaderProcesses:
    """``processes`` worker processes reading the tiles of one slide, batch by batch, in order.

    Every process opens the slide once, when it starts (they start at once,
    so they open it while the parent makes the tissue mask), then reads,
    decodes and prepares whole batches (:meth:`SlideTiles.read_batch`).
    :meth:`read_batches` keeps at most ``depth`` batches in flight and
    yields them in the order asked, so what is stitched, and therefore every
    output, does not depend on which process read what. Closing (or leaving
    the ``with`` block, on an error or Ctrl-C too) cancels what has not
    started, lets each process finish its batch, and ends them all; a reader
    also ends on its own when its parent dies.

    Args:
        opener: SlideOpener. Opens the slide in each process
            (:meth:`SlideOpener.for_slide`).
        processes: int. Reader processes, at least 1.
        depth: int, optional. Batches read ahead. Defaults to ``None``: two per process.

    Raises:
        ConfigError: ``processes`` is not a positive whole number, or this
            process may not start processes (a daemonic Dask worker).

    Example:
    >>> with ReaderProcesses(SlideOpener.for_slide(slide), processes=2) as readers:  # doctest: +SKIP
    ...     for batch in readers.read_batches(SlideTiles(plan, 2.0, 4.0), np.array_split(todo, 10)):
    ...         logits = model.run(batch.astype(np.float32))
    """

    def __init__(self, opener: SlideOpener, processes: int, depth: int | None = None) -> None:
        if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) or processes < 1:
            raise ConfigError(f"reader processes (--readers) must be a whole number >= 1, got {processes!r}")
        check_can_start_processes(int(processes))
        self.opener = opener
        self.processes = int(processes)
        self.depth = 2 * self.processes if depth is None else max(1, int(depth))
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            self.processes, mp_context=_context(),
            initializer=_start_reader, initargs=(opener,))
        # The pool starts a process per task while it has fewer than it may: start them all now.
        for _ in range(self.processes):
            self._pool.submit(_ready)

    @property
    def name(self) -> str:
        return self.opener.path.name

    def read_batches(self, tiles: SlideTiles, chunks: Iterable[np.ndarray]) -> Iterator[Tiles]:
        """The prepared uint8 tiles ``(len(chunk), T, T, 3)`` of each chunk of tile indices, in order.

        Raises:
            SlideError: a reader failed (naming the slide), or a process died.
        """
        if self._pool is None:
            raise SlideError(f"the reader processes of slide {self.name} are closed; expected an open ReaderProcesses")
        chunks = iter(chunks)
        pending: collections.deque = collections.deque()
        try:
            for chunk in itertools.islice(chunks, self.depth):
                pending.append(self._submit(tiles, chunk))
            while pending:
                batch = self._result(pending.popleft())
                for chunk in itertools.islice(chunks, 1):  # keep the processes busy while this batch is used
                    pending.append(self._submit(tiles, chunk))
                yield batch
        finally:
            for future in pending:
                future.cancel()

    def _submit(self, tiles: SlideTiles, chunk: np.ndarray):
        try:
            return self._pool.submit(_read_batch, tiles, np.asarray(chunk, np.int64))
        except BrokenProcessPool as error:  # a process died before this batch was asked for
            raise self._broken(error) from None

    def _result(self, future) -> Tiles:
        try:
            return future.result()
        except BrokenProcessPool as error:
            raise self._broken(error) from None
        except WeaksegError:
            raise
        except Exception as error:
            raise SlideError(f"reading tiles of slide {self.opener.path} in a reader process failed: "
                             f"{type(error).__name__}: {error}") from error

    def _broken(self, error: BaseException) -> SlideError:
        return SlideError(f"a reader process of slide {self.opener.path} ended abruptly ({error}); it may have "
                          f"run out of memory, crashed in the slide's decoder, or failed to start (a script that "
                          f"uses readers must run under `if __name__ == \"__main__\":`): run again to resume, or "
                          f"without --readers")

    def close(self) -> None:
        """Cancel the batches not started, wait for those being read, and end every process."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + CLOSE_WAIT_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():  # stuck in a read (a hung network file system, say)
                process.terminate()
                process.join(1.0)

    def __enter__(self) -> "ReaderProcesses":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
