"""Small, dependency-free statistics for honest comparisons: intervals and paired tests.

- :func:`wilson_interval`: a 95% (or other) interval for an accuracy measured on ``n``
  test images (Wilson score interval: good coverage even near 0 or 1, unlike
  ``p +- 1.96 sqrt(p(1-p)/n)``).
- :func:`mcnemar_test`: are two classifiers' accuracies on the SAME test images
  different? The exact (binomial) McNemar test on the images exactly one of them gets
  right.
- :func:`paired_interval`: the mean difference of two settings over the seeds both ran,
  with its 95% Student-t interval (:func:`t_quantile`), as ``senet ablate`` reports it.

NumPy and the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from senet.checks import check_number

__all__ = [
    "NOISE_ALPHA",
    "mcnemar_test",
    "mean_std",
    "paired_interval",
    "t_quantile",
    "wilson_interval",
]

#: Significance level below which a paired difference is called more than noise.
NOISE_ALPHA = 0.05


def _normal_quantile(probability: float) -> float:
    """The standard normal quantile, by bisection on ``math.erf`` (plenty for 4 digits)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    Example:
        >>> [round(v, 4) for v in wilson_interval(90, 100)]
        [0.8256, 0.9448]
    """
    n = check_number("n", n, integer=True, minimum=1)
    successes = check_number("successes", successes, integer=True, minimum=0, maximum=n)
    check_number("confidence", confidence, minimum=0, maximum=1, open_minimum=True)
    z = _normal_quantile(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0 or n successes the bound is exactly 0 or 1 (round-off would leave 1e-17)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mcnemar_test(correct_a, correct_b) -> dict:
    """Exact McNemar test of two classifiers on the same images.

    Only the discordant images count: ``only_a`` (A right, B wrong) and ``only_b``. Under
    "both are equally accurate" each discordant image is a fair coin, so the two-sided
    p-value is ``min(1, 2 * P(Binomial(only_a + only_b, 1/2) <= min(only_a, only_b)))``.

    Args:
        correct_a: Booleans, one per test image: classifier A is right.
        correct_b: The same for classifier B (same images, same order).

    Returns:
        ``{"n", "both", "only_a", "only_b", "neither", "p_value"}``.

    Example:
        >>> mcnemar_test([1, 1, 1, 0, 1], [1, 0, 0, 0, 1])["p_value"]
        0.5
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"`correct_b` must have the shape of `correct_a` {a.shape}, got {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    tail = sum(math.comb(discordant, k) for k in range(min(only_a, only_b) + 1))
    p_value = min(1.0, 2 * tail / 2.0**discordant) if discordant else 1.0
    return {
        "n": int(a.size),
        "both": int(np.sum(a & b)),
        "only_a": only_a,
        "only_b": only_b,
        "neither": int(np.sum(~a & ~b)),
        "p_value": float(p_value),
    }


# a two-sided 95% interval: t(0.975, df) for df = 1..30
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """``t(0.975, df)``, the factor of a two-sided 95% Student-t interval.

    Exact to 4 decimals for ``df <= 30`` (a table); above, the Cornish-Fisher expansion
    around the normal quantile (error below 1e-4).

    >>> t_quantile(1)
    12.7062
    """
    df = check_number("df", df, integer=True, minimum=1)
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``n - 1``); the std is None for one value."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_interval(
    values: dict[int, float], reference: dict[int, float]
) -> tuple[float | None, float | None, float | None, int]:
    """Mean difference ``values - reference`` over the seeds both have, with its 95% interval.

    Args:
        values: ``{seed: value}`` of the cell.
        reference: ``{seed: value}`` of the baseline.

    Returns:
        ``(mean, low, high, n)``; ``low`` and ``high`` are None when ``n < 2``, all three
        when ``n == 0``.

    >>> round(paired_interval({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.7})[0], 6)
    0.15
    """
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        return None, None, None, 0
    differences = [values[s] - reference[s] for s in seeds]
    mean, sd = mean_std(differences)
    if sd is None:
        return mean, None, None, 1
    half = t_quantile(len(seeds) - 1) * sd / math.sqrt(len(seeds))
    return mean, mean - half, mean + half, len(seeds)
