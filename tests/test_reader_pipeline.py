"""Reader processes (``--readers N``): the files of the reading threads, byte for byte, on a tifffile slide and on
the real CMU slide (stain-normalised in the readers); bad counts refused; a reader that fails or dies fails its
slide with a message naming it, without hanging; Ctrl-C, SIGKILL and errors leave no process behind; a killed run
resumes byte-identical; Dask workers may use readers."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile
from _onnx_models import OUTPUT_FILES, color_classifier, conv3x3_model
from _slide_files import pyramid_levels, write_tiled_tiff
from test_dask_cohorts import assert_same_outputs
from test_inference_slides import SLIDE_MPP, blob_image

from weaksegtf.cli import infer as infer_cli
from weaksegtf.errors import ConfigError, SlideError
from weaksegtf.inference import SlideSegmenter, plan_tiles
from weaksegtf.inference.reader_processes import ReaderProcesses, SlideOpener
from weaksegtf.inference.slide_tiles import SlideTiles
from weaksegtf.preprocessing import MacenkoNormalizer
from weaksegtf.slides import open_slide

#: 256 x 320 px at the model's 1 um/px: 30 tiles of 64 px overlapping by 16, 35 without skipping background.
TILING = ["--tile-size", "64", "--overlap", "16", "--batch-size", "4", "--threads", "1"]
#: Longest a run that must fail may take before the test calls it a hang.
NO_HANG_S = 120


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return color_classifier(tmp_path_factory.mktemp("model") / "model.onnx", mpp=1.0, tile_size_px=64)


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    """512 x 640 px at 0.5 um/px, five levels (tifffile, zlib tiles of 64 px): the model reads level 1."""
    path = tmp_path_factory.mktemp("slides") / "blobs.tif"
    return write_tiled_tiff(path, pyramid_levels(blob_image(512, 640, seed=5), 5), SLIDE_MPP, tile=64)


@pytest.fixture(scope="module")
def threads_run(model, slide, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("threads")
    assert infer_cli.main([str(model), str(slide), "--out", str(out), *TILING, "--probabilities", "--quiet"]) == 0
    return out


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def reader_children(pid: int) -> list[psutil.Process]:
    """The reader processes below ``pid``: children of its fork server (not the server or the resource tracker)."""
    found = []
    for child in children_of(pid):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "forkserver" in command and child.ppid() != pid:
            found.append(child)
    return found


def assert_all_end(processes: list[psutil.Process], timeout_s: float = 20.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    assert not alive, [" ".join(p.cmdline()) for p in alive]


# ---------------------------------------------------------------- same files
@pytest.mark.parametrize("readers", ["1", "2"])
def test_readers_write_the_files_of_the_reading_threads(model, slide, threads_run, tmp_path, capsys, readers):
    out = tmp_path / "out"
    assert infer_cli.main([str(model), str(slide), "--out", str(out), *TILING, "--probabilities", "--quiet",
                           "--readers", readers]) == 0
    assert_same_outputs(threads_run, out, ignore=("tile_readers",))
    summary = json.loads((out / "blobs" / "summary.json").read_text())
    assert summary["tile_readers"] == {"processes": int(readers)}
    assert json.loads((threads_run / "blobs" / "summary.json").read_text())["tile_readers"] == {"threads": 2}
    assert summary["tiles"]["run"] == 30
    assert_all_end(reader_children(os.getpid()))  # the readers ended with the slide


def test_readers_on_the_cmu_slide_with_stain_normalisation_in_the_readers(cmu_slide, tmp_path):
    with open_slide(cmu_slide) as reader:
        reference = MacenkoNormalizer().fit(reader.read_at_mpp((600, 1500), (256, 256), 2.0))
    reference.save(tmp_path / "stain.json")
    stained = color_classifier(tmp_path / "stained.onnx", mpp=2.0, tile_size_px=32,
                               macenko=json.loads((tmp_path / "stain.json").read_text()))
    outputs = {}
    for readers in (None, 2):
        segmenter = SlideSegmenter(stained, tile_size_px=128, overlap_px=32, batch_size=4, threads=1,
                                   probabilities=True, readers=readers, progress=False)
        result = segmenter.segment(cmu_slide, tmp_path / f"readers_{readers}")
        assert result.status == "done" and result.summary["tiles"]["run"] > 20
        outputs[readers] = result.out_dir
    for name in OUTPUT_FILES:
        assert (outputs[2] / name).read_bytes() == (outputs[None] / name).read_bytes(), name
    # The normalisation did change the tiles: the same model without it labels the slide otherwise.
    plain = color_classifier(tmp_path / "plain.onnx", mpp=2.0, tile_size_px=32)
    result = SlideSegmenter(plain, tile_size_px=128, overlap_px=32, batch_size=4, threads=1, readers=2,
                            progress=False).segment(cmu_slide, tmp_path / "plain")
    assert (result.out_dir / "labels.tif").read_bytes() != (outputs[2] / "labels.tif").read_bytes()


# ---------------------------------------------------------------- bad counts
@pytest.mark.parametrize("value", ["0", "-2", "1.5", "two"])
def test_a_bad_reader_count_is_a_one_line_error(model, slide, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        infer_cli.main([str(model), str(slide), "--out", str(tmp_path / "out"), "--readers", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: argument --readers: --readers must be ")
    assert (f"got {value}" in error) if value in ("0", "-2") else (f"a number, got '{value}'" in error)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_library_refuses_a_bad_reader_count(model, slide, value):
    with pytest.raises(ConfigError, match=rf"readers \(--readers\) must be a positive whole number, got {value}"):
        SlideSegmenter(model, readers=value)
    with open_slide(slide) as reader, pytest.raises(ConfigError, match=r"must be a whole number >= 1, got 0"):
        ReaderProcesses(SlideOpener.for_slide(reader), 0)


def test_a_daemonic_process_cannot_have_readers_and_says_how_to_start_dask_workers(model, monkeypatch):
    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)
    with pytest.raises(ConfigError, match=r"is daemonic .* DASK_DISTRIBUTED__WORKER__DAEMON=False"):
        SlideSegmenter(model, readers=2)


# ---------------------------------------------------------------- failures
def corrupt_copy(slide: Path, folder: Path) -> Path:
    """The slide with a level-1 tile in the tissue zeroed: the tissue mask (level 4) reads, that tile does not."""
    data = bytearray(slide.read_bytes())
    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[1]
        tile = 2 * -(-page.imagewidth // 64) + 2  # row 2, column 2 of the 64-px tiles of level 1
        offset, count = page.dataoffsets[tile], page.databytecounts[tile]
    data[offset : offset + count] = bytes(count)
    path = folder / "corrupt.tif"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("readers", [[], ["--readers", "2"]])
def test_a_corrupt_tile_fails_its_slide_naming_it_and_the_others_finish(model, slide, tmp_path, readers):
    corrupt = corrupt_copy(slide, tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "weaksegtf.cli.infer", str(model), str(corrupt), str(slide),
               "--out", str(out), *TILING, "--quiet", *readers]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=NO_HANG_S)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - start < NO_HANG_S
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and f"slide {corrupt} is corrupt or truncated: reading 64x64 px at" in failed[0], failed
    assert "1 done, 0 already complete, 1 failed" in result.stdout
    assert (out / "blobs" / "summary.json").is_file()


def test_a_slide_gone_before_its_readers_open_it_is_named(slide, tmp_path):
    copy = tmp_path / "gone.tif"
    copy.write_bytes(slide.read_bytes())
    with open_slide(copy) as reader:
        opener = SlideOpener.for_slide(reader)
        tiles = SlideTiles(plan_tiles(256, 320, 64, 16), 1.0, 2.0)
    copy.unlink()
    with ReaderProcesses(opener, 2) as readers, pytest.raises(SlideError, match=rf"slide {copy} does not exist"):
        list(readers.read_batches(tiles, [np.arange(4), np.arange(4, 8)]))
    copy.write_bytes(b"another file now")
    with ReaderProcesses(opener, 1) as readers, pytest.raises(SlideError, match=r"gone.tif changed on disk"):
        next(readers.read_batches(tiles, [np.arange(4)]))


def test_a_reader_that_dies_fails_the_slide_naming_it_without_hanging(model, slide, tmp_path, monkeypatch):
    tissue = SlideSegmenter._tissue

    def tissue_then_kill_a_reader(self, reader):
        mask = tissue(self, reader)
        deadline = time.monotonic() + 30
        while not reader_children(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(reader_children(os.getpid())[0].pid, signal.SIGKILL)
        return mask

    monkeypatch.setattr(SlideSegmenter, "_tissue", tissue_then_kill_a_reader)
    segmenter = SlideSegmenter(model, tile_size_px=64, overlap_px=16, batch_size=4, threads=1, readers=2,
                               progress=False)
    start = time.monotonic()
    with pytest.raises(SlideError, match=rf"a reader process of slide {slide} ended abruptly"):
        segmenter.segment(slide, tmp_path / "out")
    assert time.monotonic() - start < NO_HANG_S
    assert_all_end(reader_children(os.getpid()))
    assert not (tmp_path / "out" / "summary.json").exists()


# ---------------------------------------------------------------- no process left behind
RUN = """
import sys
from weaksegtf.inference import SlideSegmenter
if __name__ == "__main__":
    SlideSegmenter(sys.argv[1], tile_size_px=32, overlap_px=16, batch_size=4, threads=1, probabilities=True,
                   skip_background=False, checkpoint_interval_s=0.05, readers={readers},
                   progress=False).segment(sys.argv[2], sys.argv[3])
