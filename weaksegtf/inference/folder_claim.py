"""Which input and which model a slide's output folder belongs to, so that no run writes over another's.

A slide folder holds ``source.json``, written before any other file of the
slide: the resolved path of the input it was made for. The model of the
results in it is read from the results themselves (``summary.json``, or the
checkpoint ``.work/state.json`` of an interrupted run). Folders written
before ``source.json`` existed are recognised by their ``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from weaksegtf.errors import OutputError
from weaksegtf.io import refuse_link, write_text_atomic

SOURCE_NAME = "source.json"
SUMMARY_NAME = "summary.json"
WORK_NAME = ".work"
#: Hidden files a run leaves in a folder that is otherwise empty (lock, temporaries).
_OWN_HIDDEN_PREFIXES = (".weakseg-infer.lock", ".source.json.", ".summary.json.")


def _read_json(path: Path) -> dict | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


@dataclass
class FolderClaim:
    """What an existing folder holds.

    Args:
        input: str, optional. Resolved path of the input it was made for;
            ``None`` when nothing says (a folder of other files).
        model_sha256: str, optional. SHA-256 of the model its results (complete
            or interrupted) were made with; ``None`` when it holds no results.
        foreign: bool. It holds files that are not a slide's results.
    """

    input: str | None
    model_sha256: str | None
    foreign: bool


def read_claim(folder: Path | str) -> FolderClaim | None:
    """What ``folder`` holds, or ``None`` when it is free (missing, or empty but for a run's hidden files)."""
    folder = Path(folder)
    refuse_link(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        return FolderClaim(None, None, True)
    names = [p.name for p in folder.iterdir()]
    if not [n for n in names if not n.startswith(_OWN_HIDDEN_PREFIXES)]:
        return None
    source = _read_json(folder / SOURCE_NAME) or {}
    summary = _read_json(folder / SUMMARY_NAME) or {}
    state = _read_json(folder / WORK_NAME / "state.json") or {}
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
    key = source.get("input") or settings.get("slide") or state.get("slide")
    model = settings.get("model_sha256") or state.get("model_sha256")
    return FolderClaim(key if isinstance(key, str) else None, model if isinstance(model, str) else None,
                       foreign=key is None)


def claimed_input(folder: Path | str) -> str | None:
    """The input key holding ``folder``: ``None`` if free, ``""`` if it holds something else."""
    claim = read_claim(folder)
    if claim is None:
        return None
    return "" if claim.foreign else claim.input


def check_claim(folder: Path | str, input_key: str, model_sha256: str, overwrite: bool = False) -> None:
    """Refuse to write ``input_key``'s results with model ``model_sha256`` into ``folder`` if it is not theirs.

    Raises:
        OutputError: the folder holds another input's results or files that
            are not a slide's results (always), or results of another model
            (unless ``overwrite``).
    """
    claim = read_claim(folder)
    if claim is None:
        return
    if claim.foreign:
        raise OutputError(f"{folder} already exists and holds files weakseg-infer did not write (no {SOURCE_NAME}); "
                          f"expected an empty or new folder for {input_key}: move them or choose another --out")
    if claim.input != input_key:
        raise OutputError(f"{folder} holds the results of {claim.input}, not of {input_key}; expected a folder "
                          f"made for this input: choose another output folder")
    if claim.model_sha256 is not None and claim.model_sha256 != model_sha256 and not overwrite:
        raise OutputError(f"{folder} holds results of {input_key} made with another model (sha256 "
                          f"{claim.model_sha256[:12]}, this one is {model_sha256[:12]}); pass --overwrite to "
                          f"replace them, or choose another --out")


def write_claim(folder: Path | str, input_key: str, model_path: str, model_sha256: str) -> None:
    """Record in ``folder`` which input it belongs to (and the model that last wrote it)."""
    path = Path(folder) / SOURCE_NAME
    document = {"input": input_key, "model": model_path, "model_sha256": model_sha256}
    if _read_json(path) != document:
        write_text_atomic(path, json.dumps(document, indent=2) + "\n")
