"""Chinchilla Approaches 1 and 2: the compute-optimal N_opt(C), D_opt(C) as power laws.

Hoffmann et al. (2022):
- Approach 1 (Sec. 3.1): for each FLOP budget C on a fine log grid, the lowest loss over all
  training curves (the envelope of Fig. 2) and the model size and tokens that reached it; then
  N_opt ~ C^a and D_opt ~ C^b fitted in log-log space.
- Approach 2 (Sec. 3.2): for each IsoFLOP budget, a parabola of the final loss in log N; its
  minimum gives N_opt(C), D_opt(C) (Fig. 3); then the same power laws.

Intervals: Approach 1 resamples whole training curves (runs) with replacement, Approach 2
resamples runs within each budget; every replicate's envelope, parabolas and power laws are
solved as one batch (no per-replicate Python loop over points).

Reliability: an envelope point whose best run is the smallest or largest model covering that
compute is censored (the optimum may lie outside the sizes tried) and dropped; a budget whose
parabola has no minimum (curvature <= 0), or whose lowest loss is at the smallest or largest
size (no interior minimum), is left out and named with the reason in FrontierFit.excluded. With fewer than ~4 usable budgets or
sizes spanning less than ~1 decade per budget, a and b are unreliable to more than +-0.05: read
the intervals. On a Chinchilla-like grid (9 budgets x 10 sizes, 0.3% noise) both approaches
recover a and b within 0.03 (tests/scaling/test_frontier.py).
"""
import dataclasses
from typing import Dict, Optional

import numpy as np
import pandas as pd

from research.scaling import stats
from research.scaling.stats import ScalingFitError


@dataclasses.dataclass(frozen=True)
class FrontierFit:
  """N_opt = exp(k_n) C^a and D_opt = exp(k_d) C^b, with bootstrap replicates."""
  approach: str
  a: float
  b: float
  log_k_n: float
  log_k_d: float
  boot: np.ndarray          # (n_boot, 4): a, b, log_k_n, log_k_d
  points: pd.DataFrame      # c, n_opt, d_opt (and loss) the power laws were fitted to
  notes: tuple
  level: float = 0.95
  excluded: Dict[float, str] = dataclasses.field(default_factory=dict)  # budget -> why left out

  def estimates(self) -> Dict[str, stats.Estimate]:
    return {'a': stats.estimate(self.a, self.boot[:, 0], self.level),
            'b': stats.estimate(self.b, self.boot[:, 1], self.level)}

  def optimal(self, c: float) -> Dict[str, stats.Estimate]:
    """N_opt, D_opt and tokens per parameter at budget c, from the two power laws."""
    lc = np.log(c)
    n = np.exp(self.log_k_n + self.a * lc)
    d = np.exp(self.log_k_d + self.b * lc)
    bn = np.exp(self.boot[:, 2] + self.boot[:, 0] * lc)
    bd = np.exp(self.boot[:, 3] + self.boot[:, 1] * lc)
    return {'N_opt': stats.estimate(n, bn, self.level), 'D_opt': stats.estimate(d, bd, self.level),
            'tokens_per_param': stats.estimate(d / n, bd / bn, self.level)}


def _power_laws(log_c, log_n, log_d, w):
  """a, b, log k_n, log k_d for the point estimate (w 1-D) or each replicate (w 2-D)."""
  kn, a = stats.linear_fit(log_c, log_n, w)
  kd, b = stats.linear_fit(log_c, log_d, w)
  return np.stack([a, b, kn, kd], axis=-1)


def _check_powerlaw_points(n_points: int, what: str):
  if n_points < 3:
    raise ScalingFitError(f'{what}: {n_points} usable compute budgets; needs at least 3 to fit '
                          'N_opt ~ C^a and D_opt ~ C^b')


@dataclasses.dataclass(frozen=True)
class _Curves:
  """Training curves interpolated onto one log-compute grid: (R runs, G grid points)."""
  log_c: np.ndarray      # (G,)
  log_loss: np.ndarray   # (R, G), +inf where a run does not reach that compute
  log_d: np.ndarray      # (R, G)
  log_n: np.ndarray      # (R,)


