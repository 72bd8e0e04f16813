"""File writing for the whole package: atomic writes that never follow a symbolic link, PNGs, and JSON values.

Every file weaksegtf writes goes through here (training, evaluation and
experiments write their text files with :func:`write_text_atomic`, and every
PNG goes through :func:`write_png`). A file is first written
under a temporary name unique to the process (``.<name>.<pid>-<random>.partial``,
created with ``O_EXCL | O_NOFOLLOW``, so neither a second run nor a planted
link can be written through) and then renamed over its final name, which must
not be a symbolic link or a folder. Folders are created one level at a time
and checked with ``lstat``: a link where an output folder should be is refused
rather than followed out of ``--out``. Errors that mean the folder cannot hold
the output (full disk, read-only file system, no permission) become one
:class:`~weaksegtf.errors.OutputError` naming the file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import IO

import numpy as np

from weaksegtf.errors import DataError, OutputError

#: ``errno`` values that say the output folder cannot take the output, not that one slide is bad.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
PARTIAL_SUFFIX = ".partial"


def storage_error(error: OSError, path: Path | str | None = None) -> OutputError:
    """A one-line :class:`OutputError` for an ``OSError`` met while writing ``path``."""
    where = path if path is not None else (error.filename or "the output folder")
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EROFS: "the file system is read-only", errno.EFBIG: "the file is too large for the file system",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(error.errno)
    reason = reason or (error.strerror or str(error))
    return OutputError(f"cannot write {where}: {reason}; free space or choose another --out, then run the "
                       f"same command again to resume")


def is_storage_error(error: BaseException) -> bool:
    """Whether ``error`` means the output folder cannot take the output (full, read-only, forbidden)."""
    return isinstance(error, OutputError) or (isinstance(error, OSError) and error.errno in STORAGE_ERRNOS)


def refuse_link(path: Path | str) -> None:
    """Raise :class:`OutputError` if ``path`` is a symbolic link (a missing path is fine)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(f"{path} is a symbolic link (to {os.readlink(path)}); weakseg-infer never writes "
                          f"through links: remove it or choose another --out")


def make_folder(path: Path | str, parents_of: Path | str | None = None) -> Path:
    """Create folder ``path`` (and its parents below ``parents_of``) refusing links and files in the way.

    Args:
        path: str or path. The folder.
        parents_of: str or path, optional. A folder above ``path`` taken as
            trusted (it may itself be a link the user made, such as ``--out``);
            every level below it is checked. Defaults to ``None``: only ``path``.
    """
    path = Path(path)
    levels = [path]
    if parents_of is not None:
        top = Path(parents_of)
        levels = [p for p in reversed(path.parents) if top in p.parents] + [path]
    for level in levels:
        refuse_link(level)
        try:
            os.mkdir(level)
        except FileExistsError:
            pass
        except OSError as error:
            raise storage_error(error, level) from None
        info = os.lstat(level)
        if stat.S_ISLNK(info.st_mode):
            refuse_link(level)
        if not stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{level} is a file, not a folder; expected a folder to write results into")
    return path


def temporary_path(final: Path | str) -> Path:
    """A sibling of ``final`` no other process uses: ``.<name>.<pid>-<random>.partial``."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def open_new(path: Path | str, mode: str = "wb") -> IO:
    """Open a file that must not exist yet, never through a link (``O_CREAT | O_EXCL | O_NOFOLLOW``)."""
    flags = os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    try:
        # ``opener`` keeps the file's name on the handle (tifffile needs it).
        return open(path, mode, opener=lambda name, _: os.open(name, flags, 0o644),
                    **({} if "b" in mode else {"encoding": "utf-8"}))
    except FileExistsError:
        refuse_link(path)
        raise OutputError(f"{path} already exists; expected a new temporary file") from None
    except OSError as error:
        raise storage_error(error, path) from None


def open_existing_or_new(path: Path | str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """``os.open`` that refuses to follow a link at ``path`` (for resumable work files)."""
    refuse_link(path)
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            refuse_link(path)
        raise storage_error(error, path) from None


def publish(temporary: Path | str, final: Path | str) -> Path:
    """Rename a finished temporary file to its final name (atomic on one file system).

    Raises:
        OutputError: ``final`` is a symbolic link or a folder.
    """
    final = Path(final)
    refuse_link(final)
    if final.is_dir():
        raise OutputError(f"{final} is a folder; expected a file name weakseg-infer writes")
    os.replace(temporary, final)
    return final


def discard(path: Path | str) -> None:
    """Remove a temporary file if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_bytes_atomic(path: Path | str, data: bytes, sync: bool = True) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    ``sync=False`` skips the ``fsync`` (a few ms a file): the rename is still
    atomic for readers, but a power cut may lose the file. Defaults to ``True``.
    """
    temporary = temporary_path(path)
    try:
        with open_new(temporary) as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        return publish(temporary, path)
    except OSError as error:
        discard(temporary)
        if isinstance(error, OutputError):
            raise
        raise storage_error(error, path) from None
    except BaseException:
        discard(temporary)
        raise


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the whole new one."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_png(path: Path | str, array: np.ndarray) -> Path:
    """Write a uint8 RGB image or single-channel array as a PNG, atomically.

    Parent folders are created. PNG is lossless, so a mask written here reads
    back with the same class indices. The file is renamed into place without
    an ``fsync`` (patch sets hold thousands of PNGs).

    Args:
        path: str or path. Destination; should end in ``.png``.
        array: uint8 array, ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` RGB.

    Returns:
        The path written.

    Raises:
        DataError: the array is not uint8 of one of those shapes.
        OutputError: the file cannot be written (full disk, no permission, a link in the way).

    Example:
    >>> write_png(tmp_dir / "masks" / "a.png", np.zeros((4, 4), np.uint8))  # doctest: +SKIP
    """
    import cv2  # imported here: writing JSON or text never needs OpenCV

    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise DataError(f"cannot write {path}: array has type {array.dtype}; expected uint8")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]  # OpenCV writes BGR
    elif array.ndim != 2:
        raise DataError(
            f"cannot write {path}: array has shape {tuple(array.shape)}; expected (H, W) or (H, W, 3)"
        )
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise DataError(f"cannot encode {path} as PNG (shape {tuple(array.shape)})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, path.parent) from None
    return write_bytes_atomic(path, encoded.tobytes(), sync=False)


def remove_stale_partials(folder: Path | str) -> int:
    """Delete temporary files a killed run left in ``folder`` (call while holding its lock)."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed += 1
    return removed


def json_float(value) -> float | None:
    """A float for JSON: ``None`` for ``None`` and NaN (JSON has no NaN).

    >>> json_float(float("nan")), json_float(None), json_float(0.5)
    (None, None, 0.5)
    """
    return None if value is None or value != value else float(value)