"""


def run_script(folder: Path, readers: int | None) -> list[str]:
    """The command of the library run above with ``readers``, before its arguments (model, slide, out)."""
    script = folder / f"run_{readers}.py"
    script.write_text(RUN.format(readers=readers))
    return [sys.executable, str(script)]


def start_run(tmp_path: Path, model: Path, slide: Path, out: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """The run above with 2 readers in a process of its own; returns it and its readers, once they read tiles."""
    process = subprocess.Popen([*run_script(tmp_path, 2), str(model), str(slide), str(out)])
    done = out / ".work" / "done.u32"
    deadline = time.monotonic() + NO_HANG_S
    while not (done.exists() and done.stat().st_size >= 4 * 64) and time.monotonic() < deadline:
        time.sleep(0.005)
    readers = reader_children(process.pid)
    assert len(readers) == 2 and process.poll() is None
    return process, readers


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory):
    """3,072 tiles of 32 px at 0.5 um/px (level 0): a run lasts long enough to be interrupted."""
    folder = tmp_path_factory.mktemp("big")
    model = conv3x3_model(folder / "conv.onnx", mpp=SLIDE_MPP, tile_size_px=32)
    slide = write_tiled_tiff(folder / "slide.tif", pyramid_levels(blob_image(768, 1024, seed=3), 4), SLIDE_MPP)
    clean = folder / "clean"
    subprocess.run([*run_script(folder, None), str(model), str(slide), str(clean)], check=True, timeout=300)
    return model, slide, clean


@pytest.mark.slow
def test_ctrl_c_ends_every_reader_and_the_run_resumes_byte_identical(big_slide, tmp_path):
    model, slide, clean = big_slide
    out = tmp_path / "out"
    process, readers = start_run(tmp_path, model, slide, out)
    everything = children_of(process.pid)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=NO_HANG_S)
    assert process.returncode != 0
    assert_all_end(everything)
    finished = (out / ".work" / "done.u32").stat().st_size // 4
    assert not (out / "summary.json").exists() and 0 < finished < 3072

    subprocess.run([*run_script(tmp_path, 2), str(model), str(slide), str(out)], check=True, timeout=300)
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiles"]["resumed"] >= finished and summary["tile_readers"] == {"processes": 2}


@pytest.mark.slow
def test_readers_end_with_a_parent_killed_by_sigkill(big_slide, tmp_path):
    model, slide, _ = big_slide
    process, readers = start_run(tmp_path, model, slide, tmp_path / "out")
    everything = children_of(process.pid)
    process.kill()
    process.wait(timeout=NO_HANG_S)
    assert_all_end(everything)


# ---------------------------------------------------------------- with Dask
def test_dask_workers_with_readers_write_the_same_files(model, slide, threads_run, tmp_path, capsys):
    out = tmp_path / "dask"
    assert infer_cli.main([str(model), str(slide), "--out", str(out), *TILING, "--probabilities", "--quiet",
                           "--workers", "2", "--readers", "1"]) == 0
    assert_same_outputs(threads_run, out, ignore=("tile_readers",))
    assert json.loads((out / "blobs" / "summary.json").read_text())["tile_readers"] == {"processes": 1}


def test_daemonic_dask_workers_stop_a_readers_run_with_the_setting_to_change(model, slide, tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code = infer_cli.main([str(model), str(slide), "--out", str(tmp_path / "out"), *TILING, "--quiet",
                               "--scheduler", cluster.scheduler_address, "--readers", "2"])
    assert code == 2
    error = capsys.readouterr().err
    assert "readers=2 (--readers) starts reader processes, but this process" in error
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in error
    assert not (tmp_path / "out" / "blobs").exists()
