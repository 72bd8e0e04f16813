"""Provenance records and ``--version`` on every console script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import weaksegtf
from weaksegtf.provenance import provenance

CLI_MODULES = ["demo", "evaluate", "experiment", "export", "infer", "prepare", "train"]


def test_provenance_records_versions_command_time_seed_and_settings(tmp_path):
    record = provenance(["weakseg-train", "--epochs", "3"], seed=7, epochs=3, out=tmp_path, sizes=(1, 2))
    assert record["weaksegtf"] == weaksegtf.__version__
    assert record["python"].count(".") == 2
    assert record["dependencies"]["numpy"] is not None
    assert record["command"] == ["weakseg-train", "--epochs", "3"]
    assert record["timestamp_utc"].endswith("+00:00")
    assert record["seed"] == 7
    assert record["settings"] == {"seed": 7, "epochs": 3, "out": str(tmp_path), "sizes": [1, 2]}
    json.dumps(record)  # JSON-ready as returned


def test_provenance_defaults_to_sys_argv_and_imports_no_tensorflow():
    code = (
        "import sys; from weaksegtf.provenance import provenance; r = provenance(); "
        "assert r['command'] == sys.argv, r['command']; assert r['seed'] is None; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_cli_prints_its_version(module):
    result = subprocess.run(
        [sys.executable, "-m", f"weaksegtf.cli.{module}", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"weaksegtf {weaksegtf.__version__}" in result.stdout