def interpolate_curves(curves: pd.DataFrame, n_grid: int, x: str = 'c') -> _Curves:
  """Each run's log loss (and log D) on one log grid of column x (compute, or tokens for KM)."""
  runs = [g.sort_values(x) for _, g in curves.groupby('run_id', sort=True)]
  lo = min(np.log(g[x].iloc[0]) for g in runs)
  hi = max(np.log(g[x].iloc[-1]) for g in runs)
  log_c = np.linspace(lo, hi, n_grid)
  log_loss = np.full((len(runs), n_grid), np.inf)
  log_d = np.full((len(runs), n_grid), np.nan)
  for i, g in enumerate(runs):
    lc = np.log(g[x].to_numpy())
    inside = (log_c >= lc[0]) & (log_c <= lc[-1])
    # Loss is interpolated linearly in log-log between evaluations (curves are near power laws).
    log_loss[i, inside] = np.interp(log_c[inside], lc, np.log(g.loss.to_numpy()))
    log_d[i, inside] = np.interp(log_c[inside], lc, np.log(g.d.to_numpy()))
  return _Curves(log_c, log_loss, log_d, np.log(np.array([g.n.iloc[0] for g in runs])))


def envelope(cv: _Curves, present: np.ndarray):
  """Per replicate (present: (B, R) run counts), the best run at each grid compute and whether
  that point is usable (an interior size among the runs covering it). Returns (B, G) arrays."""
  covers = np.isfinite(cv.log_loss)[None] & (present[:, :, None] > 0)      # (B, R, G)
  loss = np.where(covers, cv.log_loss[None], np.inf)
  best = np.argmin(loss, axis=1)                                            # (B, G)
  best_log_n = cv.log_n[best]
  n_b = np.broadcast_to(cv.log_n[None, :, None], covers.shape)
  smallest = np.where(covers, n_b, np.inf).min(1)
  largest = np.where(covers, n_b, -np.inf).max(1)
  ok = (best_log_n > smallest) & (best_log_n < largest)
  best_log_d = np.take_along_axis(cv.log_d, best, axis=0) if best.ndim == 1 else \
      cv.log_d[best, np.arange(cv.log_c.size)[None]]
  best_log_loss = np.take_along_axis(loss, best[:, None], axis=1)[:, 0]
  return best_log_n, best_log_d, best_log_loss, ok


