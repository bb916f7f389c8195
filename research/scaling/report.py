"""Run every fit a results table supports and write fits.json (the library half of
experiments/fit_scaling.py; the notebook calls the same functions step by step)."""
import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np

from research import runs
from research.scaling import frontier
from research.scaling import kaplan
from research.scaling import parametric
from research.scaling.stats import ScalingFitError
from research.scaling.table import ScalingTable


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  n_bootstrap: int = 400          # replicates of every fit (Approach 3 and KM L(N, D) refit each)
  seed: int = 0
  max_starts: Optional[int] = 128  # Approach 3 starts (see parametric.ParametricConfig)
  budgets: Sequence[float] = ()    # extra budgets for N_opt, D_opt, tokens/param (the largest
                                   # budget of the table is always reported)


@dataclasses.dataclass
class Fits:
  """The fit objects (for figures and notebooks) and what was skipped, with why."""
  approach1: Optional[frontier.FrontierFit] = None
  approach2: Optional[frontier.FrontierFit] = None
  approach3: Optional[parametric.ParametricFit] = None
  kaplan_n: Optional[kaplan.PowerLawFit] = None
  kaplan_d: Optional[kaplan.PowerLawFit] = None
  kaplan_c: Optional[kaplan.PowerLawFit] = None
  kaplan_nd: Optional[kaplan.KaplanNDFit] = None
  skipped: Dict[str, str] = dataclasses.field(default_factory=dict)


# Fits every kind of table supports: if one of these cannot be done, the input is unusable.
REQUIRED = ('approach3', 'kaplan_nd')


def fit_all(table: ScalingTable, cfg: ReportConfig = ReportConfig()) -> Fits:
  """Every fit the table supports; raises ScalingFitError if a REQUIRED fit is impossible."""
  fits = Fits()
  f, c = table.finals, table.curves
  nb, seed = cfg.n_bootstrap, cfg.seed
  per_size = f.groupby('n_km').loss.min() if c is None else c.groupby('n_km').loss.min()
  jobs = {
      'approach3': lambda: parametric.fit(f.n, f.d, f.loss, parametric.ParametricConfig(
          n_bootstrap=nb, seed=seed, max_starts=cfg.max_starts)),
      'kaplan_nd': lambda: kaplan.fit_nd(f.n_km, f.d, f.loss, kaplan.KaplanNDConfig(
          n_bootstrap=nb, seed=seed)),
      # L(N): the lowest loss each size reached (Kaplan's converged-model law, Eq. 1.1).
      'kaplan_n': lambda: kaplan.fit_power_law(per_size.index.to_numpy(), per_size.to_numpy(),
                                               'N', nb, seed),
  }
  if table.kind == 'sweep':
    km_curves = c.assign(n=c.n_km)
    jobs.update({
        'approach1': lambda: frontier.approach1(c, nb, seed=seed),
        'approach2': lambda: frontier.approach2(f, nb, seed=seed),
        'kaplan_d': lambda: kaplan.fit_envelope_power_law(km_curves, 'd', 'D', nb, seed=seed),
        'kaplan_c': lambda: kaplan.fit_envelope_power_law(km_curves, 'c', 'C', nb, seed=seed),
    })
  else:
    for name in ('approach1', 'approach2', 'kaplan_d', 'kaplan_c'):
      fits.skipped[name] = 'needs training curves and FLOP budgets (published table)'
  for name, job in jobs.items():
    try:
      setattr(fits, name, job())
    except ScalingFitError as e:
      if name in REQUIRED:
        raise
      fits.skipped[name] = str(e)
  return fits


def _ests(d):
  return {k: v.to_json() for k, v in d.items()}


def to_json(table: ScalingTable, fits: Fits, cfg: ReportConfig, source: str) -> dict:
  """fits.json: parameter names as in the papers, each {value, ci95: [lo, hi]}."""
  budgets = sorted({float(table.finals.c.max()), *map(float, cfg.budgets)})
  out = {'source': {'results': source, 'kind': table.kind, 'n_runs': int(len(table.finals)),
                    'n_points': int(len(table.curves) if table.curves is not None
                                    else len(table.finals)),
                    'columns': dataclasses.asdict(table.columns), 'n_bootstrap': cfg.n_bootstrap,
                    'seed': cfg.seed},
         'notes': list(table.notes), 'chinchilla': {}, 'kaplan': {}, 'skipped': fits.skipped}
  at = lambda fit: {f'{c:.4g}': _ests(fit.optimal(c)) for c in budgets}
  if fits.approach3 is not None:
    p = fits.approach3
    out['chinchilla']['approach3'] = {
        **_ests(p.estimates()), 'n_points': p.n_points, 'huber_delta': 1e-3,
        'objective': p.objective, 'n_starts': p.n_starts, 'fraction_at_best': p.fraction_at_best,
        'init_spread': p.init_spread, 'optimal_at_budget': at(p)}
  for name in ('approach1', 'approach2'):
    fr = getattr(fits, name)
    if fr is not None:
      out['chinchilla'][name] = {**_ests(fr.estimates()), 'n_points': int(len(fr.points)),
                                 'notes': list(fr.notes), 'optimal_at_budget': at(fr)}
  for key, name in (('L_N', 'kaplan_n'), ('L_D', 'kaplan_d'), ('L_C', 'kaplan_c')):
    fit = getattr(fits, name)
    if fit is not None:
      out['kaplan'][key] = {**_ests(fit.estimates()), 'n_points': int(len(fit.points))}
  if fits.kaplan_nd is not None:
    k = fits.kaplan_nd
    out['kaplan']['L_ND'] = {**_ests(k.estimates()), 'objective': k.objective,
                             'n_starts': k.n_starts, 'fraction_at_best': k.fraction_at_best,
                             'init_spread': k.init_spread}
  if fits.kaplan_n is not None and fits.kaplan_c is not None:
    out['kaplan']['N_opt_exponent'] = kaplan.n_opt_exponent(fits.kaplan_n, fits.kaplan_c).to_json()
  return out


def write_json_atomic(path: str, obj: dict):
  """fits.json through research.runs' atomic writer: readers never see half a file."""
  runs.write_json_atomic(path, obj, sort_keys=False, default=lambda x: float(x) if isinstance(
      x, np.floating) else str(x))