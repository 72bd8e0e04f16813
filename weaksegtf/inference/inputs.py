"""The slide files named on a command line: files, folders and glob patterns."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable

from weaksegtf.output_names import input_key

#: Suffixes taken from a folder: OpenSlide's whole-slide formats and plain images.
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
                  ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def find_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files, folders (their slide and image files, not recursive) and globs, in order.

    A path that does not exist and is not a pattern is kept, so the batch run
    reports it as a failed slide rather than dropping it. Duplicates are
    removed (the first occurrence stays).

    Example:
    >>> find_inputs(["slides/", "extra/*.svs", "one.ndpi"])  # doctest: +SKIP
    [PosixPath('slides/a.svs'), PosixPath('slides/b.tif'), PosixPath('extra/c.svs'), PosixPath('one.ndpi')]
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
        elif not path.exists() and glob.has_magic(str(item)):
            found += [Path(p) for p in sorted(glob.glob(str(item))) if Path(p).is_file()]
        else:
            found.append(path)
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(input_key(path), path)
    return list(unique.values())
