"""Cohorts on Dask: ``weakseg-infer --workers N`` / ``--scheduler ADDRESS`` write the files of a single-process
run; a worker killed mid-slide is replaced and the slide resumes from its tile store; each worker process opens
the model once; dask stays an optional, lazy import."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _onnx_models import color_classifier
from _slide_files import pyramid_levels, write_tiled_tiff
from distributed import Client, LocalCluster, WorkerPlugin
from test_inference_slides import SLIDE_MPP, blob_image

from weaksegtf.cli import infer as infer_cli
from weaksegtf.errors import ClusterError, ConfigError
from weaksegtf.inference import ClusterSettings, SlideSegmenter, segment_slides

SLIDE_NAMES = ("s0", "s1", "s2")
#: 256 x 320 px at the model's 1 um/px: 30 tiles of 64 px overlapping by 16 (35 without skipping background).
TILING = ["--tile-size", "64", "--overlap", "16", "--batch-size", "4", "--threads", "1"]
#: The fault plugin kills the first worker whose slide has this many tiles on disk.
KILL_AFTER_TILES = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return color_classifier(tmp_path_factory.mktemp("model") / "model.onnx", mpp=1.0, tile_size_px=64)


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> list[Path]:
    """Three tiled TIFF slides (tifffile) of 512 x 640 px at 0.5 um/px, two levels, and a missing one."""
    folder = tmp_path_factory.mktemp("slides")
    paths = [write_tiled_tiff(folder / f"{name}.tif", pyramid_levels(blob_image(512, 640, seed=i), 2), SLIDE_MPP)
             for i, name in enumerate(SLIDE_NAMES)]
    return paths + [folder / "gone.tif"]


def output_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


#: What legitimately differs between the summaries of two runs: start times and seconds.
TIMES = ("seconds", "run_started", "started", "timings_s", "tiles_per_s")


def without(document, keys):
    """``document`` (JSON) without ``keys`` at any depth."""
    if isinstance(document, dict):
        return {k: without(v, keys) for k, v in document.items() if k not in keys}
    if isinstance(document, list):
        return [without(v, keys) for v in document]
    return document


def assert_same_outputs(reference: Path, out: Path, ignore: tuple[str, ...] = ()) -> None:
    """Every file byte for byte, except the lock files (they hold the pid of their last holder) and the two
    JSON summaries, equal once ``TIMES`` and ``ignore`` are taken out."""
    expected, got = output_files(reference), output_files(out)
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        if name.endswith(".weakseg-infer.lock"):
            assert got[name].decode().strip().isdigit()
        elif name == "batch_summary.json" or name.endswith("/summary.json"):
            a = without(json.loads(data.decode().replace(str(reference), "OUT")), TIMES + ignore)
            b = without(json.loads(got[name].decode().replace(str(out), "OUT")), TIMES + ignore)
            assert a == b, name
        else:
            assert got[name] == data, name


# ---------------------------------------------------------------- a local cluster
def test_two_local_workers_write_the_files_of_a_single_process_run(model, slides, tmp_path, capsys):
    single, dask = tmp_path / "single", tmp_path / "dask"
    argv = [str(model), *map(str, slides), *TILING, "--probabilities"]
    assert infer_cli.main([*argv, "--out", str(single), "--quiet"]) == 1  # gone.tif fails
    single_printed = capsys.readouterr().out
    assert infer_cli.main([*argv, "--out", str(dask), "--workers", "2"]) == 1
    captured = capsys.readouterr()

    assert_same_outputs(single, dask)
    assert (dask / "cohort.csv").read_bytes() == (single / "cohort.csv").read_bytes()
    rows = {r["slide"]: r for r in csv.DictReader((dask / "cohort.csv").open())}
    assert [rows[n]["status"] for n in (*SLIDE_NAMES, "gone")] == ["done", "done", "done", "failed"]
    assert rows["gone"]["error"] == f"slide {slides[3]} does not exist"
    document = json.loads((dask / "batch_summary.json").read_text())
    assert document["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert document["runs"][0]["slides"] == [*SLIDE_NAMES, "gone"]  # input order, not order of completion
    assert [s["tiles"]["run"] for s in document["slides"][1:]] == [30, 30, 30]
    # The client printed one line per slide; the slides ran on both workers.
    workers = {line.rsplit(" on ", 1)[1].split(" |")[0] for line in captured.err.splitlines() if " done in " in line}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers), captured.err
    assert "providers on the workers: CPUExecutionProvider" in captured.out
    assert captured.out.splitlines()[1:] == [line.replace(str(single), str(dask))
                                             for line in single_printed.splitlines()[1:]]

    # Run again on the cluster: every slide is already complete, the missing one fails again.
    assert infer_cli.main([*argv, "--out", str(dask), "--workers", "2", "--quiet"]) == 1
    assert "0 done, 3 already complete, 1 failed" in capsys.readouterr().out
    assert len(json.loads((dask / "batch_summary.json").read_text())["runs"]) == 2


# ---------------------------------------------------------------- a worker killed mid-slide
class FaultPlugin(WorkerPlugin):
    """Set up on every worker of the test's cluster, before the run's plugin.

    It logs each onnxruntime session a worker process opens and each slide it
    starts, and SIGKILLs the first process whose slide has ``KILL_AFTER_TILES``
    tiles recorded in its checkpoint (once per test: a flag file says so).
    """

    def __init__(self, log_dir: str, kill_flag: str) -> None:
        self.log_dir = log_dir
        self.kill_flag = kill_flag

    def setup(self, worker) -> None:
        import onnxruntime

        from weaksegtf.inference.checkpoint import Checkpoint
        from weaksegtf.inference.slide_segmenter import SlideSegmenter

        log_dir, kill_flag = Path(self.log_dir), self.kill_flag

        def log(kind: str) -> None:
            with open(log_dir / f"{kind}-{os.getpid()}", "a") as handle:
                handle.write(".")

        class CountingSession(onnxruntime.InferenceSession):
            def __init__(self, *args, **kwargs):
                log("sessions")
                super().__init__(*args, **kwargs)

        onnxruntime.InferenceSession = CountingSession
        segment = SlideSegmenter.segment

        def logged_segment(self, *args, **kwargs):
            log("slides")
            return segment(self, *args, **kwargs)

        SlideSegmenter.segment = logged_segment
        commit = Checkpoint.commit

        def commit_then_die(self, stores, force=False):
            commit(self, stores, force)
            if self._done_path.stat().st_size >= 4 * KILL_AFTER_TILES:
                try:
                    fd = os.open(kill_flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.write(fd, self.folder.parent.name.encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)

        Checkpoint.commit = commit_then_die


def test_a_worker_killed_mid_slide_is_replaced_and_the_slide_resumes(model, slides, tmp_path):
    settings = dict(tile_size_px=64, overlap_px=16, batch_size=4, threads=1, probabilities=True,
                    skip_background=False, checkpoint_interval_s=0.0, progress=False)
    reference = segment_slides(SlideSegmenter(model, **settings), slides, tmp_path / "single")
    logs, flag = tmp_path / "logs", tmp_path / "killed"
    logs.mkdir()
    out = tmp_path / "dask"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(FaultPlugin(str(logs), str(flag)), name="faults")
        first_workers = set(client.scheduler_info()["workers"])
        result = segment_slides(SlideSegmenter(model, **settings), slides, out,
                                cluster=ClusterSettings(scheduler_address=cluster.scheduler_address))
        client.wait_for_workers(2)
        assert set(client.scheduler_info()["workers"]) != first_workers  # the killed one was replaced

    killed = flag.read_text()
    assert killed in SLIDE_NAMES
    assert [(s.path, s.status, s.out_dir) for s in result.slides] == [
        (s.path, s.status, out / s.out_dir.name) for s in reference.slides]
    assert_same_outputs(tmp_path / "single", out, ignore=("resumed", "run_now"))  # checked below
    for name in SLIDE_NAMES:
        tiles = json.loads((out / name / "summary.json").read_text())["tiles"]
        assert tiles["total"] == tiles["run"] == 35
        if name == killed:
            assert KILL_AFTER_TILES <= tiles["resumed"] < 35 and tiles["run_now"] == 35 - tiles["resumed"]
        else:
            assert tiles["resumed"] == 0 and tiles["run_now"] == 35
        assert not (out / name / ".work").exists()
    document = json.loads((out / "batch_summary.json").read_text())
    assert document["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert [f["path"] for f in document["failures"]] == [str(slides[3])]
    # One onnxruntime session per worker process, reused: 5 slide starts (4 inputs and the killed one again)
    # in 2 or 3 processes (the replacement opens the model if it joins before the run ends).
    sessions = {p.name.split("-")[1]: len(p.read_text()) for p in logs.glob("sessions-*")}
    starts = {p.name.split("-")[1]: len(p.read_text()) for p in logs.glob("slides-*")}
    assert set(sessions.values()) == {1} and len(sessions) in (2, 3) and set(starts) <= set(sessions)
    assert sum(starts.values()) == 5 and max(starts.values()) >= 2


def test_a_slide_whose_worker_dies_with_no_loss_allowed_fails_alone_and_resumes_next_run(model, slides, tmp_path):
    """With no worker loss allowed, the killed slide is recorded as failed and the other finishes; run again,
    the slide resumes from its tile store and matches a single-process run. Two slides on two workers, so each
    worker holds one (a worker's death also counts against the slides queued on it)."""
    settings = dict(tile_size_px=64, overlap_px=16, batch_size=4, threads=1, skip_background=False,
                    checkpoint_interval_s=0.0, progress=False)
    names, inputs = SLIDE_NAMES[:2], slides[:2]
    segment_slides(SlideSegmenter(model, **settings), inputs, tmp_path / "single")
    logs, flag, out = tmp_path / "logs", tmp_path / "killed", tmp_path / "dask"
    logs.mkdir()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"allowed_failures": 0}) as cluster, Client(cluster) as client:
        client.register_plugin(FaultPlugin(str(logs), str(flag)), name="faults")
        on_cluster = ClusterSettings(scheduler_address=cluster.scheduler_address)
        first = segment_slides(SlideSegmenter(model, **settings), inputs, out, cluster=on_cluster)
        killed = flag.read_text()
        assert [(s.out_dir.name, s.status) for s in first.slides] == [
            (name, "failed" if name == killed else "done") for name in names]
        error = first.failed[0].error
        assert error.startswith("the Dask worker holding it died 1 time (last: tcp://127.0.0.1:")
        assert error.endswith("see the workers' logs, then run again to resume it")
        rows = {r["slide"]: r for r in csv.DictReader((out / "cohort.csv").open())}
        assert rows[killed]["status"] == "failed" and rows[killed]["error"] == error
        assert not (out / killed / "summary.json").exists() and (out / killed / ".work" / "done.u32").exists()

        again = segment_slides(SlideSegmenter(model, **settings), inputs, out, cluster=on_cluster)
    assert [(s.out_dir.name, s.status) for s in again.slides] == [
        (name, "done" if name == killed else "skipped") for name in names]
    assert again.slides[names.index(killed)].summary["tiles"]["resumed"] >= KILL_AFTER_TILES
    for name in names:
        for output in ("labels.tif", "overlay.png", "annotations.geojson"):
            assert (out / name / output).read_bytes() == (tmp_path / "single" / name / output).read_bytes()
    document = json.loads((out / "batch_summary.json").read_text())
    assert document["counts"] == {"done": 1, "skipped": 1, "failed": 0} and document["failures"] == []
    assert [r["counts"] for r in document["runs"]] == [{"done": 1, "skipped": 0, "failed": 1},
                                                      {"done": 1, "skipped": 1, "failed": 0}]


