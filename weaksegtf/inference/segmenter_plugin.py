"""``SegmenterPlugin``: one ``SlideSegmenter`` (and onnxruntime session) per Dask worker process, for every slide.

Imports ``distributed``: only :mod:`~weaksegtf.inference.cluster_run` imports
this module, and only once a run asks for a cluster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from weaksegtf.errors import ClusterError
from weaksegtf.inference.batch import run_slide
from weaksegtf.inference.session import forget_session
from weaksegtf.inference.slide_segmenter import SlideResult, SlideSegmenter
from weaksegtf.progress import Progress

#: Longest wait of a task for its worker to open the model (a CUDA session can take tens of seconds).
PLUGIN_SETUP_WAIT_S = 600.0


class SegmenterPlugin(WorkerPlugin):
    """Opens the run's model once in each worker process, when the worker joins, and keeps it for every slide.

    Registered by the client under a name unique to the run, so runs of
    other models or settings on the same cluster never share or replace it;
    removed at the end of the run, which drops the session from the worker
    (unless another run's plugin holds the same one). A worker that joins
    later (a replacement for a lost one, a new SLURM job) sets it up on
    joining. On a GPU machine run one worker process per GPU, each started
    with its own ``CUDA_VISIBLE_DEVICES`` (docs/deployment.md).

    Args:
        config: dict. ``SlideSegmenter(**config)``, from
            :meth:`SlideSegmenter.get_config`.
        name: str. The plugin's name on the workers.

    Example:
    >>> client.register_plugin(SegmenterPlugin(segmenter.get_config(), "weaksegtf-run-1"))  # doctest: +SKIP
    """

    def __init__(self, config: dict[str, Any], name: str) -> None:
        self.config = dict(config)
        self.name = name
        self.segmenter: SlideSegmenter | None = None
        self.error: BaseException | None = None

    def setup(self, worker) -> None:
        try:
            self.segmenter = SlideSegmenter(**self.config)
        except Exception as error:
            self.error = error  # a worker that joins later keeps running; its tasks report this instead
            raise

    def teardown(self, worker) -> None:
        model = self.segmenter.model if self.segmenter is not None else None
        self.segmenter = None
        shared = [p for p in worker.plugins.values() if isinstance(p, SegmenterPlugin) and p is not self
                  and p.segmenter is not None and p.segmenter.model is model]
        if model is not None and not shared:
            forget_session(model)


def segment_on_worker(
    plugin_name: str, path: str, folder: str, slide_mpp: float | None, force: bool
) -> tuple[SlideResult, str]:
    """The Dask task of one slide: :func:`run_slide` with this worker's segmenter; returns the result and the worker.

    A slide that fails is returned as ``"failed"`` (not raised), exactly as in
    a single-process run; an error of the output folder, or a worker that
    could not open the model, is raised and stops the run.
    """
    worker = get_worker()
    # A worker that joins during the run (a replacement, a new job) can receive a task while it is still
    # setting the plugin up, in its event loop: wait for the setup to end.
    deadline = time.monotonic() + PLUGIN_SETUP_WAIT_S
    while True:
        plugin = worker.plugins.get(plugin_name)
        ready = isinstance(plugin, SegmenterPlugin) and (plugin.segmenter is not None or plugin.error is not None)
        if ready or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not isinstance(plugin, SegmenterPlugin):
        raise ClusterError(f"Dask worker {worker.address} has no {plugin_name} plugin after "
                           f"{PLUGIN_SETUP_WAIT_S:g} s; expected the run to have registered it on every worker")
    if plugin.segmenter is None:
        if plugin.error is not None:
            raise plugin.error
        raise ClusterError(f"Dask worker {worker.address} did not open the model within {PLUGIN_SETUP_WAIT_S:g} s; "
                           f"see the worker's log")
    result = run_slide(plugin.segmenter, Path(path), Path(folder), slide_mpp, force, Progress(1, enabled=False))
    return result, worker.address
