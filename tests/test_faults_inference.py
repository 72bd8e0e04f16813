"""The fault table of weakseg-infer (issue 14): each case a user met, reproduced, with what must happen.

Every refusal is one line on stderr naming the file, exit code 2, and leaves
the files it found byte-for-byte as they were; a slide that cannot be read
fails alone (exit 1). The full-disk and read-only cases mount a small tmpfs
and are skipped only where mounting is not allowed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from _onnx_models import CLASSES, COLORS, color_classifier
from test_inference_slides import SLIDE_MPP, blob_image

from weaksegtf.cli import infer as infer_cli
from weaksegtf.errors import OutputError
from weaksegtf.inference import OutputLock, SlideSegmenter
from weaksegtf.output_names import input_hash
from weaksegtf.io import temporary_path
from weaksegtf.slides import write_pyramidal_tiff

shapely = pytest.importorskip("shapely")
REPO = Path(__file__).resolve().parents[1]
RESULT_FILES = ["labels.tif", "overlay.png", "annotations.geojson"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return color_classifier(tmp_path_factory.mktemp("model") / "model.onnx", mpp=1.0, tile_size_px=64)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    return color_classifier(tmp_path_factory.mktemp("other") / "model.onnx", mpp=2.0, tile_size_px=64)


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slide") / "blobs.tif"
    write_pyramidal_tiff(path, blob_image(512, 640), SLIDE_MPP)
    return path


def png(path: Path, seed: int = 0, size=(200, 240)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(blob_image(*size, seed=seed), cv2.COLOR_RGB2BGR))
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) with a hash of its bytes or its link target."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = Path(root) / name
            key = str(full.relative_to(folder))
            found[key] = ("link:" + os.readlink(full)) if full.is_symlink() else hashlib.sha256(
                full.read_bytes()).hexdigest()
    return found


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = infer_cli.main([str(a) for a in argv] + ["--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------- 2. output folders
def test_inputs_with_one_name_get_their_own_folders_whatever_the_run_holds(model, tmp_path, capsys):
    a1, a2, a_2 = png(tmp_path / "c1" / "a.png", 1), png(tmp_path / "c2" / "a.png", 2), png(tmp_path / "c1" / "a-2.png", 3)
    out = tmp_path / "out"
    code, printed, _ = run_cli([model, a1, a2, a_2, "--out", out, "--mpp", "0.5"], capsys)
    assert code == 0 and "3 done" in printed
    folders = {p: json.loads((out / name / "source.json").read_text())["input"]
               for p, name in [(a1, "a"), (a2, f"a-{input_hash(a2)}"), (a_2, "a-2")]}
    assert folders == {p: str(p.resolve()) for p in (a1, a2, a_2)}
    for path, name in [(a1, "a"), (a2, f"a-{input_hash(a2)}"), (a_2, "a-2")]:
        assert json.loads((out / name / "summary.json").read_text())["input"] == str(path.resolve())
    before = snapshot(out)
    # Another set of inputs: each slide is sent back to its own folder (complete, so skipped).
    code, printed, _ = run_cli([model, a_2, a2, "--out", out, "--mpp", "0.5"], capsys)
    assert code == 0 and "2 already complete" in printed
    assert {k: v for k, v in snapshot(out).items() if k.split("/")[0] not in ("batch_summary.json", "cohort.csv")} \
        == {k: v for k, v in before.items() if k.split("/")[0] not in ("batch_summary.json", "cohort.csv")}


def test_a_slide_cannot_take_a_reserved_name(model, tmp_path, capsys):
    image = png(tmp_path / "batch_summary.json.png")
    out = tmp_path / "out"
    code, printed, _ = run_cli([model, image, "--out", out, "--mpp", "0.5"], capsys)
    assert code == 0, printed
    assert json.loads((out / "batch_summary.json").read_text())["counts"]["done"] == 1
    assert (out / f"batch_summary.json-{input_hash(image)}" / "labels.tif").is_file()


def test_a_folder_of_another_model_is_refused_untouched_until_overwrite(model, other_model, slide, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli([model, slide, "--out", out], capsys)[0] == 0
    summary = json.loads((out / "blobs" / "summary.json").read_text())
    assert summary["input"] == str(slide.resolve()) and summary["settings"]["model_sha256"] == summary["model"]["sha256"]
    before = snapshot(out)
    code, _, err = run_cli([other_model, slide, "--out", out], capsys)
    assert code == 2
    one_line_error(err, str(out / "blobs"), "another model", "--overwrite")
    assert snapshot(out) == before
    code, printed, _ = run_cli([other_model, slide, "--out", out, "--overwrite"], capsys)
    assert code == 0 and "1 done" in printed
    assert json.loads((out / "blobs" / "summary.json").read_text())["mpp"] == 2.0


def test_segment_refuses_a_folder_of_another_input(model, slide, tmp_path):
    segmenter = SlideSegmenter(model, progress=False)
    segmenter.segment(slide, tmp_path / "x")
    other = png(tmp_path / "other.png")
    before = snapshot(tmp_path / "x")
    with pytest.raises(OutputError, match="holds the results of .*blobs.tif, not of .*other.png"):
        segmenter.segment(other, tmp_path / "x", slide_mpp=0.5)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds files weakseg-infer did not write"):
        segmenter.segment(slide, tmp_path / "mine")
    assert snapshot(tmp_path / "x") == before and (tmp_path / "mine" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- 3. lock, temporary names
def test_a_second_run_on_the_same_out_stops_with_one_line(model, slide, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        before = snapshot(out)
        code, _, err = run_cli([model, slide, "--out", out], capsys)
        assert code == 2
        one_line_error(err, str(out), "in use by another weakseg-infer run", f"pid {os.getpid()}")
        code, _, err = run_cli([model, slide, "--out", out, "--wait", "0.3"], capsys)
        assert code == 2 and "after waiting 0.3 s" in err
        assert snapshot(out) == before
    assert run_cli([model, slide, "--out", out], capsys)[0] == 0


def test_temporary_names_are_unique_per_process_and_call(tmp_path):
    names = {temporary_path(tmp_path / "labels.tif").name for _ in range(50)}
    assert len(names) == 50 and all(f".labels.tif.{os.getpid()}-" in n for n in names)


# ---------------------------------------------------------------- 8. symbolic links
@pytest.mark.parametrize("planted", ["blobs/labels.tif", "blobs/summary.json", "blobs/.work", "blobs",
                                     "batch_summary.json", "cohort.csv"])
def test_writes_never_follow_a_planted_link(model, slide, tmp_path, capsys, planted):
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "precious.txt"
    victim.write_text("do not touch")
    out = tmp_path / "out"
    assert run_cli([model, slide, "--out", out], capsys)[0] == 0
    link = out / planted
    if link.is_dir():
        import shutil

        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    link.symlink_to(victim_dir if planted in ("blobs", "blobs/.work") else victim)
    code, _, err = run_cli([model, slide, "--out", out, "--force"], capsys)
    assert code == 2
    one_line_error(err, "is a symbolic link", planted.split("/")[-1])
    assert victim.read_text() == "do not touch" and sorted(p.name for p in victim_dir.iterdir()) == ["precious.txt"]
    assert link.is_symlink()


# ---------------------------------------------------------------- 5. model contract
def _model_with(path: Path, input_name="image", out_channels=3, nchw=False) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save

    from weaksegtf.export.metadata import OnnxMetadata

    shape = ["batch", 3, "height", "width"] if nchw else ["batch", "height", "width", 3]
    nodes = ([] if nchw else [helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2])]) + [
        helper.make_node("Conv", [input_name if nchw else "nchw", "w"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Transpose", ["logits"], ["mask_logits"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes, "bad", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, ["batch", "h", "w", "classes"])],
        [numpy_helper.from_array(np.ones((out_channels, 3, 1, 1), np.float32), "w")])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    helper.set_model_props(onnx_model, OnnxMetadata(CLASSES, COLORS, "bad", "0.1.0", "bad", mpp=1.0,
                                                    tile_size_px=64).to_props())
    save(onnx_model, str(path))
    return path


@pytest.mark.parametrize("kind, needle", [
    ("five_classes", "gives mask_logits with 5 classes but its metadata names 3"),
    ("input_name", "takes inputs pixels"),
    ("nchw", "expected 'image' as float32 NHWC"),
])
def test_a_model_that_breaks_the_contract_is_refused_before_any_slide(slide, tmp_path, capsys, kind, needle):
    path = _model_with(tmp_path / f"{kind}.onnx", out_channels=5 if kind == "five_classes" else 3,
                       input_name="pixels" if kind == "input_name" else "image", nchw=kind == "nchw")
    code, _, err = run_cli([path, slide, "--out", tmp_path / "out"], capsys)
    assert code == 2
    one_line_error(err, path.name, needle)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 6. decompression bombs
def _tiff_header(width: int, height: int, strip: bytes, compression: int) -> bytes:
    """A one-strip greyscale TIFF (little-endian) declaring ``width`` x ``height``."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    offset = 8 + 2 + 12 * len(entries) + 4
    body = b"".join(struct.pack("<HHII", tag, kind, 1, offset if tag == 273 else value)
                    if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0) for tag, kind, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + body + b"\x00" * 4 + strip


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    header = folder / "claims_100000.tif"
    header.write_bytes(_tiff_header(100_000, 100_000, b"\x00" * 16, compression=1))
    deflate = zlib.compressobj(9)
    row = b"\x00" * 30_000
    chunks = [deflate.compress(row * 1000) for _ in range(30)]
    compressed = b"".join(chunks) + deflate.flush()
    small = folder / "inflates_30000.tif"
    small.write_bytes(_tiff_header(30_000, 30_000, compressed, compression=8))
    return {"header": header, "deflate": small}


