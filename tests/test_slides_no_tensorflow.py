"""The slide, preprocessing and augmentation code never imports TensorFlow.

The ONNX inferencer reuses these modules in an install without TensorFlow, so
importing them must not pull it in (not even indirectly through Keras).
"""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "weaksegtf.slides",
    "weaksegtf.preprocessing",
    "weaksegtf.augment",
    "weaksegtf.tiling",
    "weaksegtf.cli.prepare",
]


def test_slide_modules_do_not_import_tensorflow():
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in MODULES)
        + "from weaksegtf.slides import *\nfrom weaksegtf.preprocessing import *\n"
        + "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
        + "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"
