"""Where a batch run sends its slides: a local Dask cluster it starts, or an existing scheduler (no dask import)."""

from __future__ import annotations

from dataclasses import dataclass

from weaksegtf.errors import ConfigError

#: What ``pip`` needs for ``--workers`` and ``--scheduler``.
CLUSTER_EXTRA = "weaksegtf[cluster]"
#: Dask's own default for ``distributed.scheduler.allowed-failures``.
DEFAULT_WORKER_LOSSES = 3


@dataclass(frozen=True)
class ClusterSettings:
    """How :func:`~weaksegtf.inference.segment_slides` spreads slides over Dask workers, one task per slide.

    Give exactly one of ``n_workers`` (a ``dask.distributed.LocalCluster`` of
    that many worker processes, one thread each, started and stopped by the
    run) and ``scheduler_address`` (a running cluster; every worker must
    have weaksegtf installed and see the slides, the model and the output
    folder at the same paths as the client).

    Args:
        scheduler_address: str, optional. Address of a running Dask scheduler,
            such as ``"tcp://10.0.0.5:8786"``. Defaults to ``None``.
        n_workers: int, optional. Worker processes of a local cluster.
            Defaults to ``None``.
        worker_losses: int. Times a slide may lose its worker (killed, out of
            memory, node gone) and be started again on another one, resuming
            from its tile store, before it is recorded as failed; it is the
            local scheduler's ``allowed_failures``. An existing scheduler uses
            its own ``distributed.scheduler.allowed-failures`` setting instead.
            Defaults to 3.
        connect_timeout_s: float. Seconds to wait for the scheduler to answer.
            Defaults to 30.

    Example:
    >>> segment_slides(segmenter, ["slides/"], "out", cluster=ClusterSettings(n_workers=4))  # doctest: +SKIP
    >>> segment_slides(segmenter, ["slides/"], "out",
    ...                cluster=ClusterSettings(scheduler_address="tcp://10.0.0.5:8786"))  # doctest: +SKIP
    """

    scheduler_address: str | None = None
    n_workers: int | None = None
    worker_losses: int = DEFAULT_WORKER_LOSSES
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if (self.scheduler_address is None) == (self.n_workers is None):
            raise ConfigError(f"give either a scheduler address (--scheduler) or a number of local workers "
                              f"(--workers), got scheduler_address={self.scheduler_address!r} and "
                              f"n_workers={self.n_workers!r}")
        if self.scheduler_address is not None and not (
                isinstance(self.scheduler_address, str) and self.scheduler_address.strip()):
            raise ConfigError(f"scheduler_address (--scheduler) must be an address such as tcp://HOST:8786, "
                              f"got {self.scheduler_address!r}")
        if self.n_workers is not None and not (
                isinstance(self.n_workers, int) and not isinstance(self.n_workers, bool) and self.n_workers > 0):
            raise ConfigError(f"n_workers (--workers) must be a positive whole number, got {self.n_workers!r}")
        if not (isinstance(self.worker_losses, int) and self.worker_losses >= 0):
            raise ConfigError(f"worker_losses must be a whole number >= 0, got {self.worker_losses!r}")
        if not (isinstance(self.connect_timeout_s, (int, float)) and self.connect_timeout_s > 0):
            raise ConfigError(f"connect_timeout_s must be a positive number of seconds, got {self.connect_timeout_s!r}")

    @property
    def where(self) -> str:
        """Words for messages: ``"a local cluster of 4 workers"`` or ``"the scheduler at tcp://..."``."""
        if self.n_workers is not None:
            return f"a local Dask cluster of {self.n_workers} worker{'s' if self.n_workers != 1 else ''}"
        return f"the Dask scheduler at {self.scheduler_address}"
