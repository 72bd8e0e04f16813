"""All-or-nothing outputs: write beside the targets, rename them all only once every check passed.

A failed parity check, a failed int8 agreement or an exception leaves none
of the outputs behind, and an existing output is replaced only at the very
end (a rename, so readers never see half a file). A staged folder is merged
into an existing final folder entry by entry: only entries of the same name
are replaced, and anything else the folder holds is left alone (the caller
checks beforehand, with ``weaksegtf.output_guard``, that those entries may be
replaced).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType


class StagedOutputs:
    """Temporary siblings of final paths; :meth:`commit` renames them, anything else removes them.

    Example:
    >>> with StagedOutputs() as staged:  # doctest: +SKIP
    ...     tmp = staged.file("model.onnx")
    ...     tmp.write_bytes(data)
    ...     staged.commit()  # without this line, nothing is written
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._created_folders: list[Path] = []
        self.committed = False

    def file(self, final: str | os.PathLike) -> Path:
        """A temporary path beside ``final`` (same folder, so the rename is atomic)."""
        final = Path(final)
        missing = [p for p in [final.parent, *final.parent.parents] if not p.exists()]
        final.parent.mkdir(parents=True, exist_ok=True)
        self._created_folders += missing  # deepest first, removed again if nothing is committed
        temporary = final.with_name(f".{final.name}.partial-{os.getpid()}")
        self._remove(temporary)
        self._staged.append((temporary, final))
        return temporary

    def directory(self, final: str | os.PathLike) -> Path:
        """A temporary folder path beside ``final``; it does not exist yet."""
        return self.file(final)

    def commit(self) -> None:
        """Move every staged output to its final path (a folder: entry by entry into the final folder)."""
        for temporary, final in self._staged:
            if temporary.is_dir() and final.is_dir() and not final.is_symlink():
                self._merge(temporary, final)
            else:
                os.replace(temporary, final)
        self.committed = True

    def _merge(self, temporary: Path, final: Path) -> None:
        for entry in sorted(temporary.iterdir()):
            target = final / entry.name
            old = final / f".{entry.name}.old-{os.getpid()}"
            if target.exists() or target.is_symlink():
                os.replace(target, old)  # a rename: a link is moved, never followed
            os.replace(entry, target)
            self._remove(old)
        temporary.rmdir()

    def entries(self, final: str | os.PathLike) -> list[str]:
        """Names inside the staged folder for ``final`` (before :meth:`commit`)."""
        for temporary, staged_final in self._staged:
            if staged_final == Path(final) and temporary.is_dir():
                return sorted(p.name for p in temporary.iterdir())
        return []

    def discard(self) -> None:
        for temporary, _ in self._staged:
            self._remove(temporary)
        for folder in self._created_folders:
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was written there meanwhile
                pass

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self.committed:
            self.discard()
