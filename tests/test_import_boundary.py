"""Import boundaries, tested rather than remembered (STYLE.md point 12).

The ONNX inference path (slides, tiling, tissue masks, writers, onnxruntime)
must run in an install without TensorFlow, and ``import weaksegtf.inference``
must stay cheap. Each check runs in a fresh interpreter and reads
``sys.modules``. The package tree is walked from the files on disk, so a new
module is held to the TensorFlow-free rule without being listed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import weaksegtf

PACKAGE = Path(weaksegtf.__file__).resolve().parent
#: The modules that import TensorFlow when imported (and everything below them).
TENSORFLOW_MODULES = (
    "weaksegtf.augment_tf",
    "weaksegtf.losses",
    "weaksegtf.metrics.keras_metrics",
    "weaksegtf.models",
    "weaksegtf.precise_batch_norm",
    "weaksegtf.training.precise_batch_norm",
    "weaksegtf.training.whole_image_validation",
    "weaksegtf.whole_image_validation",
)
#: Modules that need an optional extra at import: ``[cluster]`` (imported only inside cluster_run's functions).
EXTRA_MODULES = ("weaksegtf.inference.segmenter_plugin",)
#: What the inference path never loads: the frameworks, and training, export and dataset code.
NOT_FOR_INFERENCE = (
    "tensorflow", "keras", "tf2onnx", "weaksegtf.export", "weaksegtf.training", "weaksegtf.models",
    "weaksegtf.losses", "weaksegtf.data",
)
MAX_MODULES_OF_IMPORT_INFERENCE = 20


def _modules_on_disk() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _named(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The ``loaded`` modules under ``prefixes``: weaksegtf modules by name, other packages by their top name."""
    found = {name if name.startswith("weaksegtf.") else name.split(".")[0] for name in loaded if _under(name, prefixes)}
    return sorted(found)


def _loaded_after(code: str) -> list[str]:
    """Every module in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_inference_loads_no_framework_and_few_modules():
    loaded = _loaded_after("import weaksegtf.inference")
    ours = [name for name in loaded if _under(name, ("weaksegtf",))]
    forbidden = _named(loaded, NOT_FOR_INFERENCE)
    assert not forbidden, f"import weaksegtf.inference loaded {forbidden}; all {len(ours)} of ours: {ours}"
    assert len(ours) < MAX_MODULES_OF_IMPORT_INFERENCE, (
        f"import weaksegtf.inference loaded {len(ours)} weaksegtf modules (expected fewer than "
        f"{MAX_MODULES_OF_IMPORT_INFERENCE}): {ours}"
    )


def test_the_whole_inference_api_needs_no_training_export_or_dataset_code():
    modules = [name for name in _modules_on_disk()
               if _under(name, ("weaksegtf.inference", "weaksegtf.cli.infer")) and not _under(name, EXTRA_MODULES)]
    code = ("import importlib, weaksegtf.inference as inference\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "for name in inference.__all__:\n    getattr(inference, name)\n")
    loaded = _loaded_after(code)
    forbidden = _named(loaded, NOT_FOR_INFERENCE)
    ours = [name for name in loaded if _under(name, ("weaksegtf",))]
    assert not forbidden, f"the inference modules and names loaded {forbidden}; all {len(ours)} of ours: {ours}"


def test_every_tensorflow_free_module_imports_neither_tensorflow_nor_matplotlib():
    modules = [name for name in _modules_on_disk() if not _under(name, TENSORFLOW_MODULES + EXTRA_MODULES)]
    assert "weaksegtf.slides.pyramid_tiff" in modules and "weaksegtf.cli.train" in modules  # the walk found the tree
    loaded = _loaded_after("import importlib\n" + "".join(f"importlib.import_module({name!r})\n" for name in modules))
    heavy = _named(loaded, ("tensorflow", "keras", "tf2onnx", "matplotlib"))
    assert not heavy, (f"importing the {len(modules)} TensorFlow-free modules loaded {heavy}; only "
                       f"{TENSORFLOW_MODULES} may import TensorFlow (add a module there only if it must)")
