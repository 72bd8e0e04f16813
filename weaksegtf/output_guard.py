"""Outputs that never destroy a user's files.

Every command that writes into a folder (``weakseg-train --out``,
``weakseg-prepare --out``, ``weakseg-demo --out``, ``weakseg-export
--savedmodel``) goes through :class:`OutputFolder`:

- before any slow work, the folder is checked: not a file, writable, and
  either new, empty, or (with ``overwrite``) holding nothing the command would
  replace that weaksegtf did not write;
- after the work, :meth:`OutputFolder.commit` records what the command wrote
  in ``.weaksegtf-outputs.json`` inside the folder and removes the files the
  *same* command wrote last time but not this time (a stale
  ``predictions.png``). Nothing that is not in that record is ever removed.

Single-file outputs (``weakseg-export --onnx``) go through
:func:`check_output_file`. No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from weaksegtf.errors import OutputError

#: The record of what weaksegtf commands wrote into a folder: ``{"outputs": {name: command}}``.
RECORD_NAME = ".weaksegtf-outputs.json"
_SHOWN_ENTRIES = 4


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: str | os.PathLike, what: str) -> None:
    """Raise :class:`OutputError` unless files can be created in ``folder`` (or where it would be created).

    A real write (a temporary file, removed at once) is the only test that
    also holds for root, read-only mounts and full quotas; nothing is created
    when the folder does not exist yet.
    """
    folder = Path(folder)
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(
            f"{what} {folder} cannot be created: {existing} is a file; expected a folder path "
            f"(or a path that does not exist yet)"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".weaksegtf-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(
            f"{what} {folder} is not writable ({reason} in {existing}); expected a folder you can write to"
        ) from None


def check_output_file(
    path: str | os.PathLike,
    what: str,
    *,
    overwrite: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
    identical: Callable[[Path], bool] | None = None,
) -> None:
    """Check a single-file output before any work.

    Args:
        path: str or path. The file to write.
        what: str. How the error names it, such as ``"ONNX output"``.
        overwrite: bool. Allow replacing an existing file that ``replaceable``
            accepts. Defaults to ``False``.
        replaceable: callable, optional. True when an existing file was written
            by weaksegtf (so ``overwrite`` may replace it). Defaults to ``None``
            (no existing file is replaceable).
        identical: callable, optional. True when an existing file holds what
            would be written again (a re-export of the same weights); such a
            file is replaced even without ``overwrite``. Defaults to ``None``.

    Raises:
        OutputError: the path is a folder, its folder is not writable, or it
            exists and may not be replaced.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; expected a file path such as {path / 'model.onnx'}")
    check_writable_folder(path.parent, f"the folder of {what}")
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink():
        raise OutputError(f"{what} {path} is a symbolic link; expected a regular file or a new path (links are never written through)")
    if identical is not None and identical(path):
        return
    if not overwrite:
        raise OutputError(
            f"{what} {path} already exists; pass --overwrite (overwrite=True) to replace it, or choose another path"
        )
    if replaceable is None or not replaceable(path):
        raise OutputError(
            f"{what} {path} exists and was not written by weaksegtf; --overwrite replaces only weaksegtf's "
            f"own outputs: move it away or choose another path"
        )


def remove_path(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@dataclass
class OutputFolder:
    """A folder a command writes named outputs into, never clobbering what weaksegtf did not write.

    Args:
        path: str or path. The folder.
        command: str. The command writing it, such as ``"weakseg-train"``
            (recorded, so that stale files of the same command can be removed).
        overwrite: bool. Accept a non-empty folder, replacing the outputs
            weaksegtf wrote there before. Defaults to ``False``: a folder that
            holds anything is refused.
        what: str. How errors name the folder. Defaults to ``"output folder"``.

    Example:
    >>> folder = OutputFolder("runs/sc", "weakseg-train")  # doctest: +SKIP
    >>> folder.check(["model.keras", "metrics.json"])       # before training  # doctest: +SKIP
    >>> folder.commit(["model.keras", "metrics.json"])      # after writing them  # doctest: +SKIP
    """

    path: Path
    command: str
    overwrite: bool = False
    what: str = "output folder"
    recorded: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_NAME

    def read_record(self) -> dict[str, str]:
        """``{name: command}`` of the outputs weaksegtf recorded here (empty when none or unreadable)."""
        try:
            document = json.loads(self.record_path.read_text(encoding="utf-8"))
            outputs = document.get("outputs", {})
            return {str(k): str(v) for k, v in outputs.items()} if isinstance(outputs, dict) else {}
        except (OSError, ValueError, AttributeError):
            return {}

    def check(self, names: Iterable[str]) -> None:
        """Before any work: refuse a file, an unwritable folder, or a folder whose content would be lost.

        Args:
            names: iterable of str. Entries (files or sub-folders) the command
                will write directly inside the folder.

        Raises:
            OutputError: see the class description; the message names the folder
                and the entries in the way.
        """
        if self.path.is_symlink() and not self.path.is_dir():
            raise OutputError(f"{self.what} {self.path} is a broken symbolic link; expected a folder")
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.what} {self.path} is a file; expected a folder (new, empty, or written by {self.command})")
        check_writable_folder(self.path, self.what)
        self.recorded = self.read_record()
        entries = sorted(p.name for p in self.path.iterdir() if p.name != RECORD_NAME) if self.path.is_dir() else []
        if not entries:
            return
        if not self.overwrite:
            shown = ", ".join(entries[:_SHOWN_ENTRIES]) + (f" and {len(entries) - _SHOWN_ENTRIES} more" if len(entries) > _SHOWN_ENTRIES else "")
            raise OutputError(
                f"{self.what} {self.path} is not empty (holds {shown}); expected a new or empty folder. "
                f"Pass --overwrite (overwrite=True) to replace what weaksegtf wrote there (nothing else is "
                f"touched), or choose another folder"
            )
        foreign = [name for name in names if (self.path / name).exists() or (self.path / name).is_symlink()]
        foreign = [name for name in foreign if name not in self.recorded]
        if foreign:
            raise OutputError(
                f"{self.what} {self.path} holds {', '.join(foreign)}, which weaksegtf did not write (not in "
                f"{RECORD_NAME}); --overwrite replaces only weaksegtf's own outputs: move "
                f"{'it' if len(foreign) == 1 else 'them'} away or choose another folder"
            )

    def remove_own(self) -> list[str]:
        """Remove every entry this command recorded here (before rewriting them all); returns their names.

        For commands whose outputs are folders filled piece by piece (``thumbnails/``),
        so that files of an earlier run never mix with the new ones.
        """
        removed = []
        for name, command in self.read_record().items():
            target = self.path / name
            if command == self.command and (target.exists() or target.is_symlink()):
                remove_path(target)
                removed.append(name)
        return removed

    def commit(self, written: Sequence[str]) -> list[str]:
        """After the work: record ``written`` and remove what this command wrote last time but not now.

        Returns:
            The names removed as stale.
        """
        from weaksegtf.io import write_text_atomic

        written = [str(name) for name in written]
        stale = [
            name for name, command in self.read_record().items()
            if command == self.command and name not in written
        ]
        for name in stale:
            target = self.path / name
            if target.exists() or target.is_symlink():
                remove_path(target)
        outputs = {name: command for name, command in self.read_record().items() if name not in stale}
        outputs.update({name: self.command for name in written})
        document = {"about": "outputs weaksegtf commands wrote here; --overwrite replaces only these",
                    "outputs": dict(sorted(outputs.items()))}
        write_text_atomic(self.record_path, json.dumps(document, indent=2) + "\n")
        return stale
