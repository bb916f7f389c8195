"""Chinchilla Approach 3: the parametric loss L(N, D) = E + A/N^alpha + B/D^beta.

Hoffmann et al. (2022), Sec. 3.3 and App. D.2, as corrected by Besiroglu et al. (2024),
"Chinchilla Scaling: A replication attempt": minimize, over (a, b, e, alpha, beta),

    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )     (Eq. 3)

with delta = 1e-3 and A = exp(a), B = exp(b), E = exp(e), using L-BFGS from a grid of
initializations and keeping the best optimum. Uncertainty: bootstrap over points (Besiroglu et
al., Sec. 3), each replicate refitted with L-BFGS-B warm-started from the full-data optimum.

Cost: the full 4500-point grid takes ~100 s on a loaded 2-core machine and reaches the same
optimum (alpha to 5e-7) as the default, which screens the grid by its initial objective and runs
L-BFGS-B from the best 128 starts (~2 s); 200 bootstrap refits add ~2.5 s (measured with
synthetic.points_table(CHINCHILLA.loss, 0.003, 0)).

Reliability: with ~90 points on a Chinchilla-like IsoFLOP grid and 0.3% noise, alpha and beta
land within 0.02 and E within 0.05 of the truth (tests/scaling/test_parametric.py). With 1%
noise the point estimates of alpha, beta (and A, B, which trade off with them) move by more
than 0.05 and only the intervals are meaningful; with a few dozen points or a grid that spans
less than a decade of N or D, E and alpha are barely identified (E + A/N^alpha is nearly flat
along a ridge) and the intervals are wide: read them, not the point estimate.
"""
import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np

from research.scaling import laws
from research.scaling import stats
from research.scaling.stats import ScalingFitError

PARAM_NAMES = ('E', 'A', 'B', 'alpha', 'beta')


