"""The printed summary: a and b with intervals per approach, N_opt, D_opt and D/N at every
budget, the budgets Approach 2 used, the conventions side by side, what was left out."""
import json

from research.scaling import report
from research.scaling import summary
from research.scaling import table


def test_summary_of_the_fixture(fixture_fits):
  _, _, _, out = fixture_fits
  text = summary.summary_text(json.loads(json.dumps(out)))   # works from fits.json alone
  lines = text.splitlines()
  for title in ('Approach 1', 'Approach 2', 'Approach 3'):
    line = next(l for l in lines if l.startswith(title))
    a = out['chinchilla'][f'approach{title[-1]}']['a']
    assert f'a={a["value"]:.3f} [{a["ci95"][0]:.3f}, {a["ci95"][1]:.3f}]' in line, line
    assert ' b=' in line
  assert 'budgets used: 1e+19, 1e+20, 1e+21, 1e+22' in text
  # N_opt, D_opt and tokens per parameter at the 4 budgets and the projected 1e23, per approach.
  per_budget = [l for l in lines if l.strip().startswith('C=')]
  assert len(per_budget) == 3 * 5 and all('N_opt=' in l and 'D/N=' in l for l in per_budget)
  assert sum(l.strip().startswith('C=1e+23') for l in per_budget) == 3
  conv = [l for l in lines if l.startswith('conventions, approach')]
  assert len(conv) == 2 and all('a Kaplan' in l and 'shift=' in l for l in conv)


def test_summary_names_skips_of_a_published_table():
  tab = table.load_results('tests/fixtures/scaling/published_small.csv')
  cfg = report.ReportConfig(n_bootstrap=10, max_starts=16)
  text = summary.summary_text(report.to_json(tab, report.fit_all(tab, cfg), cfg, 'p.csv'))
  assert 'Approach 1 (training-curve envelope): skipped: needs training curves' in text
  assert 'Approach 3 (parametric L(N, D)): a=' in text
  assert 'conventions, all: skipped: a published table has no non-embedding' in text
  assert 'skipped kaplan_c: needs training curves' in text
