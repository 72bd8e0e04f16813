"""weakseg-infer as users run it: exit codes, batch runs with broken slides, --mpp, and resuming
after SIGKILL with output identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from _onnx_models import OUTPUT_FILES, color_classifier, conv3x3_model
from test_inference_slides import SLIDE_MPP, blob_image

from weaksegtf.cli import infer as infer_cli
from weaksegtf.slides import write_pyramidal_tiff



@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return color_classifier(tmp_path_factory.mktemp("model") / "model.onnx", mpp=1.0, tile_size_px=128)


@pytest.fixture(scope="module")
def slides(tmp_path_factory, cmu_slide) -> Path:
    """A folder with one good slide, a truncated one and one with a corrupt tile (both cut from CMU)."""
    folder = tmp_path_factory.mktemp("batch")
    write_pyramidal_tiff(folder / "good.tif", blob_image(640, 768), SLIDE_MPP)
    data = cmu_slide.read_bytes()
    (folder / "cut.svs").write_bytes(data[: int(len(data) * 0.6)])
    corrupt = bytearray(data)
    with tifffile.TiffFile(cmu_slide) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    corrupt[offset : offset + count] = bytes(count)
    (folder / "corrupt.svs").write_bytes(bytes(corrupt))
    return folder


def test_help_is_instant_and_imports_no_tensorflow():
    code = ("import sys, time; start = time.perf_counter(); import weaksegtf.cli.infer; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules and 'onnxruntime' not in sys.modules; "
            "print(time.perf_counter() - start)")
    seconds = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert seconds < 1.0
    with pytest.raises(SystemExit) as exit_info:
        infer_cli.main(["--help"])
    assert exit_info.value.code == 0


def test_bad_model_options_or_no_input_exit_2(model, slides, tmp_path, capsys):
    assert infer_cli.main([str(tmp_path / "missing.onnx"), str(slides), "--out", str(tmp_path)]) == 2
    assert "missing.onnx does not exist" in capsys.readouterr().err
    assert infer_cli.main([str(model), str(slides), "--out", str(tmp_path), "--tile-size", "100"]) == 2
    assert "tile_size_px must be a positive multiple of 16, got 100" in capsys.readouterr().err
    assert infer_cli.main([str(model), str(slides), "--out", str(tmp_path), "--providers", "nope"]) == 2
    assert "execution provider nope is not in this onnxruntime build" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert infer_cli.main([str(model), str(tmp_path / "empty"), str(tmp_path / "*.svs"), "--out", str(tmp_path)]) == 2
    assert "no slide or image files in" in capsys.readouterr().err


def test_broken_slides_are_reported_and_the_others_finish(model, slides, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(model), str(slides / "*.svs"), str(slides / "good.tif"), str(slides / "gone.svs"),
            "--out", str(out), "--quiet"]
    assert infer_cli.main(argv) == 1
    printed = capsys.readouterr().out
    assert "1 done, 0 already complete, 3 failed" in printed
    summary = json.loads((out / "batch_summary.json").read_text())
    reasons = {Path(f["path"]).name: f["error"] for f in summary["failures"]}
    assert set(reasons) == {"corrupt.svs", "cut.svs", "gone.svs"}
    assert "corrupt or truncated" in reasons["cut.svs"] and "corrupt or truncated" in reasons["corrupt.svs"]
    assert "does not exist" in reasons["gone.svs"]
    assert all((out / "good" / name).is_file() for name in ["labels.tif", "overlay.png", "summary.json"])
    assert not (out / "cut").exists()  # nothing written for a slide that could not be opened
    # Run again: the finished slide is skipped, the broken ones fail again.
    assert infer_cli.main(argv) == 1
    assert "0 done, 1 already complete, 3 failed" in capsys.readouterr().out


def test_image_without_mpp_fails_clearly_and_mpp_fixes_it(model, tmp_path, capsys):
    image = tmp_path / "crop.png"
    cv2.imwrite(str(image), cv2.cvtColor(blob_image(300, 400), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert infer_cli.main([str(model), str(image), "--out", str(out), "--quiet"]) == 1
    assert "crop.png has no resolution" in capsys.readouterr().out
    assert infer_cli.main([str(model), str(image), "--out", str(out), "--quiet", "--mpp", "0.5"]) == 0
    summary = json.loads((out / "crop" / "summary.json").read_text())
    assert summary["slide_mpp"] == 0.5 and summary["output_size_px"] == [200, 150]


RUN = """
import sys
from weaksegtf.inference import SlideSegmenter
SlideSegmenter(sys.argv[1], tile_size_px=32, overlap_px=16, batch_size=4, probabilities=True,
               skip_background=False, checkpoint_interval_s=0.05, progress=False).segment(sys.argv[2], sys.argv[3])
"""


@pytest.mark.slow
def test_sigkill_mid_slide_then_rerun_gives_the_uninterrupted_output(tmp_path):
    model = conv3x3_model(tmp_path / "conv.onnx", mpp=SLIDE_MPP, tile_size_px=32)
    slide = tmp_path / "slide.tif"
    write_pyramidal_tiff(slide, blob_image(768, 1024, seed=3), SLIDE_MPP)  # 3,072 tiles of 32 px
    command = [sys.executable, "-c", RUN, str(model), str(slide)]
    subprocess.run(command + [str(tmp_path / "clean")], check=True, timeout=300)

    killed = tmp_path / "killed"
    done = killed / ".work" / "done.u32"
    process = subprocess.Popen(command + [str(killed)])
    deadline = time.monotonic() + 120
    while not (done.exists() and done.stat().st_size >= 4 * 64) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = done.stat().st_size // 4
    assert not (killed / "summary.json").exists() and 0 < finished < 3072

    subprocess.run(command + [str(killed)], check=True, timeout=300)
    for name in OUTPUT_FILES:
        assert (killed / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    resumed = json.loads((killed / "summary.json").read_text())
    clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert resumed["tiles"]["resumed"] >= finished > 0 and clean["tiles"]["resumed"] == 0
    for key in ("class_area_mm2", "tissue_area_mm2", "outputs", "settings"):
        assert resumed[key] == clean[key]
    assert not (killed / ".work").exists()


def test_folder_of_plain_images_jpeg_and_flat_tiff(model, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    image = blob_image(200, 240)
    cv2.imwrite(str(folder / "a.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    # An untiled TIFF with resolution tags (0.5 um/px) needs no --mpp; the JPEG takes --mpp.
    tifffile.imwrite(folder / "b.tif", image, photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    out = tmp_path / "out"
    assert infer_cli.main([str(model), str(folder), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "1 done, 0 already complete, 1 failed" in printed and "a.jpg has no resolution" in printed
    assert infer_cli.main([str(model), str(folder), "--out", str(out), "--quiet", "--mpp", "0.5"]) == 0
    assert "1 done, 1 already complete, 0 failed" in capsys.readouterr().out
    for name in ("a", "b"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["slide_mpp"] == 0.5 and summary["output_size_px"] == [120, 100]
