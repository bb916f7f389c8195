"""Every fit written to fits.json carries a seeded 95% bootstrap interval that contains the
synthetic truth and is narrower than a stated width."""
import json

import numpy as np
import pytest

from research.scaling import laws
from research.scaling import report
from research.scaling import synthetic
from research.scaling import table

TRUE = laws.CHINCHILLA        # a = 0.4516, b = 0.5484 (Hoffmann et al. 2022, Eq. 4)

# Widths of the 95% intervals on the Chinchilla-like grid below (9 budgets x 10 sizes, 0.3%
# noise, 100 replicates); measured at seed 0: Approach 1 a 0.068, Approach 2 a 0.037,
# Approach 3 a 0.025, alpha 0.026, beta 0.030, E 0.074.
MAX_WIDTH = {('approach1', 'a'): 0.12, ('approach1', 'b'): 0.12,
             ('approach2', 'a'): 0.07, ('approach2', 'b'): 0.07,
             ('approach3', 'a'): 0.05, ('approach3', 'b'): 0.05,
             ('approach3', 'alpha'): 0.06, ('approach3', 'beta'): 0.06, ('approach3', 'E'): 0.12}


def _fits(tmp_path, seed):
  path = tmp_path / f'results{seed}.csv'
  synthetic.results_table(TRUE.loss, 0.003, 0).to_csv(path, index=False)
  tab = table.load_results(str(path))
  cfg = report.ReportConfig(n_bootstrap=100, seed=seed, max_starts=32, conventions=False)
  return tab, json.loads(json.dumps(report.to_json(tab, report.fit_all(tab, cfg), cfg, 'r')))


@pytest.fixture(scope='module')
def fits(tmp_path_factory):
  return _fits(tmp_path_factory.mktemp('intervals'), 0)


@pytest.mark.parametrize('approach, name', sorted(MAX_WIDTH))
def test_interval_contains_truth_and_is_narrow(fits, approach, name):
  _, out = fits
  e = out['chinchilla'][approach][name]
  lo, hi = e['ci95']
  assert lo <= getattr(TRUE, name) <= hi, (approach, name, e)
  assert hi - lo < MAX_WIDTH[approach, name], (approach, name, e)


def test_n_opt_interval_at_every_budget_contains_truth(fits):
  tab, out = fits
  budgets = sorted(tab.finals.budget.unique())
  assert out['budgets'] == pytest.approx(budgets)
  for approach in ('approach2', 'approach3'):
    opt = out['chinchilla'][approach]['optimal_at_budget']
    assert sorted(map(float, opt)) == pytest.approx(budgets)
    for c, v in opt.items():
      n_true, d_true = TRUE.optimal(float(c))
      lo, hi = v['N_opt']['ci95']
      assert lo < n_true < hi, (approach, c, v['N_opt'], n_true)
      lo, hi = v['tokens_per_param']['ci95']
      assert lo < d_true / n_true < hi, (approach, c)


def test_kaplan_fits_have_intervals(fits):
  _, out = fits
  for law, names in (('L_N', ('alpha_N', 'N_c')), ('L_D', ('alpha_D', 'D_c')),
                     ('L_C', ('alpha_C', 'C_c')), ('L_ND', ('alpha_N', 'alpha_D'))):
    for name in names:
      lo, hi = out['kaplan'][law][name]['ci95']
      assert np.isfinite([lo, hi]).all() and lo <= out['kaplan'][law][name]['value'] <= hi
  lo, hi = out['kaplan']['N_opt_exponent']['ci95']
  assert lo < hi


def test_seeded(tmp_path, fits):
  _, out0 = fits
  _, again = _fits(tmp_path, 0)
  _, other = _fits(tmp_path, 1)
  a2 = lambda o: o['chinchilla']['approach2']['a']['ci95']
  assert a2(again) == a2(out0) and a2(other) != a2(out0)