# Peak RSS of this process's own memory: VmHWM belongs to the address space exec made, whereas getrusage's
# ru_maxrss carries over the parent's peak through fork and exec (a pytest that imported TensorFlow: 2.6 GB).
BOMB = """
import resource, sys
from weaksegtf.cli import infer
code = infer.main(sys.argv[1:])
try:
    kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
except (OSError, StopIteration):
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("rss_mb", kb / 1024)
sys.exit(code)
"""


@pytest.mark.parametrize("bomb", ["header", "deflate"])
def test_decompression_bombs_are_refused_within_500_mb(model, bombs, tmp_path, bomb):
    path = bombs[bomb]
    assert path.stat().st_size < 1_000_000
    result = subprocess.run([sys.executable, "-c", BOMB, str(model), str(path), "--out", str(tmp_path / "out"),
                             "--mpp", "0.5", "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and path.name in failed[0] and "over the limit of 268,435,456 pixels" in failed[0]
    assert "--max-pixels" in failed[0]
    rss_mb = float(result.stdout.split("rss_mb")[1])
    assert rss_mb < 500, rss_mb


def test_max_pixels_is_an_option(model, tmp_path, capsys):
    image = png(tmp_path / "small.png")
    code, printed, _ = run_cli([model, image, "--out", tmp_path / "out", "--mpp", "0.5", "--max-pixels", "1000"],
                               capsys)
    assert code == 1 and "declares 240 x 200 = 48,000 pixels, over the limit of 1,000" in printed
    assert run_cli([model, image, "--out", tmp_path / "out", "--mpp", "0.5"], capsys)[0] == 0


# ---------------------------------------------------------------- 9. valid GeoJSON
def _geojson_check(folder: Path) -> dict:
    from shapely.geometry import shape

    summary = json.loads((folder / "summary.json").read_text())
    features = json.loads((folder / "annotations.geojson").read_text())["features"]
    width, height = summary["slide_size_px"]
    geometries = [shape(f["geometry"]) for f in features]
    invalid = sum(not g.is_valid for g in geometries)
    bounds = np.array([g.bounds for g in geometries]).reshape(-1, 4)
    assert len({f["id"] for f in features}) == len(features)
    for feature in features:
        properties = feature["properties"]
        assert properties["objectType"] == "annotation" and properties["isLocked"] is False
        assert set(properties["classification"]) == {"name", "color"}
    areas = {}
    for feature, geometry in zip(features, geometries):
        name = feature["properties"]["classification"]["name"]
        area = feature["properties"]["measurements"]["Area µm^2"]
        assert area == pytest.approx(geometry.area * summary["slide_mpp"] ** 2, rel=1e-6, abs=1e-3)
        areas[name] = areas.get(name, 0.0) + area
    return {"features": len(features), "invalid": invalid, "bounds": bounds, "size": (width, height),
            "areas_mm2": {k: v * 1e-6 for k, v in areas.items()}, "summary": summary, "list": features}


def test_geojson_is_valid_within_the_slide_with_measurements(model, tmp_path):
    # Diagonal touches and pixel holes are what made the hand-traced polygons invalid.
    rng = np.random.default_rng(4)
    image = np.full((601, 757, 3), 245, np.uint8)
    noise = rng.random((601, 757)) < 0.5
    image[noise] = (120, 80, 200)
    image[100:500, 100:650][noise[100:500, 100:650]] = (230, 120, 170)
    path = tmp_path / "speckle.tif"
    write_pyramidal_tiff(path, image, SLIDE_MPP)
    result = SlideSegmenter(model, mpp=SLIDE_MPP, skip_background=False, probabilities=True,
                            progress=False).segment(path, tmp_path / "out")
    check = _geojson_check(tmp_path / "out")
    assert check["features"] > 1000 and check["invalid"] == 0
    assert check["bounds"][:, :2].min() >= 0
    assert (check["bounds"][:, 2] <= 757).all() and (check["bounds"][:, 3] <= 601).all()
    assert check["bounds"][:, 3].max() == 601  # clipped to the slide, not the label grid
    for name, area in check["areas_mm2"].items():
        assert area == pytest.approx(result.summary["class_area_mm2"][name], rel=2e-3)
    probability = [f["properties"]["measurements"]["Mean probability"] for f in check["list"]]
    assert 0.3 < min(probability) and max(probability) <= 1.0


def test_geojson_of_the_cmu_slide_has_no_invalid_polygon(model, cmu_slide, tmp_path):
    SlideSegmenter(model, progress=False).segment(cmu_slide, tmp_path / "cmu")
    check = _geojson_check(tmp_path / "cmu")
    assert check["features"] > 100 and check["invalid"] == 0
    assert (check["bounds"][:, 2] <= 2220).all() and (check["bounds"][:, 3] <= 2967).all()
    assert check["bounds"][:, :2].min() >= 0


# ---------------------------------------------------------------- 10/11. bad output folders and values
def test_out_that_is_a_file_is_refused_untouched(model, slide, tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("a file")
    code, _, err = run_cli([model, slide, "--out", target], capsys)
    assert code == 2
    one_line_error(err, str(target), "is a file")
    assert target.read_text() == "a file"


@pytest.mark.parametrize("option, value, needle", [
    ("--inference-mpp", "0", "--inference-mpp must be > 0, got 0"),
    ("--mpp", "-1", "--mpp must be > 0, got -1"),
    ("--tissue-threshold", "300", "--tissue-threshold must be >= 0 and < 1, got 300"),
    ("--batch-size", "0", "--batch-size must be > 0, got 0"),
    ("--max-pixels", "0", "--max-pixels must be > 0, got 0"),
    ("--overlap", "-16", "--overlap must be >= 0, got -16"),
    ("--inference-mpp", "nan", "--inference-mpp must be > 0, got nan"),
    ("--outside-tissue", "300", "invalid choice: '300'"),
])
def test_bad_values_are_one_line_errors(model, slide, tmp_path, capsys, option, value, needle):
    with pytest.raises(SystemExit) as exit_info:
        infer_cli.main([str(model), str(slide), "--out", str(tmp_path / "out"), option, value])
    assert exit_info.value.code == 2
    one_line_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "out").exists()


def test_library_refuses_bad_values_with_their_option_names(model):
    with pytest.raises(Exception, match=r"inference mpp \(--inference-mpp\) must be a positive number, got 0"):
        SlideSegmenter(model, mpp=0)
    with pytest.raises(Exception, match=r"tissue_threshold \(--tissue-threshold\) must be .* got 300"):
        SlideSegmenter(model, tissue_threshold=300)


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip() or 'mount failed'})")


