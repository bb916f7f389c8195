"""Onset index, BIG-bench scores, Clopper-Pearson and the paired bootstrap."""
import numpy as np
import pytest
from scipy import stats

from research.emergence import sharpness


def test_onset_index_of_reference_curves():
  assert sharpness.onset_index([0, 1, 2, 3, 4]) == pytest.approx(0.5)
  assert sharpness.onset_index([0, 0, 0, 0, 1]) == pytest.approx(0.2)
  assert sharpness.onset_index([0, 1, 1, 1, 1]) == pytest.approx(0.8)
  # sign and scale free: a loss curve and its negation give the same A
  assert sharpness.onset_index([5, 4, 3, 1, 0]) == sharpness.onset_index([-5, -4, -3, -1, 0])
  assert np.isnan(sharpness.onset_index([1, 1, 1]))


def test_bigbench_scores_separate_a_jump_from_a_line():
  line, jump = np.linspace(0, 1, 7), np.array([0, 0, 0, 0.01, 0, 0.02, 1.0])
  assert sharpness.linearity(line) == pytest.approx(6.0)  # I = 1, RMS step = 1/6
  assert sharpness.breakthroughness(line) == pytest.approx(6.0)
  assert sharpness.breakthroughness(jump) > 10 * sharpness.breakthroughness(line)
  assert sharpness.breakthroughness(1 - line) < 0  # declining curves score negative


def test_clopper_pearson_matches_the_beta_quantiles_and_edges():
  low, high = sharpness.clopper_pearson(3, 20)
  assert low == pytest.approx(stats.beta.ppf(0.025, 3, 18))
  assert high == pytest.approx(stats.beta.ppf(0.975, 4, 17))
  low0, high0 = sharpness.clopper_pearson(0, 200)
  assert low0 == 0 and high0 == pytest.approx(1 - 0.025 ** (1 / 200))
  lown, highn = sharpness.clopper_pearson(200, 200)
  assert highn == 1 and lown == pytest.approx(0.025 ** (1 / 200))


def test_clopper_pearson_covers_at_least_nominally():
  rng = np.random.default_rng(0)
  k = rng.binomial(30, 0.1, size=4000)
  low, high = sharpness.clopper_pearson(k, 30)
  assert np.mean((low <= 0.1) & (0.1 <= high)) >= 0.95


def test_bootstrap_interval_of_a_difference_excludes_zero_when_it_should():
  rng = np.random.default_rng(0)
  p = np.linspace(0.3, 0.95, 6)
  tokens = [rng.random((3, 400, 5)) < pk for pk in p]   # [seeds, items, L]
  exact = [t.all(-1).astype(float) for t in tokens]
  partial = [t.mean(-1) for t in tokens]
  diff = sharpness.bootstrap(exact, num_samples=300, paired_with=partial)
  assert diff['estimate'] < 0 and diff['high'] < 0
  same = sharpness.bootstrap(partial, num_samples=300, paired_with=partial)
  assert same['low'] == same['high'] == 0.0
