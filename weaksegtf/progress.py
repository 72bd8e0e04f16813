"""Progress lines on stderr, redrawn in place on a terminal: the one progress reporter of the package.

``weakseg-infer`` shows the current slide and the whole run in tiles per
second (:meth:`Progress.start_slide`, :meth:`Progress.advance`, ...);
``weakseg-prepare`` shows its own status text per slide (:meth:`Progress.status`).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Plain progress lines (redrawn in place on a terminal), at most one per ``interval_s``.

    Off a terminal every line is printed in full (logs keep them), still at
    most one per ``interval_s`` apart from the last line of each slide.

    Args:
        n_slides: int. Slides in the run.
        stream: text stream. Defaults to ``sys.stderr``.
        enabled: bool. ``False`` prints nothing. Defaults to ``True``.
        interval_s: float. Smallest time between two lines. Defaults to 1.

    Example:
    >>> progress = Progress(n_slides=2)  # doctest: +SKIP
    >>> progress.start_slide("a.svs", total_tiles=400, done_tiles=0)  # doctest: +SKIP
    >>> progress.advance(8)  # doctest: +SKIP
    >>> progress.status("[1/2] a.svs: tissue mask")  # doctest: +SKIP
    """

    def __init__(self, n_slides: int, stream: TextIO | None = None, enabled: bool = True,
                 interval_s: float = 1.0) -> None:
        self.n_slides = int(n_slides)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval_s = float(interval_s)
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._run_start = time.perf_counter()
        self._run_tiles = 0
        self._slide_index = 0
        self._name = ""
        self._total = 0
        self._done = 0
        self._slide_tiles = 0
        self._slide_start = self._run_start
        self._last_print = 0.0
        self._open = False

    def start_slide(self, name: str, total_tiles: int, done_tiles: int = 0) -> None:
        """A slide begins; ``done_tiles`` were finished by an earlier, interrupted run."""
        self._slide_index += 1
        self._open = True
        self._name, self._total, self._done = name, int(total_tiles), int(done_tiles)
        self._slide_tiles = 0
        self._slide_start = time.perf_counter()
        self._print(force=True)

    def advance(self, tiles: int) -> None:
        """``tiles`` more tiles of the current slide are finished."""
        self._done += int(tiles)
        self._slide_tiles += int(tiles)
        self._run_tiles += int(tiles)
        self._print()

    def end_slide(self, status: str) -> None:
        self._print(force=True, status=status)
        self._open = False

    def fail_slide(self, name: str, reason: str) -> None:
        """A slide failed, possibly before :meth:`start_slide` (it could not be opened)."""
        if not self._open:
            self._slide_index += 1
            self._name, self._total, self._done, self._slide_tiles = name, 0, 0, 0
            self._slide_start = time.perf_counter()
        self.end_slide(f"FAILED: {reason}")

    def slide_finished(self, name: str, tiles: int, seconds: float, status: str) -> None:
        """A slide that ran elsewhere (a Dask worker) is finished: one line with its rate and the run's."""
        self._slide_index += 1
        self._run_tiles += int(tiles)
        self._name, self._total, self._done, self._slide_tiles = name, int(tiles), int(tiles), int(tiles)
        self._slide_start = time.perf_counter() - max(float(seconds), 0.0)
        self._open = True
        self.end_slide(status)

    def status(self, text: str, final: bool = False) -> None:
        """Show ``text`` as the status line; a line that is not ``final`` is shown at most once per ``interval_s``."""
        if self.enabled and (final or self._due()):
            self._write(text, final)

    def _due(self) -> bool:
        now = time.perf_counter()
        if now - self._last_print < self.interval_s:
            return False
        self._last_print = now
        return True

    def _write(self, line: str, final: bool) -> None:
        if self._tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _print(self, force: bool = False, status: str | None = None) -> None:
        if not self.enabled or not (force or self._due()):
            return
        now = self._last_print = time.perf_counter()
        slide_rate = self._slide_tiles / max(now - self._slide_start, 1e-9)
        run_rate = self._run_tiles / max(now - self._run_start, 1e-9)
        percent = 100.0 * self._done / self._total if self._total else 100.0
        line = (f"[{self._slide_index}/{self.n_slides}] {self._name}: {self._done}/{self._total} tiles "
                f"({percent:.0f}%), {slide_rate:.1f} tiles/s")
        if status is None and slide_rate > 0 and self._done < self._total:
            line += f", ETA {_duration((self._total - self._done) / slide_rate)}"
        if status is not None:
            line += f", {status}"
        line += f" | run: {self._run_tiles} tiles, {run_rate:.1f} tiles/s"
        self._write(line, final=status is not None)
