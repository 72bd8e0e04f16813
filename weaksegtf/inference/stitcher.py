"""Seam-free stitching: each tile's centre crop goes to disk, in a background thread."""

from __future__ import annotations

import queue
import threading

import numpy as np
import numpy.typing as npt

from weaksegtf.inference.checkpoint import Checkpoint
from weaksegtf.inference.tile_scheduler import TilePlan
from weaksegtf.inference.tile_store import TileStore

_END = object()


def softmax_uint8(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Class probabilities of ``(..., C)`` logits as uint8, ``round(255 p)``."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return np.rint(shifted * 255.0).astype(np.uint8)


class Stitcher:
    """Writes the owned box of every tile's prediction into on-disk stores.

    Each tile contributes exactly the box :class:`TilePlan` assigns it, whose
    border runs through the middle of the overlap with each neighbour, so a
    pixel's class comes from the tile in which it has the most context, no
    pixel is written twice, and a tile's result does not depend on which
    tiles ran before it (which is what makes a resumed run byte-identical to
    an uninterrupted one). Arg-max and softmax run in a background thread so
    the session can start the next batch at once.

    Args:
        plan: TilePlan. Tiles and owned boxes.
        labels: TileStore. One channel: the arg-max class.
        checkpoint: Checkpoint. Records tiles once their data is durable.
        probabilities: TileStore, optional. ``C`` channels, uint8 probabilities.
            Defaults to ``None``.
        background_class: int. Class given to skipped tiles. Defaults to 0.
        depth: int. Batches queued for writing. Defaults to 2.
        outside: callable, optional. ``index -> (h, w) bool`` of the tile's
            owned box: pixels set to ``background_class`` (with certainty)
            whatever the model says, such as those outside the tissue.
            Defaults to ``None``.

    Example:
    >>> with Stitcher(plan, labels, checkpoint) as stitcher:  # doctest: +SKIP
    ...     stitcher.submit(indices, model.run(images))
    """

    def __init__(
        self,
        plan: TilePlan,
        labels: TileStore,
        checkpoint: Checkpoint,
        probabilities: TileStore | None = None,
        background_class: int = 0,
        depth: int = 2,
        outside=None,
    ) -> None:
        self.outside = outside
        self.plan = plan
        self.labels = labels
        self.probabilities = probabilities
        self.checkpoint = checkpoint
        self.background_class = int(background_class)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="stitcher", daemon=True)
        self._thread.start()

    @property
    def _stores(self) -> list[TileStore]:
        return [self.labels] + ([self.probabilities] if self.probabilities is not None else [])

    def _crop(self, index: int) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.plan.owned_box(index)
        ox, oy = self.plan.origin(index)
        return slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox)

    def _write_logits(self, indices: np.ndarray, logits: np.ndarray) -> None:
        for index, tile in zip(indices.tolist(), logits):
            rows, cols = self._crop(index)
            crop = tile[rows, cols]
            classes = crop.argmax(axis=-1).astype(np.uint8)
            outside = self.outside(index) if self.outside is not None else None
            if outside is not None:
                classes[outside] = self.background_class
            self.labels.write_tile(index, classes)
            if self.probabilities is not None:
                probabilities = softmax_uint8(crop.astype(np.float32, copy=True))
                if outside is not None:
                    probabilities[outside] = 0
                    probabilities[outside, self.background_class] = 255
                self.probabilities.write_tile(index, probabilities)
        self.checkpoint.mark(indices)

    def _write_background(self, indices: np.ndarray) -> None:
        channels = self.probabilities.channels if self.probabilities is not None else 0
        for index in indices.tolist():
            x0, y0, x1, y1 = self.plan.owned_box(index)
            self.labels.write_tile(index, np.full((y1 - y0, x1 - x0), self.background_class, np.uint8))
            if self.probabilities is not None:
                certain = np.zeros((y1 - y0, x1 - x0, channels), np.uint8)
                certain[..., self.background_class] = 255
                self.probabilities.write_tile(index, certain)
        self.checkpoint.mark(indices)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            kind, indices, logits = item
            try:
                if kind == "logits":
                    self._write_logits(indices, logits)
                else:
                    self._write_background(indices)
                self.checkpoint.commit(self._stores)
            except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
                self._error = error

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, indices: np.ndarray, logits: np.ndarray) -> None:
        """Queue mask logits ``(B, T, T, C)`` of tiles ``indices`` (extra rows of a padded batch are ignored)."""
        self._check()
        indices = np.asarray(indices, dtype=np.int64)
        self._queue.put(("logits", indices, logits[: len(indices)]))

    def submit_background(self, indices: np.ndarray) -> None:
        """Queue tiles that hold no tissue: ``background_class`` with certainty."""
        self._check()
        self._queue.put(("background", np.asarray(indices, dtype=np.int64), None))

    def close(self) -> None:
        """Finish writing, make everything durable, and raise any error the writer met."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        self._check()
        self.checkpoint.commit(self._stores, force=True)

    def __enter__(self) -> "Stitcher":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            if self._thread.is_alive():
                self._queue.put(_END)
                self._thread.join()
            if self._error is None:  # keep what was finished before the failure
                self.checkpoint.commit(self._stores, force=True)