# ---------------------------------------------------------------- dask stays optional
def test_without_dask_the_cluster_options_name_the_extra_and_write_nothing(model, slides, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    out = tmp_path / "out"
    assert infer_cli.main([str(model), str(slides[0]), "--out", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --workers and --scheduler need dask.distributed")
    assert err.endswith('install it with: pip install "weaksegtf[cluster]"')
    with pytest.raises(ClusterError, match=r'pip install "weaksegtf\[cluster\]"'):
        segment_slides(SlideSegmenter(model, progress=False), slides[:1], out, cluster=ClusterSettings(n_workers=1))
    assert not out.exists()


def test_the_inference_path_imports_dask_only_for_a_cluster_run(model, slides, tmp_path):
    code = (
        "import sys\n"
        "import weaksegtf.cli.infer, weaksegtf.inference, weaksegtf.inference.cluster_run\n"
        "from weaksegtf.inference import SlideSegmenter, segment_slides\n"
        f"segment_slides(SlideSegmenter({str(model)!r}, progress=False), [{str(slides[0])!r}], {str(tmp_path)!r})\n"
        "print(','.join(sorted(m for m in ('dask', 'distributed', 'tensorflow', 'keras') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert (tmp_path / "s0" / "summary.json").is_file()


def test_cluster_options_are_checked_before_any_work(model, slides, tmp_path, capsys):
    argv = [str(model), str(slides[0]), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        infer_cli.main([*argv, "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"])
    assert exit_info.value.code == 2
    assert "argument --scheduler: not allowed with argument --workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        infer_cli.main([*argv, "--workers", "0"])
    assert "--workers must be > 0, got 0" in capsys.readouterr().err
    for bad in (dict(), dict(n_workers=2, scheduler_address="tcp://127.0.0.1:8786"), dict(n_workers=True),
                dict(scheduler_address=" ")):
        with pytest.raises(ConfigError):
            ClusterSettings(**bad)
    # Nothing listens on port 1 of this machine.
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:1 "):
        segment_slides(SlideSegmenter(model, progress=False), slides[:1], tmp_path / "out",
                       cluster=ClusterSettings(scheduler_address="tcp://127.0.0.1:1", connect_timeout_s=1))
    assert not (tmp_path / "out" / "batch_summary.json").exists()


def test_get_config_rebuilds_the_same_segmenter(model):
    segmenter = SlideSegmenter(model, tile_size_px=64, batch_size=2, providers="cpu", threads=1, roi="r/{stem}.png",
                               probabilities=True, progress=False)
    config = segmenter.get_config()
    assert config["model"] == str(model) and config["providers"] == "cpu" and config["threads"] == 1
    assert (config["mpp"], config["tile_size_px"], config["overlap_px"]) == (1.0, 64, 16)
    assert SlideSegmenter(**config).get_config() == config
    assert SlideSegmenter(model).get_config()["providers"] is None  # each worker picks its own