@pytest.fixture
def tmpfs(tmp_path):
    mounted = tmp_path / "disk"
    yield mounted
    subprocess.run(["umount", "-l", str(mounted)], capture_output=True)


def test_read_only_out_is_refused_before_any_work(model, slide, tmpfs, capsys):
    _mount_tmpfs(tmpfs, "size=1m,ro")
    code, _, err = run_cli([model, slide, "--out", tmpfs], capsys)
    assert code == 2
    one_line_error(err, str(tmpfs), "read-only")
    code, _, err = run_cli([model, slide, "--out", tmpfs / "sub"], capsys)
    assert code == 2
    one_line_error(err, str(tmpfs / "sub"), "read-only")


@pytest.mark.parametrize("size", ["256k", "372k"])  # full while running tiles / while writing outputs
def test_full_disk_is_a_clean_error_and_resumes_byte_identical(model, slide, tmp_path, tmpfs, capsys, size):
    reference = tmp_path / "reference"
    assert run_cli([model, slide, "--out", reference, "--probabilities"], capsys)[0] == 0
    _mount_tmpfs(tmpfs, f"size={size}")
    out = tmpfs / "out"
    code, _, err = run_cli([model, slide, "--out", out, "--probabilities"], capsys)
    assert code == 2
    one_line_error(err, "the disk is full", str(out / "blobs"))
    names = set(os.listdir(out / "blobs"))
    assert not names & {"labels.tif", "summary.json", "overlay.png", "annotations.geojson"}
    assert not [n for n in names if n.endswith(".partial")]
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    code, printed, _ = run_cli([model, slide, "--out", out, "--probabilities"], capsys)
    assert code == 0 and "1 done" in printed
    for name in RESULT_FILES + [f"probabilities_{i}_{c}.tif" for i, c in enumerate(CLASSES)]:
        assert (out / "blobs" / name).read_bytes() == (reference / "blobs" / name).read_bytes(), name
    assert not (out / "blobs" / ".work").exists()


