"""What the fits leave out is named with the reason: budgets without an interior minimum
(Approach 2) and runs that repeat their data past ~4 epochs (Muennighoff et al. 2023)."""
import json

import numpy as np
import pandas as pd
import pytest

from research.scaling import exclusions
from research.scaling import frontier
from research.scaling import laws
from research.scaling import report
from research.scaling import summary
from research.scaling import synthetic
from research.scaling import table

TRUE = laws.CHINCHILLA
BUDGETS = (1e19, 1e20, 1e21, 1e22)


def _grid_with_edge_budget():
  """4 budgets centred on their optimum plus 3e22 whose sizes all lie below it (x 10^-1.4
  shifts the 1.2-decade span entirely under N_opt): its loss falls all the way to the largest
  size."""
  g = synthetic.isoflop_grid(TRUE.loss, BUDGETS + (3e22,), n_sizes=7, span_decades=1.2)
  low = g.flop_budget == 3e22
  g.loc[low, 'n_params'] *= 10 ** -1.4
  g.loc[low, 'tokens'] = g.flop_budget[low] / (6 * g.n_params[low])
  return g


def _finals(g):
  return pd.DataFrame({'n': g.n_params, 'd': g.tokens, 'budget': g.flop_budget,
                       'loss': TRUE.loss(g.n_params.to_numpy(), g.tokens.to_numpy())})


def test_edge_budget_is_left_out_and_named():
  fit = frontier.approach2(_finals(_grid_with_edge_budget()), n_bootstrap=50)
  assert list(fit.excluded) == [3e22]
  why = fit.excluded[3e22]
  assert 'no interior minimum' in why and 'largest size' in why and 'above' in why, why
  assert sorted(fit.points.c) == list(BUDGETS)
  assert abs(fit.a - TRUE.a) < 0.02, fit.a                   # the edge budget did not bend a
  assert any('3e+22' in n for n in fit.notes)


def test_edge_budget_kept_when_asked():
  fit = frontier.approach2(_finals(_grid_with_edge_budget()), n_bootstrap=20, exclude_edge=False)
  assert fit.excluded == {} and len(fit.points) == 5


def test_concave_budget_is_named_not_convex():
  x = np.linspace(18, 21, 5)
  f = _finals(synthetic.isoflop_grid(TRUE.loss, BUDGETS, n_sizes=5))
  concave = pd.DataFrame({'n': np.exp(x), 'd': 1e23 / (6 * np.exp(x)), 'budget': 1e23,
                          'loss': 2.0 - 0.01 * (x - 19.5) ** 2})
  fit = frontier.approach2(pd.concat([f, concave], ignore_index=True), n_bootstrap=20)
  assert 'not convex' in fit.excluded[1e23]


def _sweep(tmp_path, **kw):
  path = tmp_path / 'results.csv'
  synthetic.results_table(TRUE.loss, 0.003, 0, n_evals=4, grid=_grid_with_edge_budget(),
                          **kw).to_csv(path, index=False)
  return table.load_results(str(path))


CFG = dict(n_bootstrap=20, max_starts=16, conventions=False)


def test_fits_json_and_summary_name_every_exclusion(tmp_path):
  tab = _sweep(tmp_path)
  # The corpus: 4 epochs of it reach just under the most tokens any run of 1e21 saw, so the
  # runs past it are the small models of 1e21 and above.
  corpus = tab.finals[tab.finals.budget == 1e21].d.max() / 4 * 0.99
  cfg = report.ReportConfig(corpus_tokens=corpus, **CFG)
  fits = report.fit_all(tab, cfg)
  out = json.loads(json.dumps(report.to_json(tab, fits, cfg, 'r.csv')))
  over = tab.finals[tab.finals.d > 4 * corpus].run_id
  assert len(over) > 0 and sorted(out['excluded']['runs']) == sorted(over)
  for why in out['excluded']['runs'].values():
    assert 'epochs' in why and 'Muennighoff' in why
  assert out['source']['n_runs'] == len(tab.finals) - len(over)
  assert set(fits.table.finals.run_id).isdisjoint(over)
  # Earlier evaluations of those runs, under 4 epochs, stay in the training curves.
  kept = fits.table.curves[fits.table.curves.run_id.isin(over)]
  assert len(kept) > 0 and (kept.d <= 4 * corpus).all()
  assert out['excluded']['repeated_data_check'].startswith('checked: corpus of')
  text = summary.summary_text(out)
  for run_id in over:
    assert f'left out of every fit: run {run_id}: repeats its data' in text


def test_edge_budget_in_fits_json_and_summary(tmp_path):
  tab = _sweep(tmp_path)
  cfg = report.ReportConfig(**CFG)
  fits = report.fit_all(tab, cfg)
  out = report.to_json(tab, fits, cfg, 'r.csv')
  assert list(out['excluded']['approach2_budgets']) == ['3e+22']
  assert out['chinchilla']['approach2']['budgets_used'] == list(BUDGETS)
  assert out['excluded']['runs'] == {}          # no corpus size: nothing is repeated data,
  text = summary.summary_text(out)              # and the summary says it was not checked
  assert 'repeated data: not checked: no corpus size' in text
  assert 'left out of Approach 2: budget 3e+22: no interior minimum' in text
  assert 'budgets used: 1e+19, 1e+20, 1e+21, 1e+22' in text


def test_corpus_column_of_the_table_is_used(tmp_path):
  tab = _sweep(tmp_path)
  corpus = float(tab.finals.d.median()) / 4
  path = tmp_path / 'with_corpus.csv'
  pd.read_csv(tmp_path / 'results.csv').assign(corpus_tokens=corpus).to_csv(path, index=False)
  with_column = table.load_results(str(path))
  _, by_column = exclusions.repeated_data(with_column)
  _, by_argument = exclusions.repeated_data(tab, corpus)
  assert 'corpus_tokens column' in exclusions.check_description(with_column)
  assert by_column == by_argument and len(by_column) == int((tab.finals.d > 4 * corpus).sum())


def test_max_epochs_moves_the_limit(tmp_path):
  tab = _sweep(tmp_path)
  corpus = float(tab.finals.d.max())
  _, at_4 = exclusions.repeated_data(tab, corpus)
  _, at_half = exclusions.repeated_data(tab, corpus, max_epochs=0.5)
  assert at_4 == {} and len(at_half) == int((tab.finals.d > 0.5 * corpus).sum()) > 0


def test_budgets_named_when_approach2_has_too_few_left(tmp_path):
  g = _grid_with_edge_budget()
  g = g[g.flop_budget.isin([1e20, 1e21, 3e22])]        # 2 usable budgets and the edge one
  path = tmp_path / 'results.csv'
  synthetic.results_table(TRUE.loss, 0.003, 0, n_evals=4, grid=g).to_csv(path, index=False)
  tab = table.load_results(str(path))
  cfg = report.ReportConfig(**CFG)
  fits = report.fit_all(tab, cfg)
  assert fits.approach2 is None and 'left out: 3e+22' in fits.skipped['approach2']
  out = report.to_json(tab, fits, cfg, 'r.csv')
  assert 'no interior minimum' in out['excluded']['approach2_budgets']['3e+22']
  assert 'left out of Approach 2: budget 3e+22' in summary.summary_text(out)
