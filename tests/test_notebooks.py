"""The tutorials in notebooks/: committed clean, library code only imported, and each runs top to bottom.

Execution uses nbclient with ``WEAKSEG_NOTEBOOK_SMALL=1`` (tiny epochs and images), the notebooks folder
as working directory (they find ``../docs/examples``) and every output written under ``tmp_path``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# Listed by name so that a deleted notebook fails here instead of silently dropping out of CI.
TUTORIALS = ["01_quick_start", "02_from_slides", "03_deployment", "04_sparse_and_lowres"]
# Tutorials that read the real slide (the others fall back to built-in synthetic data).
NEEDS_DATA = {"02_from_slides", "03_deployment"}


def _read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _code(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_every_notebook_is_listed():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TUTORIALS)


@pytest.mark.parametrize("name", TUTORIALS)
def test_notebook_is_committed_without_outputs(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs before committing"


@pytest.mark.parametrize("name", TUTORIALS)
def test_notebook_defines_no_library_code_and_has_the_small_flag(name):
    sources = _code(_read(name))
    assert 'os.environ.get("WEAKSEG_NOTEBOOK_SMALL", "0") == "1"' in sources[0], f"{name}: first cell sets SMALL"
    for source in sources:
        tree = ast.parse(source)
        defined = [node.name for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defined, f"{name} defines {defined}; notebooks import the library and define nothing"


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIALS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch, request):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    if name in NEEDS_DATA:
        data_dir = request.getfixturevalue("data_dir")
        monkeypatch.setenv("WEAKSEG_DATA", str(data_dir))
    monkeypatch.setenv("WEAKSEG_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("WEAKSEG_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = _read(name)
    before = sorted(NOTEBOOKS.iterdir())
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{name}.ipynb failed:\n{error}")
    finally:
        nbformat.write(notebook, tmp_path / f"{name}.executed.ipynb")
    # Every code cell ran, and the pictures the tutorial promises were drawn.
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells)
    images = sum("image/png" in output.get("data", {}) for cell in code_cells for output in cell.outputs)
    assert images >= 2, f"{name}: expected plots, got {images}"
    assert sorted(NOTEBOOKS.iterdir()) == before, "the notebook wrote into notebooks/ instead of WEAKSEG_NOTEBOOK_OUT"
