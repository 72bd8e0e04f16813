"""The stratified draw of the images that keep their masks: classes in proportion, each at least once.

``weakseg-experiment sweep`` draws s% of its pool this way for every repeat
(:func:`weaksegtf.experiment.draw_masked`), and the GlaS adapter draws its
masked training images (:func:`weaksegtf.data.plan_glas_split`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError

#: How the members of a class are drawn once its quota is known; both are uniform. Two exist so that the
#: draws of earlier sweeps and GlaS splits (and the results in docs/results.md) stay reproducible.
MEMBER_DRAWS = ("permutation", "choice")


def class_quotas(class_sizes: dict[int, int], count: int) -> dict[int, int]:
    """How many of each class a draw of ``count`` takes.

    Largest-remainder allocation in proportion to ``class_sizes``, after one
    per class when ``count`` allows; a class with fewer members than its quota
    passes the rest on to the classes after it, in order.

    Example:
    >>> class_quotas({1: 20, 2: 48}, 17)
    {1: 5, 2: 12}
    """
    classes = sorted(class_sizes)
    total = sum(class_sizes.values())
    quota = {c: 1 if count >= len(classes) else 0 for c in classes}
    remaining = count - sum(quota.values())
    shares = {c: remaining * class_sizes[c] / total for c in classes}
    for c in classes:
        quota[c] += int(math.floor(shares[c]))
    for c in sorted(classes, key=lambda c: (-(shares[c] - math.floor(shares[c])), c)):
        if sum(quota.values()) >= count:
            break
        quota[c] += 1
    spill = sum(max(0, quota[c] - class_sizes[c]) for c in classes)
    for c in classes:
        quota[c] = min(quota[c], class_sizes[c])
    for c in classes:
        extra = min(spill, class_sizes[c] - quota[c])
        quota[c] += extra
        spill -= extra
    return quota


def draw_stratified(
    labels: npt.ArrayLike, count: int, rng: np.random.Generator, member_draw: str = "permutation"
) -> npt.NDArray[np.int64]:
    """Indices of ``count`` units drawn with their labels in proportion (:func:`class_quotas`), sorted.

    Args:
        labels: array of int. One label per unit (image or tile).
        count: int. Units to draw, 0 to ``len(labels)``.
        rng: numpy Generator. Consumed class by class, in label order.
        member_draw: str. ``"permutation"`` takes the first members of a
            random permutation of each class (the sweep's draw);
            ``"choice"`` takes ``rng.choice`` without replacement (the GlaS
            adapter's). Defaults to ``"permutation"``.

    Raises:
        ConfigError: ``count`` out of range, or an unknown ``member_draw``.

    Example:
    >>> draw_stratified([1, 1, 2, 2, 2, 2], 3, np.random.default_rng(0)).tolist()  # doctest: +SKIP
    [0, 3, 5]
    """
    labels = np.asarray(labels)
    if member_draw not in MEMBER_DRAWS:
        raise ConfigError(f"member_draw must be one of {MEMBER_DRAWS}, got {member_draw!r}")
    if not 0 <= count <= len(labels):
        raise ConfigError(f"cannot draw {count} of {len(labels)} units; expected 0 to {len(labels)}")
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes.tolist()}
    quota = class_quotas({c: len(m) for c, m in members.items()}, count)
    drawn = [np.zeros(0, np.int64)]
    for c, indices in members.items():
        if member_draw == "permutation":
            drawn.append(indices[rng.permutation(len(indices))][: quota[c]])
        else:
            drawn.append(indices[rng.choice(len(indices), size=quota[c], replace=False)])
    return np.sort(np.concatenate(drawn)).astype(np.int64)
