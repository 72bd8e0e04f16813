"""Read and prepare the next batches of tiles in the background while the model runs."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
_END = object()


class TilePrefetcher:
    """Batches of tiles read in the background, delivered in order as float32.

    By default a pool of threads reads them: OpenSlide, OpenCV and numpy
    release the GIL while they decode, resize and convert, so threads overlap
    reading with onnxruntime (which releases it too) without the cost of
    sending pixels between processes. With ``read_batches``, the batches come
    from elsewhere instead, such as reader processes
    (:meth:`~weaksegtf.inference.reader_processes.ReaderProcesses.read_batches`).
    A bounded queue of ``depth`` batches keeps memory fixed. An error while
    reading is raised by the iterator, at the batch it belongs to.

    Args:
        read_tile: callable. Tile index to a uint8 ``(T, T, 3)`` RGB tile
            (``None`` with ``read_batches``).
        indices: sequence of int. Tiles to read, in order.
        batch_size: int. Tiles per batch (the last batch may be smaller).
        preprocess: callable, optional. uint8 ``(B, T, T, 3)`` batch to a
            uint8 batch (stain normalisation). Defaults to ``None``.
        workers: int. Reading threads. Defaults to 2.
        depth: int. Batches read ahead. Defaults to 3.
        read_batches: callable, optional. Chunks of tile indices (int64
            arrays, in order) to an iterator of their prepared uint8 tiles, in
            the same order; replaces ``read_tile``, ``preprocess`` and
            ``workers``. Defaults to ``None``: the threads above.

    Attributes:
        wait_s: float. Time the consumer spent waiting for batches.

    Example:
    >>> with TilePrefetcher(read_tile, range(100), batch_size=8) as batches:  # doctest: +SKIP
    ...     for indices, images in batches:
    ...         logits = model.run(images)
    """

    def __init__(
        self,
        read_tile: Callable[[int], np.ndarray] | None,
        indices: Sequence[int],
        batch_size: int,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        workers: int = 2,
        depth: int = 3,
        read_batches: Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]] | None = None,
    ) -> None:
        self._read_tile = read_tile
        self._read_batches = read_batches if read_batches is not None else self._read_with_threads
        self._indices = np.asarray(indices, dtype=np.int64)
        self._batch_size = int(batch_size)
        self._preprocess = preprocess
        self._workers = max(1, int(workers))
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self.wait_s = 0.0
        self._thread = threading.Thread(target=self._produce, name="tile-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self._indices), self._batch_size):
            yield self._indices[start : start + self._batch_size]

    def _read_with_threads(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        with ThreadPoolExecutor(self._workers, thread_name_prefix="tile-read") as pool:
            for chunk in chunks:
                tiles = np.stack(list(pool.map(self._read_tile, chunk.tolist())))
                yield tiles if self._preprocess is None else self._preprocess(tiles)

    def _produce(self) -> None:
        try:
            chunks = list(self._chunks())
            batches = self._read_batches(iter(chunks))
            try:
                for chunk in chunks:
                    tiles = next(batches, None)
                    if tiles is None or len(tiles) != len(chunk):
                        raise RuntimeError(f"the tile reader gave {'no' if tiles is None else len(tiles)} tiles for "
                                           f"a batch of {len(chunk)}; expected one tile per index, in order")
                    if self._stop.is_set() or not self._put((chunk, tiles.astype(np.float32))):
                        return
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()  # a generator's cleanup: its pool stops, what it had queued is cancelled
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(error)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            start = time.perf_counter()
            item = self._queue.get()
            self.wait_s += time.perf_counter() - start
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def __enter__(self) -> "TilePrefetcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
