"""Statistics over the images: a mean with its sample standard deviation and its 95% confidence interval by Student's t.

scipy is not a dependency, so the t quantile is computed here from the exact CDF for integer degrees of freedom.
"""
from __future__ import annotations

import functools
import math

import numpy as np


@functools.cache
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with `df` degrees of freedom, by bisection on its exact CDF for integer
    df (Abramowitz & Stegun 26.7.3-4)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"Need 0.5 < p < 1 and df >= 1, got p={p}, df={df}.")
    target = 2 * p - 1  # P(|T| <= t)
    low, high = 0.0, 1.0
    while _t_central(high, df) < target:
        high *= 2
    for _ in range(64):  # the bracket shrinks to 2^-64 of its width
        middle = (low + high) / 2
        low, high = (middle, high) if _t_central(middle, df) < target else (low, middle)
    return (low + high) / 2


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2/π)(θ + sinθ cosθ (1 + 2/3 c² + 2·4/(3·5) c⁴ + ...)) up to c^(df-3)
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= (2 * k) / (2 * k + 1) * c2
        return 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0))
    total, term = 0.0, 1.0  # even: sinθ (1 + 1/2 c² + 1·3/(2·4) c⁴ + ...) up to c^(df-2)
    for k in range(1, df // 2 + 1):
        total += term
        term *= (2 * k - 1) / (2 * k) * c2
    return math.sin(theta) * total


def mean_and_interval(values) -> dict:
    """Mean, sample standard deviation, and the 95% confidence interval of the mean by Student's t (n - 1 df)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": n}
    std = float(values.std(ddof=1))
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}
