"""One fit of the small fixture shared by the summary and figure tests (the full fit_all with
bootstrap takes ~20 s on 2 cores; fitting it once keeps those files fast)."""
import pytest

from research.scaling import report
from research.scaling import table

FIXTURE = 'tests/fixtures/scaling/results_small.csv'


@pytest.fixture(scope='package')
def fixture_fits():
  """(table, fits, cfg, fits.json dict) of results_small.csv, 40 replicates, 1e23 projected."""
  tab = table.load_results(FIXTURE)
  cfg = report.ReportConfig(n_bootstrap=40, seed=0, max_starts=32, budgets=(1e23,))
  fits = report.fit_all(tab, cfg)
  return tab, fits, cfg, report.to_json(tab, fits, cfg, FIXTURE)
