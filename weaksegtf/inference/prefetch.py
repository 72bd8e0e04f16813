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
    """Batches of tiles read by a pool of threads, delivered in order.

    OpenSlide, OpenCV and numpy release the GIL while they decode, resize and
    convert, so threads overlap reading with onnxruntime (which releases it
    too) without the cost of sending pixels between processes. A bounded queue
    of ``depth`` batches keeps memory fixed. An error while reading is raised
    by the iterator, at the batch it belongs to.

    Args:
        read_tile: callable. Tile index to a uint8 ``(T, T, 3)`` RGB tile.
        indices: sequence of int. Tiles to read, in order.
        batch_size: int. Tiles per batch (the last batch may be smaller).
        preprocess: callable, optional. uint8 ``(B, T, T, 3)`` batch to a
            uint8 batch (stain normalisation). Defaults to ``None``.
        workers: int. Reading threads. Defaults to 2.
        depth: int. Batches read ahead. Defaults to 3.

    Attributes:
        wait_s: float. Time the consumer spent waiting for batches.

    Example:
    >>> with TilePrefetcher(read_tile, range(100), batch_size=8) as batches:  # doctest: +SKIP
    ...     for indices, images in batches:
    ...         logits = model.run(images)
    """

    def __init__(
        self,
        read_tile: Callable[[int], np.ndarray],
        indices: Sequence[int],
        batch_size: int,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        workers: int = 2,
        depth: int = 3,
    ) -> None:
        self._read_tile = read_tile
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

    def _produce(self) -> None:
        try:
            with ThreadPoolExecutor(self._workers, thread_name_prefix="tile-read") as pool:
                for start in range(0, len(self._indices), self._batch_size):
                    if self._stop.is_set():
                        return
                    chunk = self._indices[start : start + self._batch_size]
                    tiles = np.stack(list(pool.map(self._read_tile, chunk.tolist())))
                    if self._preprocess is not None:
                        tiles = self._preprocess(tiles)
                    if not self._put((chunk, tiles.astype(np.float32))):
                        return
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
