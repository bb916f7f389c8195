"""How sharp is a metric's curve over model size: onset index, BIG-bench scores, intervals.

Curves are y_0..y_K over the size grid sorted by parameter count.

Onset index (this project's, the one tests assert on):
    A = mean_k (y_k - y_0) / (y_K - y_0),  k = 0..K
  The normalized area under the curve: 0.5 for a straight line in the grid index, low for
  "flat, then rising at the end" (what an emergent-looking curve does), high for early
  saturation. A is unchanged by y -> -y, so losses and distances need no flipping.

BIG-bench (Srivastava et al. 2022, "Beyond the Imitation Game", arXiv:2206.04615, App. B),
reported for comparison with the literature, with
    I(y) = sign(argmax_i y_i - argmin_i y_i) * (max y - min y):
  breakthroughness B = I(y) / RootMedianSquare({y_{i+1} - y_i})   (the "emergence score")
  linearity        L = I(y) / RootMeanSquare({y_{i+1} - y_i})
  B is large when the change happens in a few steps (the median step is small); both are
  sensitive to the size window and to eval-set noise, so no test asserts on them.
  Note: the breakthroughness formula is checked against a public re-implementation; the
  linearity formula is written from the paper's appendix as we read it; verify before citing.

Intervals: Clopper-Pearson (exact binomial) for proportions, and a paired bootstrap over eval
items (the eval set is shared by every model) and over seeds (resampled within each size).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats


def onset_index(y: Sequence[float]) -> float:
  y = np.asarray(y, np.float64)
  span = y[-1] - y[0]
  if y.size < 2 or span == 0 or not np.isfinite(span):
    return float('nan')
  return float(np.mean((y - y[0]) / span))


def _signed_range(y: np.ndarray) -> float:
  return float(np.sign(np.argmax(y) - np.argmin(y)) * (y.max() - y.min()))


def breakthroughness(y: Sequence[float]) -> float:
  y = np.asarray(y, np.float64)
  signed, rms = _signed_range(y), np.sqrt(np.median(np.diff(y) ** 2))
  if rms == 0:  # most steps flat: a pure jump; BIG-bench clips, we report +-inf
    return float(np.sign(signed) * np.inf) if signed else float('nan')
  return float(signed / rms)


def linearity(y: Sequence[float]) -> float:
  y = np.asarray(y, np.float64)
  rms = np.sqrt(np.mean(np.diff(y) ** 2))
  return float(_signed_range(y) / rms) if rms > 0 else float('nan')


def clopper_pearson(successes, trials, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
  """Exact (1 - alpha) binomial interval; (0, upper) at k = 0 and (lower, 1) at k = n."""
  k = np.asarray(successes, np.float64)
  n = np.asarray(trials, np.float64)
  with np.errstate(invalid='ignore', divide='ignore'):
    lower = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
    upper = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
  return lower, upper


def curve(values_per_size: Sequence[np.ndarray]) -> np.ndarray:
  """Mean over seeds and items of each size's [seeds, items] array (NaN-free inputs)."""
  return np.array([np.mean(v) for v in values_per_size])


def bootstrap(values_per_size: Sequence[np.ndarray], statistic: Callable = onset_index,
              num_samples: int = 1000, seed: int = 0, alpha: float = 0.05,
              paired_with: Sequence[np.ndarray] | None = None) -> dict:
  """Point estimate and percentile interval of statistic(curve) under resampling.

  values_per_size: one [seeds, items] array per size (sorted by size); the same item
  columns in every array (the shared eval set). Each replicate draws items once (shared by
  all sizes) and seeds independently per size. With `paired_with` (another metric's arrays
  on the same items and seeds), the statistic is of the difference
  statistic(curve(values)) - statistic(curve(paired_with)), on the same draws.
  """
  rng = np.random.default_rng(seed)
  n_items = values_per_size[0].shape[1]

  def stat(arrays, other, item_idx, seed_idx):
    y = [a[s][:, item_idx].mean() for a, s in zip(arrays, seed_idx)]
    value = statistic(y)
    if other is not None:
      value -= statistic([a[s][:, item_idx].mean() for a, s in zip(other, seed_idx)])
    return value

  identity = ([np.arange(a.shape[0]) for a in values_per_size], np.arange(n_items))
  point = stat(values_per_size, paired_with, identity[1], identity[0])
  draws = np.empty(num_samples)
  for b in range(num_samples):
    items = rng.integers(0, n_items, n_items)
    seeds = [rng.integers(0, a.shape[0], a.shape[0]) for a in values_per_size]
    draws[b] = stat(values_per_size, paired_with, items, seeds)
  finite = draws[np.isfinite(draws)]
  low, high = (np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if finite.size
               else (np.nan, np.nan))
  return {'estimate': point, 'low': float(low), 'high': float(high),
          'finite_fraction': finite.size / num_samples}


def summarize(y: Sequence[float]) -> dict[str, float]:
  """Every sharpness score of one curve."""
  return {'onset_index': onset_index(y), 'breakthroughness': breakthroughness(y),
          'linearity': linearity(y)}
