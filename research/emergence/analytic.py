"""The analytic model of Schaeffer, Miranda & Koyejo (NeurIPS 2023), Sec. 2.

Per-token cross-entropy falls as a power law in parameters N,
    loss(N) = (N / c)^alpha        (alpha < 0),
so the probability of the correct token is p(N) = exp(-loss(N)), and for an answer of L tokens
with independent per-token errors
    exact match      E[EM]  = p^L                (nonlinear in p: looks "emergent")
    token edit dist. E[TED] = L (1 - p)          (linear in p: smooth)
(TED counts substitutions here, the only errors of fixed-length generation.)

`fit_power_law` fits (c, alpha) to observed mean per-token losses; `predict` draws the model
over observed curves; `synthetic_generations` turns per-token success probabilities into
greedy outputs that the real metric code (metrics.decode_scores) can score.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from research.emergence import metrics


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  c: float
  alpha: float  # negative: loss falls with N

  def loss(self, n_params):
    return (np.asarray(n_params, np.float64) / self.c) ** self.alpha

  def p_token(self, n_params):
    return np.exp(-self.loss(n_params))


def fit_power_law(n_params, per_token_loss) -> PowerLaw:
  """Least squares of log loss = alpha log N - alpha log c (Schaeffer et al.'s Eq. 1)."""
  x = np.log(np.asarray(n_params, np.float64))
  y = np.log(np.asarray(per_token_loss, np.float64))
  if x.size < 2 or np.ptp(x) == 0:
    raise ValueError('fitting (N/c)^alpha needs at least two distinct model sizes')
  alpha, intercept = np.polyfit(x, y, 1)
  return PowerLaw(c=float(np.exp(-intercept / alpha)) if alpha else float('inf'),
                  alpha=float(alpha))


def predict(law: PowerLaw, n_params, length: int) -> dict[str, np.ndarray]:
  p = law.p_token(n_params)
  return {'per_token_loss': law.loss(n_params), 'p_token': p, 'exact_match': p ** length,
          'ted': length * (1.0 - p), 'one_minus_ted_over_L': p}


def synthetic_generations(rng: np.random.Generator, p: float, length: int, n_items: int
                          ) -> tuple[np.ndarray, np.ndarray]:
  """(gold [n, L], generated [n, L + 1]): each digit right with probability p, else one of
  the 9 other digits; the terminator always follows (errors are substitutions only)."""
  from research.data import arithmetic  # pylint: disable=g-import-not-at-top
  digits = arithmetic.DIGIT_IDS
  gold = rng.integers(0, 10, (n_items, length))
  wrong = (gold + rng.integers(1, 10, (n_items, length))) % 10
  right = rng.random((n_items, length)) < p
  generated = np.where(right, gold, wrong)
  term = np.full((n_items, 1), arithmetic.TERMINATOR_ID)
  return digits[gold], np.concatenate([digits[generated], term], 1)


def score_synthetic(gold, generated) -> tuple[np.ndarray, np.ndarray]:
  """Per-item (exact_match, ted) through the probe's own metric code."""
  from research.data import arithmetic  # pylint: disable=g-import-not-at-top
  scores = [metrics.decode_scores(g, a, arithmetic.TERMINATOR_ID)
            for g, a in zip(generated, gold)]
  exact, ted = (np.array(x, np.float64) for x in zip(*scores))
  return exact, ted
