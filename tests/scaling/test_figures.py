"""The papers' figures are written as non-empty PNGs from a results table, from the fixture
and from synthetic data, including the conventions figure and projections to a larger budget."""
import os

import matplotlib
import pytest

matplotlib.use('Agg')

from research.scaling import laws  # pylint: disable=g-import-not-at-top
from research.scaling import plots
from research.scaling import report
from research.scaling import synthetic
from research.scaling import table

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
NAMES = sorted(plots.FIGURES)


def _check_pngs(paths, out_dir):
  assert sorted(os.path.basename(p) for p in paths) == NAMES
  for p in paths:
    assert os.path.dirname(p) == str(out_dir)
    with open(p, 'rb') as f:
      head = f.read(8)
    assert head == PNG_MAGIC and os.path.getsize(p) > 10_000, p   # a drawn figure, not blank


def test_figures_of_the_fixture(fixture_fits, tmp_path):
  tab, fits, cfg, _ = fixture_fits
  _check_pngs(plots.save_all(tab, fits, str(tmp_path), project_to=cfg.budgets), tmp_path)


def test_projection_marks_the_budget(fixture_fits):
  tab, fits, _, _ = fixture_fits
  fig = plots.chinchilla_fig3(tab, fits, project_to=(1e23,))
  ax_n = fig.axes[1]
  assert ax_n.get_xlim()[1] >= 1e23                                   # the line reaches it
  labels = [t.get_text() for t in ax_n.texts]
  assert f'{fits.approach2.optimal(1e23)["N_opt"].value:.3g}' in labels


def test_figures_of_synthetic_data_with_an_excluded_budget(tmp_path):
  g = synthetic.isoflop_grid(laws.CHINCHILLA.loss, (1e19, 1e20, 1e21, 3e21), n_sizes=6)
  low = g.flop_budget == 3e21
  g.loc[low, 'n_params'] *= 10 ** -1.4                  # every size under N_opt: no minimum
  g.loc[low, 'tokens'] = g.flop_budget[low] / (6 * g.n_params[low])
  path = tmp_path / 'results.csv'
  synthetic.results_table(laws.CHINCHILLA.loss, 0.003, 0, n_evals=5, grid=g,
                          vocab_size=32000).to_csv(path, index=False)
  tab = table.load_results(str(path))
  fits = report.fit_all(tab, report.ReportConfig(n_bootstrap=20, max_starts=16))
  assert list(fits.approach2.excluded) == [3e21]
  fig = plots.chinchilla_fig3(tab, fits)
  assert any('left out (1)' in t.get_text() for t in fig.axes[0].get_legend().get_texts())
  conv = plots.conventions_fig(tab, fits)
  assert len(conv.axes[0].get_legend().get_texts()) == 4      # 2 approaches x 2 conventions
  out = tmp_path / 'figs'
  _check_pngs(plots.save_all(tab, fits, str(out)), out)


def test_published_table_draws_what_it_can(tmp_path):
  tab = table.load_results('tests/fixtures/scaling/published_small.csv')
  fits = report.fit_all(tab, report.ReportConfig(n_bootstrap=10, max_starts=16))
  fig = plots.conventions_fig(tab, fits)
  assert 'not fitted' in fig.axes[0].texts[0].get_text()
  _check_pngs(plots.save_all(tab, fits, str(tmp_path)), tmp_path)