def test_resumed_summary_counts_are_consistent(model, slide, tmp_path):
    segmenter = SlideSegmenter(model, tile_size_px=64, overlap_px=16, batch_size=2, checkpoint_interval_s=0,
                               progress=False)
    run = segmenter.model.run
    calls = []

    def failing(images):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("killed")
        return run(images)

    segmenter.model.run = failing
    with pytest.raises(RuntimeError):
        segmenter.segment(slide, tmp_path / "out")
    segmenter.model.run = run
    summary = segmenter.segment(slide, tmp_path / "out").summary
    tiles = summary["tiles"]
    assert 0 < tiles["resumed"] <= tiles["run"] and tiles["run_now"] == tiles["run"] - tiles["resumed"]
    assert summary["tiles_per_s"] > 0
    again = segmenter.segment(slide, tmp_path / "again").summary
    assert again["tiles"]["resumed"] == 0 and again["tiles_per_s"] > 0


def test_batch_summary_and_cohort_csv_are_merged_not_overwritten(model, slide, tmp_path, capsys):
    out = tmp_path / "out"
    image = png(tmp_path / "crop.png")
    assert run_cli([model, slide, "--out", out], capsys)[0] == 0
    assert run_cli([model, image, tmp_path / "gone.png", "--out", out, "--mpp", "0.5"], capsys)[0] == 1
    assert run_cli([model, slide, "--out", out], capsys)[0] == 0
    document = json.loads((out / "batch_summary.json").read_text())
    assert [Path(r["path"]).name for r in document["slides"]] == ["blobs.tif", "crop.png", "gone.png"]
    assert len(document["runs"]) == 3 and document["counts"] == {"done": 1, "skipped": 1, "failed": 1}
    rows = {r["slide"]: r for r in csv.DictReader((out / "cohort.csv").open())}
    assert set(rows) == {"blobs", "crop", "gone"}
    assert rows["gone"]["status"] == "failed" and "does not exist" in rows["gone"]["error"]
    summary = json.loads((out / "blobs" / "summary.json").read_text())
    assert float(rows["blobs"]["tissue_area_mm2"]) == pytest.approx(summary["tissue_area_mm2"], abs=1e-6)
    for name in ("nuclei", "stroma"):
        assert float(rows["blobs"][f"area_mm2_{name}"]) == pytest.approx(summary["class_area_mm2"][name], abs=1e-6)


