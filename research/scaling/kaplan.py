"""The KM laws of Kaplan et al. (2020): L(N), L(D), L(C_min) and L(N, D).

- L(N) = (N_c/N)^alpha_N (Eq. 1.1), L(D) = (D_c/D)^alpha_D (Eq. 1.2) and
  L(C_min) = (C_c/C_min)^alpha_C (Eq. 1.3) are straight lines in log-log space and are fitted by
  least squares on log L, all bootstrap replicates at once.
- L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5) is fitted in the same way as
  Chinchilla's Approach 3 (Huber loss, delta = 1e-3, on log residuals, L-BFGS-B from a grid of
  initializations, bootstrap over points): Kaplan et al. do not state their objective, and using
  Hoffmann's keeps the two parametric fits comparable.
- N_opt ~ C^(alpha_C / alpha_N) (Sec. 6.1), with the interval of the ratio over replicates.

N is non-embedding parameters by default (Kaplan's choice, Sec. 2.1); counting embeddings
(Pearce & Song 2024, Porian et al. 2024) moves the exponents at small N, which is why the
column is a choice (research.scaling.table.Columns.kaplan_params).

Reliability: on a Chinchilla-like IsoFLOP grid from Kaplan's values with 0.3% noise, alpha_N
and alpha_D land within 0.02 (tests/scaling/test_kaplan.py) and N_c, D_c within ~20%; with 1%
noise the 95% intervals of N_c and D_c span a factor ~3 (they are exponentials of intercepts
divided by small exponents). L(N), L(D) and L(C_min) from a sweep are only Kaplan's laws if the
runs reach convergence (L(N)) or the envelope is made of large models (L(D)): from a small
IsoFLOP sweep they are descriptive fits of the envelope, not Kaplan's asymptotic laws.
"""
import dataclasses
from typing import Dict, Sequence

import numpy as np
import pandas as pd

from research.scaling import laws
from research.scaling import stats
from research.scaling.parametric import check_points
from research.scaling.stats import ScalingFitError


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
  """L(x) = (x_c / x)^alpha: `name` is N, D or C."""
  name: str
  alpha: float
  x_c: float
  boot: np.ndarray       # (n_boot, 2): alpha, x_c
  points: pd.DataFrame   # x, loss the line was fitted to
  level: float = 0.95

  def estimates(self) -> Dict[str, stats.Estimate]:
    return {f'alpha_{self.name}': stats.estimate(self.alpha, self.boot[:, 0], self.level),
            f'{self.name}_c': stats.estimate(self.x_c, self.boot[:, 1], self.level)}

  def loss(self, x):
    return (self.x_c / np.asarray(x, float)) ** self.alpha


def _line_to_law(c0, c1):
  """log L = c0 + c1 log x  ->  alpha = -c1, x_c = exp(c0 / alpha)."""
  alpha = -c1
  with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
    return alpha, np.exp(c0 / alpha)


def _check_line(x, loss, what):
  x, loss = np.asarray(x, float), np.asarray(loss, float)
  for name, v in (('loss', loss), (what, x)):
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
      raise ScalingFitError(f'L({what}): {bad.sum()} non-positive or non-finite {name} values')
  if np.unique(x).size < 3:
    raise ScalingFitError(f'L({what}): {np.unique(x).size} distinct {what} values; needs at least '
                          '3 for a 2-parameter power law')


def fit_power_law(x, loss, name: str, n_bootstrap: int = 1000, seed: int = 0,
                  level: float = 0.95) -> PowerLawFit:
  """L(x) = (x_c/x)^alpha on points, bootstrap over points (Kaplan Eqs. 1.1-1.3)."""
  _check_line(x, loss, name)
  lx, ll = np.log(np.asarray(x, float)), np.log(np.asarray(loss, float))
  alpha, x_c = _line_to_law(*stats.linear_fit(lx, ll, np.ones_like(lx)))
  w = stats.bootstrap_weights(np.random.default_rng(seed), lx.size, n_bootstrap)
  boot = np.stack(_line_to_law(*stats.linear_fit(lx, ll, w)), axis=-1)
  return PowerLawFit(name, float(alpha), float(x_c), boot,
                     pd.DataFrame({'x': np.exp(lx), 'loss': np.exp(ll)}), level)


def fit_envelope_power_law(curves: pd.DataFrame, x: str, name: str, n_bootstrap: int = 1000,
                           n_grid: int = 60, seed: int = 0, level: float = 0.95) -> PowerLawFit:
  """L(C_min) or L(D) on the lower envelope of all training curves (Kaplan Fig. 1 left and
  centre): the envelope is taken on a log grid of column x; bootstrap resamples whole runs."""
  from research.scaling import frontier  # the envelope machinery of Approach 1
  cv = frontier.interpolate_curves(curves, n_grid, x=x)
  n_runs = cv.log_n.size
  if n_runs < 2:
    raise ScalingFitError(f'L({name}) envelope: {n_runs} training curve; needs at least 2')
  _, _, ll, _ = frontier.envelope(cv, np.ones((1, n_runs)))
  fin = np.isfinite(ll[0])
  _check_line(np.exp(cv.log_c[fin]), np.exp(ll[0][fin]), name)
  alpha, x_c = _line_to_law(*stats.linear_fit(cv.log_c, ll[0], fin.astype(float)))
  present = stats.bootstrap_weights(np.random.default_rng(seed), n_runs, n_bootstrap)
  _, _, bll, _ = frontier.envelope(cv, present)
  boot = np.stack(_line_to_law(*stats.linear_fit(cv.log_c, bll, np.isfinite(bll).astype(float))),
                  axis=-1)
  return PowerLawFit(name, float(alpha), float(x_c), boot,
                     pd.DataFrame({'x': np.exp(cv.log_c[fin]), 'loss': np.exp(ll[0][fin])}), level)


