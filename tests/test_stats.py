"""Wilson intervals and the exact McNemar test against hand computations."""

import math

import pytest

from senet.stats import mcnemar_test, wilson_interval


def _wilson(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(90, 100), (0, 10), (10, 10), (431, 500), (1, 3)])
def test_wilson_interval_against_the_formula(k, n):
    low, high = wilson_interval(k, n)
    expected = _wilson(k, n)
    assert low == pytest.approx(max(0.0, expected[0]), abs=1e-9)
    assert high == pytest.approx(min(1.0, expected[1]), abs=1e-9)
    assert low <= k / n <= high


def test_wilson_interval_published_values():
    # Newcombe (1998), table I: 81/263 -> 0.2553-0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    with pytest.raises(ValueError, match="`successes` must be"):
        wilson_interval(11, 10)


def test_mcnemar_exact_against_binomial_tail():
    # A right and B wrong on 8 images, B right and A wrong on 2, both right on 5.
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 3
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 3
    result = mcnemar_test(a, b)
    assert (result["only_a"], result["only_b"], result["both"], result["neither"]) == (8, 2, 5, 3)
    assert result["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 2**10)
    assert mcnemar_test(b, a)["p_value"] == result["p_value"]
    assert mcnemar_test([1, 0], [1, 0])["p_value"] == 1.0  # no discordant pair
    assert mcnemar_test([1, 0, 1], [0, 1, 1])["p_value"] == 1.0  # 1 vs 1: capped at 1
    with pytest.raises(ValueError, match="`correct_b` must have"):
        mcnemar_test([1, 0], [1])
