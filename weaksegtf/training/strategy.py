"""The ``tf.distribute`` strategy of a training run, from its name: one device, several GPUs, or several machines.

- ``"none"``: today's path, no strategy (TensorFlow places the model on one device);
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over all the GPUs of this
  machine that ``CUDA_VISIBLE_DEVICES`` leaves visible (the CPU when there is none);
- ``"multiworker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the
  machines listed in the ``TF_CONFIG`` environment variable, every worker
  running the same command.

A ``tf.distribute.Strategy`` object is accepted as well, e.g.
``tf.distribute.MirroredStrategy(["GPU:0", "GPU:2"])`` for given devices. The
names are checked without TensorFlow, so a bad value fails before any data is read.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from weaksegtf.errors import ConfigError

#: Strategy names of ``weakseg-train --strategy`` and ``run_training(strategy=...)``.
STRATEGIES = ("none", "mirrored", "multiworker")

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
)
# One strategy per name and process, which a second training in the same process reuses:
# TensorFlow allows one MultiWorkerMirroredStrategy per process (it sets up the collective
# ops at start-up), and gives every MirroredStrategy the same collective keys, so a second
# one over the same devices would collide with the first one's all-reduces.
_created: dict = {}


def check_strategy(strategy: Any, environ: Mapping[str, str] | None = None) -> str:
    """The name of ``strategy`` after checking it, without TensorFlow; ``"multiworker"`` needs ``TF_CONFIG``.

    Args:
        strategy: str, None or ``tf.distribute.Strategy``. ``None`` means ``"none"``.
        environ: mapping. Where ``TF_CONFIG`` is read. Defaults to ``os.environ``.

    Returns:
        One of :data:`STRATEGIES`, or the class name of a strategy object.

    Example:
    >>> check_strategy("mirrored")
    'mirrored'
    >>> check_strategy("horovod")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: strategy 'horovod' is unknown; expected one of ('none', 'mirrored', 'multiworker') ...
    """
    if strategy is None:
        return "none"
    if not isinstance(strategy, str):
        tf = sys.modules.get("tensorflow")  # a strategy object exists only once TensorFlow is imported
        if tf is not None and isinstance(strategy, tf.distribute.Strategy):
            return type(strategy).__name__
        raise ConfigError(
            f"strategy must be one of {STRATEGIES} or a tf.distribute.Strategy, "
            f"got {strategy!r} ({type(strategy).__name__})"
        )
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is unknown; expected one of {STRATEGIES} or a tf.distribute.Strategy")
    if strategy == "multiworker":
        tf_config_cluster(os.environ if environ is None else environ)
    return strategy


def tf_config_cluster(environ: Mapping[str, str]) -> dict:
    """The parsed ``TF_CONFIG`` of a multi-worker run, checked: a cluster with workers and this task.

    Example:
    >>> text = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'
    >>> tf_config_cluster({"TF_CONFIG": text})["task"]
    {'type': 'worker', 'index': 1}
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        raise ConfigError(
            "strategy 'multiworker' needs the TF_CONFIG environment variable, which lists the cluster's workers "
            f"and this process's place among them, e.g. {_TF_CONFIG_EXAMPLE}; got no TF_CONFIG "
            "(for the GPUs of one machine, use strategy 'mirrored')"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos}): {text[:80]!r}"
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers:
        raise ConfigError(f"TF_CONFIG has no cluster.worker list of 'host:port' addresses; got {text[:120]!r}, "
                          f"expected e.g. {_TF_CONFIG_EXAMPLE}")
    task = config.get("task")
    named = isinstance(task, dict) and task.get("type") in ("worker", "chief") and isinstance(task.get("index"), int)
    if not named:
        raise ConfigError(f"TF_CONFIG has no task {{'type': 'worker', 'index': i}} naming this process; got task "
                          f"{task!r}")
    members = len(cluster.get(task["type"], []))
    if not 0 <= task["index"] < members:
        raise ConfigError(f"TF_CONFIG task index {task['index']} is out of range for {members} {task['type']}(s)")
    return config


def resolve_strategy(strategy: Any):
    """The ``tf.distribute.Strategy`` of a name (or the object itself); ``None`` for ``"none"``.

    Args:
        strategy: str, None or ``tf.distribute.Strategy``. See :data:`STRATEGIES`.

    Returns:
        ``tf.distribute.Strategy`` or ``None``.

    Example:
    >>> resolve_strategy("none") is None
    True
    >>> resolve_strategy("mirrored").num_replicas_in_sync  # doctest: +SKIP
    2
    """
    name = check_strategy(strategy)
    if name == "none":
        return None
    if name not in STRATEGIES:
        return strategy
    import tensorflow as tf

    if name not in _created:
        if name == "mirrored":
            _created[name] = tf.distribute.MirroredStrategy()
        else:
            try:
                _created[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as error:
                raise ConfigError(
                    f"could not start the multi-worker strategy from TF_CONFIG: {error}. It must be created "
                    "before TensorFlow runs anything else in the process (weakseg-train does so)"
                ) from None
    return _created[name]
