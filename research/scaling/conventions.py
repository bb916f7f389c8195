"""Kaplan's and Chinchilla's conventions fitted to one set of runs, side by side.

Pearce & Song (2024), "Reconciling Kaplan and Chinchilla Scaling Laws" (arXiv:2406.12907):
much of the gap between Kaplan et al.'s N_opt ~ C^0.73 and Hoffmann et al.'s C^0.50 comes from
Kaplan counting non-embedding parameters (and C = 6 N_nonembed D) at small scale. The
embedding's share of the parameters falls as models grow, so non-embedding N_opt grows faster
with compute than total N_opt: the Kaplan-convention exponent a is the larger one (their
Sec. 3-4), and the gap closes as embeddings become negligible.

Here the same runs are refitted with N = non-embedding parameters and C = 6 N_nonembed D
(table columns n_km, c_km) by Approach 1 (the training-curve envelope, which needs no IsoFLOP
grouping) and Approach 3 (a = beta / (alpha + beta) is the exponent under C = k N D for any k).
Approach 2 is not refitted: its IsoFLOP groups share 6 N_total D, and under 6 N_nonembed D the
runs of one group span different budgets. Both conventions are bootstrapped with the same seed
over the same runs, so replicate i resamples the same runs in both and the shift a_KM - a_Ch
has a paired interval.
"""
import dataclasses
from typing import Dict, Optional

import numpy as np
import pandas as pd

from research.scaling import frontier
from research.scaling import parametric
from research.scaling import stats
from research.scaling.stats import ScalingFitError
from research.scaling.table import ScalingTable

APPROACHES = ('approach1', 'approach3')
CONVENTIONS = {
    'chinchilla': 'N total parameters, C = 6 N D (Hoffmann et al. 2022)',
    'kaplan': 'N non-embedding parameters, C = 6 N_nonembed D (Kaplan et al. 2020)',
}


@dataclasses.dataclass
class ConventionFits:
  """Per approach, its fit under each convention; what could not be fitted, with why."""
  chinchilla: Dict[str, object] = dataclasses.field(default_factory=dict)
  kaplan: Dict[str, object] = dataclasses.field(default_factory=dict)
  skipped: Dict[str, str] = dataclasses.field(default_factory=dict)


def a_boot(fit) -> np.ndarray:
  """Bootstrap replicates of a: column 0 of a FrontierFit, beta / (alpha + beta) of Approach 3."""
  if isinstance(fit, frontier.FrontierFit):
    return fit.boot[:, 0]
  al, be = fit.boot[:, 3], fit.boot[:, 4]
  return be / (al + be)


def a_value(fit) -> float:
  return fit.a if isinstance(fit, frontier.FrontierFit) else fit.law.a


def kaplan_convention_table(table: ScalingTable) -> ScalingTable:
  """The same runs with N and C counted as Kaplan et al. do (n = n_km, c = c_km)."""
  conv = lambda df: None if df is None else df.assign(n=df.n_km, c=df.c_km)
  return dataclasses.replace(table, curves=conv(table.curves), finals=conv(table.finals))


def fit(table: ScalingTable, chinchilla: Optional[Dict[str, object]] = None,
        n_bootstrap: int = 400, seed: int = 0,
        max_starts: Optional[int] = 128) -> ConventionFits:
  """Approaches 1 and 3 under both conventions. `chinchilla` passes fits already made under
  the Chinchilla convention (with the same n_bootstrap and seed) so they are not refitted; a
  None there is a fit that failed, left out here too."""
  out = ConventionFits()
  if table.kind != 'sweep':
    out.skipped['all'] = 'a published table has no non-embedding parameter counts'
    return out
  if np.allclose(table.finals.n_km, table.finals.n):
    out.skipped['all'] = 'non-embedding and total parameter counts are equal in this table'
    return out
  chinchilla = dict(chinchilla or {})
  km = kaplan_convention_table(table)
  for conv, tab, have in (('chinchilla', table, chinchilla), ('kaplan', km, {})):
    jobs = {
        'approach1': lambda t=tab: frontier.approach1(t.curves, n_bootstrap, seed=seed),
        'approach3': lambda t=tab: parametric.fit(
            t.finals.n, t.finals.d, t.finals.loss, parametric.ParametricConfig(
                n_bootstrap=n_bootstrap, seed=seed, max_starts=max_starts)),
    }
    for name, job in jobs.items():
      if name in have:   # fitted (or skipped, as None) by the caller under this convention
        if have[name] is None:
          out.skipped[f'{name} ({conv})'] = 'not fitted under this convention (see skipped)'
        else:
          getattr(out, conv)[name] = have[name]
        continue
      try:
        getattr(out, conv)[name] = job()
      except ScalingFitError as e:
        out.skipped[f'{name} ({conv})'] = str(e)
  return out


def exponent_table(cf: ConventionFits, level: float = 0.95) -> pd.DataFrame:
  """One row per approach fitted under both conventions: a (N_opt ~ C^a) under each with its
  interval, the shift a_kaplan - a_chinchilla with its paired interval, and its direction."""
  rows = []
  for name in APPROACHES:
    ch, km = cf.chinchilla.get(name), cf.kaplan.get(name)
    if ch is None or km is None:
      continue
    e_ch = stats.estimate(a_value(ch), a_boot(ch), level)
    e_km = stats.estimate(a_value(km), a_boot(km), level)
    k = min(len(ch.boot), len(km.boot))
    shift = stats.estimate(e_km.value - e_ch.value, a_boot(km)[:k] - a_boot(ch)[:k], level)
    if shift.lo > 0:
      direction = 'kaplan larger'
    elif shift.hi < 0:
      direction = 'kaplan smaller'
    else:
      direction = 'no clear shift'
    rows.append({'approach': name, 'a_chinchilla': e_ch.value, 'a_chinchilla_lo': e_ch.lo,
                 'a_chinchilla_hi': e_ch.hi, 'a_kaplan': e_km.value, 'a_kaplan_lo': e_km.lo,
                 'a_kaplan_hi': e_km.hi, 'shift': shift.value, 'shift_lo': shift.lo,
                 'shift_hi': shift.hi, 'direction': direction,
                 'as_pearce_song_predict': direction == 'kaplan larger'})
  return pd.DataFrame(rows)


def to_json(cf: ConventionFits) -> dict:
  """fits.json's 'conventions': the exponent table per approach, what each convention counts,
  and what was skipped."""
  approaches = {}
  for r in exponent_table(cf).to_dict('records'):
    approaches[r['approach']] = {
        'a_chinchilla': {'value': r['a_chinchilla'],
                         'ci95': [r['a_chinchilla_lo'], r['a_chinchilla_hi']]},
        'a_kaplan': {'value': r['a_kaplan'], 'ci95': [r['a_kaplan_lo'], r['a_kaplan_hi']]},
        'shift': {'value': r['shift'], 'ci95': [r['shift_lo'], r['shift_hi']]},
        'direction': r['direction'],
        'as_pearce_song_predict': bool(r['as_pearce_song_predict'])}
  return {'definitions': CONVENTIONS, 'approaches': approaches, 'skipped': dict(cf.skipped),
          'reference': 'Pearce & Song (2024), arXiv:2406.12907: the Kaplan-convention a is '
                       'expected to be larger'}