@dataclasses.dataclass(frozen=True)
class KaplanNDConfig:
  delta: float = 1e-3
  alpha_n_grid: Sequence[float] = (0.03, 0.1, 0.3)
  alpha_d_grid: Sequence[float] = (0.03, 0.1, 0.3)
  log10_n_c_grid: Sequence[float] = (10.0, 13.0, 16.0)
  log10_d_c_grid: Sequence[float] = (10.0, 13.0, 16.0)
  n_bootstrap: int = 400
  level: float = 0.95
  seed: int = 0


NAMES_ND = ('alpha_N', 'N_c', 'alpha_D', 'D_c')


@dataclasses.dataclass(frozen=True)
class KaplanNDFit:
  law: laws.KaplanLaw
  boot: np.ndarray               # (n_boot, 4): alpha_N, N_c, alpha_D, D_c
  objective: float
  init_spread: Dict[str, float]  # max - min over starts at the best optimum (log10 for N_c, D_c)
  fraction_at_best: float
  n_starts: int
  level: float = 0.95

  def estimates(self) -> Dict[str, stats.Estimate]:
    return {k: stats.estimate(getattr(self.law, k), self.boot[:, i], self.level)
            for i, k in enumerate(NAMES_ND)}


def _objective_nd(log_n, log_d, log_l, w, delta):
  """Mean Huber / delta of log residuals of Eq. 1.5 over theta = (alpha_N, alpha_D, log N_c,
  log D_c), with its analytic gradient."""
  w = w / (w.sum() * delta)

  def fun(theta):
    an, ad, nc, dc = theta
    u, v = an / ad * (nc - log_n), dc - log_d
    m = np.maximum(u, v)
    eu, ev = np.exp(u - m), np.exp(v - m)
    s = m + np.log(eu + ev)
    pu = eu / (eu + ev)
    r = ad * s - log_l
    g = w * np.clip(r, -delta, delta)
    grad = np.array([g @ (pu * (nc - log_n)), g @ (s - pu * u), an * (g @ pu), ad * (g @ (1 - pu))])
    return float(w @ stats.huber(r, delta)), grad
  return fun


_BOUNDS_ND = [(1e-4, 5.0), (1e-4, 5.0), (0.0, 100.0), (0.0, 100.0)]


def _theta_to_row(theta):
  return [theta[0], np.exp(theta[2]), theta[1], np.exp(theta[3])]


def fit_nd(n, d, loss, config: KaplanNDConfig = KaplanNDConfig()) -> KaplanNDFit:
  """L(N, D) of Kaplan Eq. 1.5 with bootstrap intervals."""
  check_points(n, d, loss, 4, 'Kaplan L(N, D)')
  cfg = config
  log_n, log_d, log_l = (np.log(np.asarray(v, float)) for v in (n, d, loss))
  starts = stats.grid(cfg.alpha_n_grid, cfg.alpha_d_grid, np.log(10.0) * np.array(
      cfg.log10_n_c_grid), np.log(10.0) * np.array(cfg.log10_d_c_grid))
  ms = stats.multistart_lbfgs(_objective_nd(log_n, log_d, log_l, np.ones_like(log_n), cfg.delta),
                              starts, _BOUNDS_ND)
  at_best = ms.at_best(1e-6)
  xs = ms.xs[at_best]
  spread = dict(zip(('alpha_N', 'alpha_D', 'log10_N_c', 'log10_D_c'),
                    ((xs.max(0) - xs.min(0)) / np.array([1, 1, np.log(10), np.log(10)])).tolist()))
  w = stats.bootstrap_weights(np.random.default_rng(cfg.seed), log_n.size, cfg.n_bootstrap)
  boot = np.full((cfg.n_bootstrap, 4), np.nan)
  with stats.single_threaded_blas():
    for i, wi in enumerate(w):
      res = stats.lbfgs(_objective_nd(log_n, log_d, log_l, wi, cfg.delta), ms.x, _BOUNDS_ND)
      boot[i] = _theta_to_row(res.x)
  row = _theta_to_row(ms.x)
  law = laws.KaplanLaw(alpha_N=float(row[0]), N_c=float(row[1]), alpha_D=float(row[2]),
                       D_c=float(row[3]))
  return KaplanNDFit(law, boot, ms.fun, spread, float(at_best.mean()), len(starts), cfg.level)


def n_opt_exponent(l_n: PowerLawFit, l_c: PowerLawFit) -> stats.Estimate:
  """N_opt ~ C^(alpha_C / alpha_N) (Kaplan Sec. 6.1); replicates paired by index (independent
  resamples of the two fits, so the interval ignores their correlation)."""
  k = min(len(l_n.boot), len(l_c.boot))
  return stats.estimate(l_c.alpha / l_n.alpha, l_c.boot[:k, 0] / l_n.boot[:k, 0], l_n.level)