# ---------------------------------------------------------------- 7. tissue control
def test_outside_tissue_background_and_roi_limit_the_labels(model, slide, tmp_path, capsys):
    roi = tmp_path / "roi.geojson"
    roi.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"objectType": "annotation"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [320, 0], [320, 512], [0, 512], [0, 0]]]}}]}))
    out = tmp_path / "out"
    code, _, err = run_cli([model, slide, "--out", out, "--roi", roi, "--outside-tissue", "background"], capsys)
    assert code == 0, err
    labels = tifffile.imread(out / "blobs" / "labels.tif")  # 1 um/px: the ROI is the left 160 columns
    assert labels[:, 168:].max() == 0 and labels[:, :150].max() > 0
    full = tmp_path / "full"
    assert run_cli([model, slide, "--out", full], capsys)[0] == 0
    assert tifffile.imread(full / "blobs" / "labels.tif")[:, 168:].max() > 0
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.pad(np.full((64, 40), 255, np.uint8), ((0, 0), (0, 40))))
    code, _, _ = run_cli([model, slide, "--out", tmp_path / "masked", "--roi", mask, "--outside-tissue",
                          "background"], capsys)
    assert code == 0 and tifffile.imread(tmp_path / "masked" / "blobs" / "labels.tif")[:, 168:].max() == 0
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", 1]]]}}')
    code, printed, _ = run_cli([model, slide, "--out", tmp_path / "broken", "--roi", broken], capsys)
    assert code == 1 and "broken.geojson: feature 0 has malformed polygon coordinates" in printed