@dataclasses.dataclass(frozen=True)
class ParametricConfig:
  """How Approach 3 is fitted; the defaults are Hoffmann et al.'s (App. D.2)."""
  delta: float = 1e-3                                  # Huber threshold on log-loss residuals
  alpha_grid: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0)
  beta_grid: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0)
  e_grid: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0)
  a_grid: Sequence[float] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
  b_grid: Sequence[float] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
  # L-BFGS-B runs from the `max_starts` grid points with the lowest initial objective (all
  # 4500 when None). Starts far from the data's scale all slide into the same basin; the
  # spread reported in `init_spread` shows whether that held.
  max_starts: Optional[int] = 128
  n_bootstrap: int = 400
  level: float = 0.95
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class ParametricFit:
  law: laws.ChinchillaLaw          # the point estimate
  boot: np.ndarray                  # (n_boot, 5) bootstrap (E, A, B, alpha, beta); NaN rows failed
  objective: float
  n_points: int
  init_spread: Dict[str, float]    # max - min of each parameter over starts at the best optimum
  fraction_at_best: float           # share of starts that reached the best optimum
  n_starts: int
  level: float

  def estimates(self) -> Dict[str, stats.Estimate]:
    """E, A, B, alpha, beta and the implied a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    point = [getattr(self.law, k) for k in PARAM_NAMES]
    out = {k: stats.estimate(v, self.boot[:, i], self.level)
           for i, (k, v) in enumerate(zip(PARAM_NAMES, point))}
    al, be = self.boot[:, 3], self.boot[:, 4]
    out['a'] = stats.estimate(self.law.a, be / (al + be), self.level)
    out['b'] = stats.estimate(self.law.b, al / (al + be), self.level)
    return out

  def _boot_laws(self):
    return [laws.ChinchillaLaw(*row) for row in self.boot if np.all(np.isfinite(row))]

  def predict(self, n, d) -> stats.Estimate:
    """Expected loss at one (N, D), with the bootstrap interval of the mean (not of a run's
    noise)."""
    return stats.estimate(float(self.law.loss(n, d)),
                          [float(l.loss(n, d)) for l in self._boot_laws()], self.level)

  def optimal(self, c: float, flops_per_param_token: float = 6.0) -> Dict[str, stats.Estimate]:
    """N_opt, D_opt and tokens per parameter D_opt / N_opt at budget C (Eq. 4)."""
    n, d = self.law.optimal(c, flops_per_param_token)
    bl = self._boot_laws()
    bn, bd = (np.array(v) for v in zip(*[l.optimal(c, flops_per_param_token) for l in bl]))
    return {'N_opt': stats.estimate(n, bn, self.level), 'D_opt': stats.estimate(d, bd, self.level),
            'tokens_per_param': stats.estimate(d / n, bd / bn, self.level)}


def _theta_to_law(theta: np.ndarray) -> laws.ChinchillaLaw:
  a, b, e, alpha, beta = theta
  return laws.ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                            alpha=float(alpha), beta=float(beta))


def _lse_terms(theta_sp: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
  """The three exponents of Eq. 3 for S starts at once: (S, 3, n)."""
  a, b, e, alpha, beta = (theta_sp[:, i:i + 1] for i in range(5))
  return np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, a.shape[:1] +
                                                                         log_n.shape)], axis=1)


def make_objective(log_n, log_d, log_l, w, delta):
  """Mean Huber loss of Eq. 3 divided by delta (so it reads as a mean |residual| in the linear
  regime and L-BFGS tolerances are scale-free), with its analytic gradient."""
  w = w / (w.sum() * delta)

  def fun(theta):
    a, b, e, alpha, beta = theta
    t_a, t_b = a - alpha * log_n, b - beta * log_d
    m = np.maximum(np.maximum(t_a, t_b), e)
    ex_a, ex_b, ex_e = np.exp(t_a - m), np.exp(t_b - m), np.exp(e - m)
    s = ex_a + ex_b + ex_e
    r = m + np.log(s) - log_l
    gr = w * np.clip(r, -delta, delta) / s        # d objective / d LSE, over the softmax sum
    ga, gb = gr @ ex_a, gr @ ex_b
    grad = np.array([ga, gb, gr @ ex_e, -(gr * ex_a) @ log_n, -(gr * ex_b) @ log_d])
    return float(w @ stats.huber(r, delta)), grad
  return fun


def _initial_objective(starts, log_n, log_d, log_l, delta):
  t = _lse_terms(starts, log_n, log_d)
  m = t.max(1)
  r = m + np.log(np.exp(t - m[:, None]).sum(1)) - log_l
  return stats.huber(r, delta).mean(1)


_BOUNDS = [(-50.0, 80.0), (-50.0, 80.0), (-50.0, 50.0), (0.0, 10.0), (0.0, 10.0)]


def check_points(n, d, loss, n_params: int, what: str):
  """Raise ScalingFitError unless the points can identify a law with n_params parameters."""
  n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
  if not (n.shape == d.shape == loss.shape) or n.ndim != 1:
    raise ScalingFitError(f'{what}: N, D and loss must be 1-D arrays of one length')
  for name, v in (('loss', loss), ('N', n), ('D', d)):
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
      raise ScalingFitError(f'{what}: {bad.sum()} non-positive or non-finite {name} values '
                            f'(first {v[bad][0]!r}); losses and counts must be > 0')
  if n.size <= n_params:
    raise ScalingFitError(f'{what}: {n.size} points for {n_params} parameters; needs at least '
                          f'{n_params + 1}')
  for name, v in (('model sizes', n), ('token counts', d)):
    k = np.unique(v).size
    if k < 3:
      raise ScalingFitError(f'{what}: {k} distinct {name} ({", ".join(f"{x:.3g}" for x in np.unique(v))}); '
                            f'needs at least 3 to separate the {name.split()[0]} term from E')


def fit(n, d, loss, config: ParametricConfig = ParametricConfig()) -> ParametricFit:
  """Fit L = E + A/N^alpha + B/D^beta (Approach 3) with bootstrap intervals."""
  check_points(n, d, loss, 5, 'Approach 3')
  log_n, log_d, log_l = (np.log(np.asarray(v, float)) for v in (n, d, loss))
  cfg = config
  starts = stats.grid(cfg.a_grid, cfg.b_grid, cfg.e_grid, cfg.alpha_grid, cfg.beta_grid)
  if cfg.max_starts is not None and cfg.max_starts < len(starts):
    init = _initial_objective(starts, log_n, log_d, log_l, cfg.delta)
    starts = starts[np.argsort(init, kind='stable')[:cfg.max_starts]]
  ms = stats.multistart_lbfgs(make_objective(log_n, log_d, log_l, np.ones_like(log_n), cfg.delta),
                              starts, _BOUNDS)
  at_best = ms.at_best(1e-6)
  best_laws = np.array([[getattr(_theta_to_law(x), k) for k in PARAM_NAMES]
                        for x in ms.xs[at_best]])
  spread = dict(zip(PARAM_NAMES, (best_laws.max(0) - best_laws.min(0)).tolist()))
  # Each bootstrap replicate is refitted from the full-data optimum: the grid above showed
  # (init_spread) that the starts reaching the lowest objective agree, so one warm start suffices.
  warm = ms.x[None]
  rng = np.random.default_rng(cfg.seed)
  weights = stats.bootstrap_weights(rng, log_n.size, cfg.n_bootstrap)
  boot = np.full((cfg.n_bootstrap, 5), np.nan)
  with stats.single_threaded_blas():
    for i, w in enumerate(weights):
      res = stats.multistart_lbfgs(make_objective(log_n, log_d, log_l, w, cfg.delta),
                                   warm, _BOUNDS)
      law = _theta_to_law(res.x)
      boot[i] = [getattr(law, k) for k in PARAM_NAMES]
  return ParametricFit(law=_theta_to_law(ms.x), boot=boot, objective=ms.fun, n_points=log_n.size,
                       init_spread=spread, fraction_at_best=float(at_best.mean()),
                       n_starts=len(starts), level=cfg.level)
