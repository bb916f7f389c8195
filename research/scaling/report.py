"""Run every fit a results table supports and write fits.json (the library half of
research/scaling/main.py; the notebook calls the same functions step by step)."""
import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np

from research import runs
from research.scaling import conventions as conventions_lib
from research.scaling import exclusions
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
  budgets: Sequence[float] = ()    # extra budgets for N_opt, D_opt, tokens/param (every
                                   # IsoFLOP budget of the table always is; see report_budgets)
  corpus_tokens: Optional[float] = None  # corpus size; else the table's corpus_tokens column
  max_epochs: float = exclusions.MAX_EPOCHS  # runs repeating data more are left out, named
  exclude_edge_budgets: bool = True  # Approach 2 leaves out budgets without an interior minimum
  conventions: bool = True           # refit Approaches 1 and 3 under Kaplan's conventions


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
  excluded_runs: Dict[str, str] = dataclasses.field(default_factory=dict)  # run_id -> why
  conventions: Optional[conventions_lib.ConventionFits] = None
  table: Optional[ScalingTable] = None   # the table the fits saw (after excluded_runs)
  repeated_data_check: str = ''          # whether runs were checked for repeated data, how


# Fits every kind of table supports: if one of these cannot be done, the input is unusable.
REQUIRED = ('approach3', 'kaplan_nd')


def fit_all(table: ScalingTable, cfg: ReportConfig = ReportConfig()) -> Fits:
  """Every fit the table supports; raises ScalingFitError if a REQUIRED fit is impossible.

  Runs past cfg.max_epochs of their corpus are left out first (fits.excluded_runs says which
  and why); fits.table is what remains, the table figures and fits.json should describe."""
  checked = exclusions.check_description(table, cfg.corpus_tokens, cfg.max_epochs)
  table, excluded = exclusions.repeated_data(table, cfg.corpus_tokens, cfg.max_epochs)
  fits = Fits(excluded_runs=excluded, table=table, repeated_data_check=checked)
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
        'approach2': lambda: frontier.approach2(f, nb, seed=seed,
                                                exclude_edge=cfg.exclude_edge_budgets),
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
  if cfg.conventions:
    fits.conventions = conventions_lib.fit(
        table, {'approach1': fits.approach1, 'approach3': fits.approach3}, nb, seed,
        cfg.max_starts)
  return fits


def report_budgets(table: ScalingTable, cfg: ReportConfig) -> list:
  """Budgets at which N_opt, D_opt and D/N are reported: every IsoFLOP budget of the table
  (its largest C where it has none, as a published table) and cfg.budgets."""
  given = table.finals.budget.to_numpy(float)
  own = given[np.isfinite(given)] if np.isfinite(given).any() else [table.finals.c.max()]
  return sorted({*map(float, own), *map(float, cfg.budgets)})


def _ests(d):
  return {k: v.to_json() for k, v in d.items()}


def to_json(table: ScalingTable, fits: Fits, cfg: ReportConfig, source: str) -> dict:
  """fits.json: parameter names as in the papers, each {value, ci95: [lo, hi]}.

  Besides the fits: 'excluded' names every run and budget left out with the reason
  ('runs': repeated data; 'approach2_budgets': no interior minimum), approach2's
  'budgets_used' lists the budgets its power laws were fitted to, and 'conventions' holds a
  under Kaplan's and Chinchilla's conventions side by side (research.scaling.conventions).
  summary.summary_text turns this dict into the printed summary."""
  table = fits.table if fits.table is not None else table
  budgets = report_budgets(table, cfg)
  out = {'source': {'results': source, 'kind': table.kind, 'n_runs': int(len(table.finals)),
                    'n_points': int(len(table.curves) if table.curves is not None
                                    else len(table.finals)),
                    'columns': dataclasses.asdict(table.columns), 'n_bootstrap': cfg.n_bootstrap,
                    'seed': cfg.seed, 'corpus_tokens': cfg.corpus_tokens,
                    'max_epochs': cfg.max_epochs},
         'notes': list(table.notes), 'chinchilla': {}, 'kaplan': {}, 'skipped': fits.skipped,
         'excluded': {'runs': dict(fits.excluded_runs), 'approach2_budgets': {},
                      'repeated_data_check': fits.repeated_data_check},
         'budgets': budgets}
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
  if fits.approach2 is not None:
    fr = fits.approach2
    out['chinchilla']['approach2']['budgets_used'] = [float(c) for c in fr.points.c]
    out['chinchilla']['approach2']['n_opt_per_budget'] = {
        f'{r.c:.4g}': {'N_opt': float(r.n_opt), 'D_opt': float(r.d_opt)}
        for r in fr.points.itertuples()}
  if table.kind == 'sweep':
    # Named even when Approach 2 failed for lack of budgets: that is when they matter most.
    excluded = (fits.approach2.excluded if fits.approach2 is not None else
                frontier.budget_exclusions(frontier.isoflop_parabolas(
                    table.finals.reset_index(drop=True)), cfg.exclude_edge_budgets))
    out['excluded']['approach2_budgets'] = {f'{c:.4g}': why for c, why in excluded.items()}
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
  if fits.conventions is not None:
    out['conventions'] = conventions_lib.to_json(fits.conventions)
  return out


def write_json_atomic(path: str, obj: dict):
  """fits.json through research.runs' atomic writer: readers never see half a file."""
  runs.write_json_atomic(path, obj, sort_keys=False, default=lambda x: float(x) if isinstance(
      x, np.floating) else str(x))