"""Parity of an exported model with its source: largest output difference and argmax agreement.

Both sides are plain callables from an image batch to named numpy outputs,
so the same report compares onnxruntime with Keras, int8 with fp32, and TF
Serving's signature with Keras. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

Outputs = Mapping[str, np.ndarray]
Runner = Callable[[np.ndarray], Outputs]
#: Output with a ready-made class map (the SavedModel's ``mask``); otherwise argmax of these.
ARGMAX_KEY = "mask_argmax"
_CLASS_SCORE_KEYS = ("mask_logits", "mask_probabilities")


@dataclass(frozen=True)
class ParityCase:
    """One input batch: its shape, the largest plain and scaled difference per output, and argmax agreement."""

    batch_size: int
    height_px: int
    width_px: int
    max_abs_diff: dict[str, float]
    max_scaled_diff: dict[str, float]
    agreement: float
    n_pixels: int


@dataclass(frozen=True)
class ParityReport:
    """Parity of a candidate with a reference over several input batches.

    The check passes when the largest difference of any compared output,
    scaled by ``max(1, |reference value|)`` (``numpy.isclose`` with
    ``atol = rtol = tolerance``: float32 keeps about 7 significant digits, so
    a logit of 300 cannot agree to 1e-4 absolute), stays within
    ``tolerance`` and the pixel-weighted argmax agreement reaches ``min_agreement`` (either check is skipped when ``None``).

    Args:
        what: str. What was compared, such as ``"onnxruntime fp32 vs Keras"``.
        source: str. Where the inputs came from.
        cases: tuple of ParityCase. One per input batch.
        tolerance: float, optional. Largest allowed scaled difference. Defaults to ``None``.
        min_agreement: float, optional. Smallest allowed argmax agreement. Defaults to ``None``.

    Example:
    >>> same = lambda x: {"mask_logits": x}
    >>> report = compare(same, same, [np.zeros((1, 16, 16, 3), "float32")], what="self", tolerance=0.0)
    >>> report.passed, report.max_abs_diff, report.agreement
    (True, 0.0, 1.0)
    """

    what: str
    source: str
    cases: tuple[ParityCase, ...]
    tolerance: float | None = None
    min_agreement: float | None = None

    @property
    def max_abs_diff(self) -> float:
        """Largest absolute difference over every case and compared output (inf for NaN or a shape mismatch)."""
        values = [v for case in self.cases for v in case.max_abs_diff.values()]
        return max(values, default=0.0)

    @property
    def max_scaled_diff(self) -> float:
        """Largest ``|candidate - reference| / max(1, |reference|)`` over every case and compared output."""
        values = [v for case in self.cases for v in case.max_scaled_diff.values()]
        return max(values, default=0.0)

    @property
    def agreement(self) -> float:
        """Fraction of all pixels whose argmax class is the same on both sides."""
        total = sum(case.n_pixels for case in self.cases)
        return sum(case.agreement * case.n_pixels for case in self.cases) / total if total else 1.0

    @property
    def passed(self) -> bool:
        within = self.tolerance is None or self.max_scaled_diff <= self.tolerance
        agrees = self.min_agreement is None or self.agreement >= self.min_agreement
        return within and agrees

    def failure(self) -> str:
        """Why the check failed, in one line ("" when it passed)."""
        reasons = []
        if self.tolerance is not None and not self.max_scaled_diff <= self.tolerance:
            reasons.append(
                f"max |difference| / max(1, |reference|) {self.max_scaled_diff:.3g} is above the tolerance "
                f"{self.tolerance:.3g} (max |difference| {self.max_abs_diff:.3g})"
            )
        if self.min_agreement is not None and self.agreement < self.min_agreement:
            reasons.append(
                f"argmax agreement {self.agreement:.2%} is below the required {self.min_agreement:.2%}"
            )
        return f"{self.what}: " + "; ".join(reasons) if reasons else ""

    def to_dict(self) -> dict:
        return {
            "what": self.what,
            "source": self.source,
            "tolerance": self.tolerance,
            "min_agreement": self.min_agreement,
            "max_abs_diff": self.max_abs_diff,
            "max_scaled_diff": self.max_scaled_diff,
            "agreement": self.agreement,
            "passed": self.passed,
            "cases": [asdict(case) for case in self.cases],
        }

    def format(self) -> str:
        """A small text table, one row per case."""
        names = sorted({k for case in self.cases for k in case.max_abs_diff})
        header = ["batch", "height x width"] + [f"max |d {n}|" for n in names] + ["argmax agreement"]
        rows = [
            [str(c.batch_size), f"{c.height_px} x {c.width_px}"]
            + [f"{c.max_abs_diff.get(n, math.nan):.2e}" for n in names]
            + [f"{c.agreement:.4%}"]
            for c in self.cases
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [f"{self.what} ({self.source})"]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header, *rows]]
        limits = []
        if self.tolerance is not None:
            limits.append(f"max |d| {self.max_abs_diff:.2e}, scaled by max(1, |reference|) {self.max_scaled_diff:.2e} "
                          f"(tolerance {self.tolerance:.0e})")
        if self.min_agreement is not None:
            limits.append(f"agreement {self.agreement:.4%} (minimum {self.min_agreement:.2%})")
        lines.append(f"  {'passed' if self.passed else 'FAILED'}: " + ", ".join(limits or ["no limits"]))
        return "\n".join(lines)


def class_map(outputs: Outputs) -> np.ndarray:
    """``(B, H, W)`` argmax class of a runner's outputs."""
    if ARGMAX_KEY in outputs:
        return np.asarray(outputs[ARGMAX_KEY]).astype(np.int64)
    for key in _CLASS_SCORE_KEYS:
        if key in outputs:
            return np.argmax(np.asarray(outputs[key]), axis=-1)
    raise KeyError(f"outputs {sorted(outputs)} hold no mask; expected one of {[ARGMAX_KEY, *_CLASS_SCORE_KEYS]}")


def _finite_or_inf(value) -> float:
    """A NaN difference counts as the largest possible one."""
    return math.inf if math.isnan(value) else float(value)


def compare(
    candidate: Runner,
    reference: Runner,
    batches: Sequence[np.ndarray],
    *,
    what: str,
    source: str = "",
    tolerance: float | None = None,
    min_agreement: float | None = None,
) -> ParityReport:
    """Run both sides on every batch and collect a :class:`ParityReport`.

    Outputs present on both sides are compared, except the ready-made class
    map; agreement compares the argmax class maps.
    """
    cases = []
    for batch in batches:
        got, want = candidate(batch), reference(batch)
        diffs, scaled = {}, {}
        for name in sorted(set(got) & set(want) - {ARGMAX_KEY}):
            a, b = np.asarray(got[name], np.float64), np.asarray(want[name], np.float64)
            if a.shape != b.shape or not a.size:
                diffs[name] = scaled[name] = math.inf
                continue
            error = np.abs(a - b)
            diffs[name] = _finite_or_inf(np.max(error))
            scaled[name] = _finite_or_inf(np.max(error / np.maximum(1.0, np.abs(b))))
        got_classes, want_classes = class_map(got), class_map(want)
        agreement = float(np.mean(got_classes == want_classes)) if got_classes.shape == want_classes.shape else 0.0
        cases.append(ParityCase(
            batch_size=int(batch.shape[0]), height_px=int(batch.shape[1]), width_px=int(batch.shape[2]),
            max_abs_diff=diffs, max_scaled_diff=scaled, agreement=agreement,
            n_pixels=int(np.prod(want_classes.shape)),
        ))
    return ParityReport(what, source, tuple(cases), tolerance, min_agreement)