def approach1(curves: pd.DataFrame, n_bootstrap: int = 1000, n_grid: int = 300, seed: int = 0,
              level: float = 0.95) -> FrontierFit:
  """Approach 1 on training curves with columns run_id, n, d, c, loss (one row per eval)."""
  if curves['run_id'].nunique() < 3 or curves['n'].nunique() < 3:
    raise ScalingFitError(f'Approach 1: {curves["n"].nunique()} model sizes in '
                          f'{curves["run_id"].nunique()} runs; needs training curves of at least '
                          '3 sizes')
  cv = interpolate_curves(curves, n_grid)
  n_runs = cv.log_n.size
  ln, ld, ll, ok = envelope(cv, np.ones((1, n_runs)))
  _check_powerlaw_points(int(ok.sum()), 'Approach 1 (envelope points with an interior best size)')
  point = _power_laws(cv.log_c, ln[0], ld[0], ok[0].astype(float))
  rng = np.random.default_rng(seed)
  present = stats.bootstrap_weights(rng, n_runs, n_bootstrap)
  boot = np.zeros((0, 4))
  for chunk in np.array_split(present, max(1, n_bootstrap // 100)):   # bounds memory (B, R, G)
    if chunk.size:
      bn, bd, _, bok = envelope(cv, chunk)
      boot = np.concatenate([boot, _power_laws(cv.log_c, bn, bd, bok.astype(float))])
  pts = pd.DataFrame({'c': np.exp(cv.log_c), 'n_opt': np.exp(ln[0]), 'd_opt': np.exp(ld[0]),
                      'loss': np.exp(ll[0])})[ok[0]]
  notes = (f'{int((~ok[0]).sum())} of {n_grid} envelope points dropped: best size at the edge of '
           'the sizes covering that compute',)
  return FrontierFit('approach1', *point, boot=boot, points=pts.reset_index(drop=True),
                     notes=notes, level=level)


def isoflop_parabolas(finals: pd.DataFrame, w: Optional[np.ndarray] = None) -> pd.DataFrame:
  """Per budget: the parabola L = c0 + c1 x + c2 x^2 in x = log N (Hoffmann et al. 2022,
  Sec. 3.2) and its minimum; log D at the minimum from a line through the budget's (log N,
  log D). Budgets with fewer than 3 sizes or no minimum have NaN n_opt. `edge` says whether
  the lowest final loss of the budget is at its smallest or largest size ('' if neither)."""
  rows = []
  for budget, g in finals.groupby('budget', sort=True):
    x, ld = np.log(g.n.to_numpy()), np.log(g.d.to_numpy())
    ww = np.ones((1, len(g))) if w is None else w[:, g.index.to_numpy()]
    coef = stats.parabola_fit(x, g.loss.to_numpy(), ww)[0] if g.n.nunique() >= 3 else \
        np.full(3, np.nan)
    x_min = -coef[1] / (2 * coef[2]) if coef[2] > 0 else np.nan
    k, s = stats.linear_fit(x, ld, np.ones_like(x))
    x_best = x[np.argmin(g.loss.to_numpy())]
    edge = 'smallest' if x_best == x.min() else 'largest' if x_best == x.max() else ''
    rows.append({'budget': budget, 'c0': coef[0], 'c1': coef[1], 'c2': coef[2],
                 'n_opt': np.exp(x_min), 'd_opt': np.exp(k + s * x_min),
                 'loss': coef[0] + coef[1] * x_min + coef[2] * x_min ** 2 if np.isfinite(x_min)
                 else np.nan,
                 'inside': bool(x.min() <= x_min <= x.max()) if np.isfinite(x_min) else False,
                 'edge': edge, 'n_sizes': g.n.nunique(),
                 'n_min': float(np.exp(x.min())), 'n_max': float(np.exp(x.max()))})
  return pd.DataFrame(rows)


def budget_exclusions(prof: pd.DataFrame, exclude_edge: bool = True) -> Dict[float, str]:
  """Budgets of an isoflop_parabolas table that Approach 2 leaves out, each with the reason.

  With exclude_edge, a budget whose lowest loss is at the smallest or largest size tried, or
  whose parabola's minimum lies outside the sizes, has no interior minimum: its N_opt would be
  an extrapolation of the parabola, so it is named here rather than fitted."""
  out = {}
  for r in prof.itertuples():
    if r.n_sizes < 3:
      out[float(r.budget)] = f'{r.n_sizes} model sizes; a parabola needs at least 3'
    elif not np.isfinite(r.n_opt):
      out[float(r.budget)] = 'no minimum: the IsoFLOP parabola is not convex (curvature <= 0)'
    elif exclude_edge and r.edge:
      out[float(r.budget)] = (f'no interior minimum: the lowest loss is at the {r.edge} size '
                              f'tried (N = {r.n_min if r.edge == "smallest" else r.n_max:.3g}), '
                              f'so N_opt lies {"below" if r.edge == "smallest" else "above"} '
                              f'the sizes {r.n_min:.3g} to {r.n_max:.3g}')
    elif exclude_edge and not r.inside:
      out[float(r.budget)] = (f'no interior minimum: the parabola\'s minimum N = {r.n_opt:.3g} '
                              f'is outside the sizes tried ({r.n_min:.3g} to {r.n_max:.3g})')
  return out


def _log_c_at(finals: pd.DataFrame, budgets: np.ndarray, log_n: np.ndarray,
              per_run_c: bool) -> np.ndarray:
  """log C at log N = log_n[:, j] for budget j: log(budget), or with per_run_c the line
  through that budget's runs' (log N, log C)."""
  if not per_run_c:
    return np.broadcast_to(np.log(budgets.astype(float)), log_n.shape)
  out = np.empty_like(log_n)
  for j, c in enumerate(budgets):
    g = finals[finals.budget == c]
    x = np.log(g.n.to_numpy())
    k, s = stats.linear_fit(x, np.log(g.c.to_numpy()), np.ones_like(x))
    out[:, j] = k + s * log_n[:, j]
  return out


def approach2(finals: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0,
              level: float = 0.95, exclude_edge: bool = True) -> FrontierFit:
  """Approach 2 on final points with columns n, d, loss, budget (one row per run), and
  optionally c: each run's compute in another convention than the budget's (see _log_c_at).

  Budgets without a usable minimum are left out and named in the fit's `excluded` (see
  budget_exclusions); exclude_edge=False keeps those whose minimum is extrapolated."""
  finals = finals.reset_index(drop=True)
  if finals['n'].nunique() < 3:
    raise ScalingFitError(f'Approach 2: {finals["n"].nunique()} distinct model sizes; needs at '
                          'least 3 per IsoFLOP budget')
  prof = isoflop_parabolas(finals)
  excluded = budget_exclusions(prof, exclude_edge)
  usable = prof[~prof.budget.astype(float).isin(list(excluded))]
  _check_powerlaw_points(len(usable), 'Approach 2 (budgets with >= 3 sizes and an interior '
                         'minimum' + (', left out: ' + ', '.join(f'{c:.3g}' for c in excluded)
                                      if excluded else '') + ')')
  # C of each budget: the budget itself, unless the table counts compute per run in another
  # convention (a column c that varies within a budget, e.g. Kaplan's 6 N_nonembed D): then
  # C at the optimum, from a line through the budget's (log N, log C) as D is found.
  # (Whole-step rounding moves a run's 6ND off its budget by well under 2%.)
  per_run_c = 'c' in finals and not np.allclose(
      finals.groupby('budget').c.transform(lambda v: v / v.iloc[0]), 1.0, rtol=0.02)
  log_c = _log_c_at(finals, usable.budget.to_numpy(), np.log(usable.n_opt.to_numpy())[None],
                    per_run_c)[0]
  point = _power_laws(log_c, np.log(usable.n_opt.to_numpy()), np.log(usable.d_opt.to_numpy()),
                      np.ones(len(usable)))
  # Bootstrap: resample runs within each budget, refit the parabolas of the budgets the point
  # estimate used, for all replicates at once.
  rng = np.random.default_rng(seed)
  budgets = finals.budget.to_numpy()
  wts = stats.bootstrap_weights(rng, len(finals), n_bootstrap, groups=budgets)
  used_c = usable.budget.to_numpy()
  log_n_b = np.full((n_bootstrap, used_c.size), np.nan)
  log_d_b = np.full((n_bootstrap, used_c.size), np.nan)
  for j, c in enumerate(used_c):
    idx = np.flatnonzero(budgets == c)
    x = np.log(finals.n.to_numpy()[idx])
    coef = stats.parabola_fit(x, finals.loss.to_numpy()[idx], wts[:, idx])     # (B, 3)
    with np.errstate(invalid='ignore', divide='ignore'):
      x_min = np.where(coef[:, 2] > 0, -coef[:, 1] / (2 * coef[:, 2]), np.nan)
    k, s = stats.linear_fit(x, np.log(finals.d.to_numpy()[idx]), np.ones_like(x))
    log_n_b[:, j], log_d_b[:, j] = x_min, k + s * x_min
  boot = _power_laws(_log_c_at(finals, used_c, log_n_b, per_run_c), log_n_b, log_d_b,
                     np.ones_like(log_n_b))
  notes = []
  if excluded:
    notes.append(f'{len(excluded)} budgets left out: ' + '; '.join(
        f'{c:.3g} ({why})' for c, why in excluded.items()))
  outside = usable[~usable.inside]
  if len(outside):
    notes.append(f'{len(outside)} budgets have their minimum outside the sizes tried '
                 '(extrapolated): ' + ', '.join(f'{c:.3g}' for c in outside.budget))
  pts = usable.rename(columns={'budget': 'c'})[['c', 'n_opt', 'd_opt', 'loss']]
  return FrontierFit('approach2', *point, boot=boot, points=pts.reset_index(drop=True),
                     notes=tuple(notes), level=level, excluded=excluded)
