"""Files in and out for the whole package: atomic writes that never follow a symbolic link, PNGs, the one
image decoder and label-image reader, and JSON values.

Every file weaksegtf writes goes through here (training, evaluation and
experiments write their text files with :func:`write_text_atomic`, and every
PNG goes through :func:`write_png`); every label image (mask, annotation,
predicted label TIFF) is read by :func:`read_label_image`. A file is first written
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
#: Suffixes accepted for RGB images.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Suffixes accepted for masks and label images: lossless formats only, since JPEG artefacts
#: would invent class indices along every boundary.
MASK_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")


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


def _read_tiff(path: Path) -> np.ndarray | None:
    """Decode level 0 of a TIFF with samples last, or ``None`` if tifffile cannot."""
    import tifffile  # imported here: only TIFF inputs pay for it

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = series.asarray()  # level 0 of a pyramid (weakseg-infer's labels.tif)
            axes = series.axes
    except Exception:  # noqa: BLE001 - any decoder failure falls through to the next reader
        return None
    # Planar TIFFs store samples first ("SYX"); bring them last like OpenCV.
    if array.ndim == 3 and axes[0] in "SC" and axes[1:] == "YX":
        array = np.moveaxis(array, 0, -1)
    return array


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image  # imported here: only files OpenCV rejects pay for it

    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def decode_image(path: Path | str, what: str = "image") -> tuple[np.ndarray, bool]:
    """Decode an image file into an array and whether its channels are BGR-ordered.

    OpenCV decodes PNG, JPEG and BMP. TIFF goes to tifffile first, because
    OpenCV silently drops samples it does not understand (a 2-sample TIFF comes
    back as a single grey channel), so it could not refuse a wrong channel count;
    a palette TIFF gives its indices. Pillow is the last resort for anything
    OpenCV rejects.

    Args:
        path: str or path. The file.
        what: str. What the file is, for messages. Defaults to ``"image"``.

    Raises:
        DataError: the file is missing, is a folder, or no reader can decode it.
    """
    import cv2  # imported here: writing JSON or text never needs OpenCV

    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if not path.is_file():
        raise DataError(f"{what} {path} is not a file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        array = _read_tiff(path)
        if array is not None:
            return array, False
    try:
        # imdecode(fromfile) rather than imread: it also handles non-ASCII paths.
        array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    if array is not None:
        return array, True
    try:
        return _read_pillow(path), False
    except Exception as error:  # noqa: BLE001 - report every decoder failure the same way
        size_bytes = path.stat().st_size
        raise DataError(
            f"cannot read {what} {path} ({size_bytes} bytes): {error}; "
            f"expected a complete image file ({', '.join(IMAGE_SUFFIXES)})"
        ) from None


def _palette_indices(path: Path) -> np.ndarray | None:
    """The indices of a palette PNG or BMP (OpenCV would expand them into colours), else ``None``."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image.load()
                return np.asarray(image)
    except Exception:  # noqa: BLE001 - let decode_image report the failure
        return None
    return None


def read_label_image(path: Path | str, what: str = "label image") -> np.ndarray:
    """Read a mask or label image (class indices) as ``(H, W)`` uint8.

    Palette PNGs, BMPs and TIFFs give their palette indices (weakseg-infer's
    ``labels.tif`` is a palette pyramid: level 0 is read); a 3- or 4-channel
    image is accepted when its colour channels are equal (a grey mask saved as
    RGB). Values are not rescaled: a 16-bit mask must already hold values up to
    255.

    Args:
        path: str or path. A PNG, TIFF or BMP file (:data:`MASK_SUFFIXES`).
        what: str. What the file is, for messages (``"mask"``, ``"annotation
            mask"``). Defaults to ``"label image"``.

    Returns:
        uint8 array of shape ``(H, W)``.

    Raises:
        DataError: the file is missing, unreadable or lossy (JPEG), has colour
            channels that differ, or holds values outside 0..255.

    Example:
    >>> mask = read_label_image("glas-train/masks/train_1.bmp", "mask")  # doctest: +SKIP
    >>> mask.shape, sorted(set(mask.ravel().tolist()))
    ((522, 775), [0, 255])
    """
    path = Path(path)
    if path.suffix.lower() not in MASK_SUFFIXES:
        raise DataError(
            f"{what} {path} has suffix {path.suffix!r}; expected a lossless label image "
            f"({', '.join(MASK_SUFFIXES)}): JPEG would invent classes along every boundary"
        )
    array = _palette_indices(path) if path.suffix.lower() in (".png", ".bmp") and path.is_file() else None
    if array is None:
        array, _ = decode_image(path, what)
    while array.ndim > 2 and array.shape[0] == 1:  # a one-page TIFF series stored as (1, H, W)
        array = array[0]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if not all(np.array_equal(array[:, :, 0], array[:, :, c]) for c in (1, 2)):
            raise DataError(
                f"{what} {path} has {array.shape[2]} channels that differ; expected one channel of class "
                f"indices (or 3 equal channels)"
            )
        array = array[:, :, 0]
    if array.ndim != 2:
        raise DataError(f"{what} {path} has shape {tuple(array.shape)}; expected (H, W) class indices")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{what} {path} has pixel type {array.dtype}; expected integers")
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise DataError(f"{what} {path} holds values {low}..{high}; expected class indices in 0..255")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


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