def test_tissue_threshold_changes_what_is_tissue(model, slide, tmp_path, capsys):
    assert run_cli([model, slide, "--out", tmp_path / "a", "--tissue-threshold", "0.99"], capsys)[0] == 0
    summary = json.loads((tmp_path / "a" / "blobs" / "summary.json").read_text())
    assert summary["tissue_area_mm2"] == 0 and summary["tiles"]["run"] == 0
    assert summary["tissue_threshold"] == 0.99


# ---------------------------------------------------------------- GPU fallback
def test_cuda_with_cpu_fallback_warns_and_cuda_alone_refuses(model, slide, tmp_path, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    code, printed, err = run_cli([model, slide, "--out", tmp_path / "out", "--providers", "cuda,cpu"], capsys)
    assert code == 0 and "providers: CPUExecutionProvider" in printed
    assert "warning: execution provider CUDAExecutionProvider is not in this onnxruntime build" in err
    code, _, err = run_cli([model, slide, "--out", tmp_path / "out2", "--providers", "cuda"], capsys)
    assert code == 2
    advice = "pip uninstall --yes onnxruntime && pip install 'onnxruntime-gpu[cuda,cudnn]'"
    one_line_error(err, "CUDAExecutionProvider is not in this onnxruntime build", advice)
    install = (REPO / "docs" / "install.md").read_text()
    assert "pip uninstall --yes onnxruntime" in install and 'pip install "onnxruntime-gpu[cuda,cudnn]"' in install
