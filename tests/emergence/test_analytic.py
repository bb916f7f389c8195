"""Schaeffer et al.'s analytic model, through the probe's own metric and sharpness code.

Synthetic greedy outputs are drawn with per-token success p = exp(-(N/c)^alpha) and scored by
metrics.decode_scores (exact match, Levenshtein): exact match must follow p^L, edit distance
L(1 - p), and the onset index of exact match must be below that of 1 - TED/L every time.
"""
import numpy as np
import pytest

from research.emergence import analytic
from research.emergence import sharpness

SIZES = 10.0 ** np.arange(4.0, 7.01, 0.5)  # half-decades from 1e4, as in the CPU sweep
# p from 0.65 at 1e4 to 0.99 at 1e7. Below p ~ 0.6 Levenshtein distance falls measurably
# under L(1 - p), which counts substitutions only (Hamming): a better alignment with an
# insertion and a deletion beats several substitutions. test_levenshtein_undercuts_... pins it.
LAW = analytic.PowerLaw(c=1.85e3, alpha=-0.5)
REPLICATES, ITEMS = 200, 150


@pytest.mark.parametrize('length', [3, 6])
def test_synthetic_outcomes_follow_the_analytic_model(length):
  rng = np.random.default_rng(1234 + length)
  p = LAW.p_token(SIZES)
  em = np.empty((REPLICATES, len(SIZES)))
  ted = np.empty((REPLICATES, len(SIZES)))
  for r in range(REPLICATES):
    for k, pk in enumerate(p):
      gold, generated = analytic.synthetic_generations(rng, pk, length, ITEMS)
      exact, distance = analytic.score_synthetic(gold, generated)
      em[r, k], ted[r, k] = exact.mean(), distance.mean()
  predicted = analytic.predict(LAW, SIZES, length)
  se_em = em.std(0, ddof=1) / np.sqrt(REPLICATES)
  se_ted = ted.std(0, ddof=1) / np.sqrt(REPLICATES)
  assert np.all(np.abs(em.mean(0) - predicted['exact_match']) <= 3 * se_em + 1e-12)
  assert np.all(np.abs(ted.mean(0) - predicted['ted']) <= 3 * se_ted)
  a_em = np.array([sharpness.onset_index(row) for row in em])
  a_ted = np.array([sharpness.onset_index(1 - row / length) for row in ted])
  assert np.all(a_em < a_ted), (a_em.max(), a_ted.min())


def test_levenshtein_undercuts_the_substitution_count_at_low_p():
  """The caveat of the analytic TED: at p = 0.3, L = 8 the mean edit distance is clearly
  below L(1 - p) (and never above it: Levenshtein <= Hamming)."""
  rng = np.random.default_rng(0)
  gold, generated = analytic.synthetic_generations(rng, 0.3, 8, 3000)
  _, ted = analytic.score_synthetic(gold, generated)
  hamming = (generated[:, :8] != gold).sum(1)
  assert np.all(ted <= hamming)
  assert ted.mean() < 8 * 0.7 - 3 * ted.std() / np.sqrt(ted.size)


def test_fit_recovers_the_power_law():
  fitted = analytic.fit_power_law(SIZES, LAW.loss(SIZES))
  assert fitted.alpha == pytest.approx(LAW.alpha, rel=1e-9)
  assert fitted.c == pytest.approx(LAW.c, rel=1e-6)
  noisy = LAW.loss(SIZES) * np.exp(np.random.default_rng(0).normal(0, 0.01, SIZES.size))
  assert analytic.fit_power_law(SIZES, noisy).alpha == pytest.approx(LAW.alpha, abs=0.02)


def test_fit_refuses_a_single_size():
  with pytest.raises(ValueError, match='two distinct'):
    analytic.fit_power_law([1e4, 1e4], [1.0, 0.9])
