"""Output names derived from input files: one name per input, stable across runs, never shared.

``weakseg-infer`` names each slide's folder this way, and ``weakseg-prepare``
each slide's patches and thumbnails: a slide gets its file name without the
suffix unless another input already holds that name; it then gets
``<name>-<8 hex digits>``, the start of the SHA-256 of its resolved path (the
convention docs/inference.md documents). So ``c1/a.png`` and ``c2/a.png`` get
``a`` and ``a-3f9c01d2``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

from weaksegtf.errors import OutputError


def input_key(path: Path | str) -> str:
    """What identifies an input across runs: its resolved absolute path."""
    return str(Path(path).resolve())


def input_hash(path: Path | str, length: int = 8) -> str:
    """A short hash of :func:`input_key`, for folder names of slides whose names clash."""
    return hashlib.sha256(input_key(path).encode("utf-8", "surrogateescape")).hexdigest()[:length]


def base_name(path: Path | str, reserved: Iterable[str] = ()) -> str:
    """A slide's preferred folder name: its file name without the suffix.

    A name that is empty, hidden (starts with a dot), longer than 200
    characters, or one of the ``reserved`` names of the output folder (case
    ignored) always gets the path hash, so it can never take a file the run
    itself writes.
    """
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    clean = stem.strip()
    if not clean or clean.startswith(".") or len(clean) > 200 or clean.lower() in {r.lower() for r in reserved}:
        return f"{clean.lstrip('.')[:200] or 'slide'}-{input_hash(path)}"
    return clean


def output_names(
    paths: Iterable[Path | str], claimed_by: Callable[[str], str | None] | None = None, reserved: Iterable[str] = ()
) -> list[str]:
    """One output folder name per input that depends only on that input and what the folder already holds.

    A slide gets its :func:`base_name` unless that name is already held by
    another input, in this run or on disk (``claimed_by(name)`` returns the
    :func:`input_key` a folder was made for, ``None`` when it is free, or
    ``""`` when it holds something that is not a slide's result); it then gets
    ``<name>-<8 hex digits of the SHA-256 of its resolved path>``. Once a
    slide has a folder, its claim on disk sends it there again in every later
    run, whichever other slides are in it. Names are compared ignoring case
    (macOS and Windows file systems do).

    Args:
        paths: list of path. The inputs, in order.
        claimed_by: callable, optional. Folder name to the key of the input
            it holds. Defaults to ``None``: every folder is free.
        reserved: iterable of str. Names slides may never take.

    Example:
    >>> output_names([Path("c1/a.png"), Path("c2/a.png"), Path("batch_summary.json.png")],
    ...              reserved=["batch_summary.json"])  # doctest: +SKIP
    ['a', 'a-3f9c01d2', 'batch_summary.json-77ab0e14']
    """
    taken: dict[str, str] = {}
    return [claim_name(path, taken, claimed_by, reserved) for path in paths]


def claim_name(
    path: Path | str,
    taken: dict[str, str],
    claimed_by: Callable[[str], str | None] | None = None,
    reserved: Iterable[str] = (),
) -> str:
    """The output name of one more input, as :func:`output_names` gives it, recorded in ``taken``.

    Args:
        path: str or path. The input.
        taken: dict. Names given so far (lower case) to the :func:`input_key` of
            their input; updated. The same input asked again gets the same name.
        claimed_by: callable, optional. See :func:`output_names`. Defaults to ``None``.
        reserved: iterable of str. Names inputs may never take.

    Raises:
        OutputError: the name and both hashed forms are held by other inputs.
    """
    key = input_key(path)
    base = base_name(path, reserved)
    for name in (base, f"{base}-{input_hash(path)}", f"{base}-{input_hash(path, 16)}"):
        holder = taken.get(name.lower())
        on_disk = claimed_by(name) if claimed_by is not None else None
        if holder in (None, key) and on_disk in (None, key):
            break
    else:
        raise OutputError(f"no free output folder name for {path}: {base} and its hashed forms are taken")
    taken[name.lower()] = key
    return name
