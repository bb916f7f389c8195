"""Baselines on the scaling figures: an n-gram table (research/baselines/ngram.py's JSON) is
read as data and drawn as dashed horizontal lines on the loss axes."""
import json
import os
import subprocess
import sys

import matplotlib
import pytest

matplotlib.use('Agg')

from research.scaling import plots  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORDERS = [(1, 3.2842), (2, 2.5560), (3, 1.9621), (4, 1.5448), (5, 1.3746), (6, 1.2978)]


def _table(path, orders=ORDERS):
  path.write_text(json.dumps({'orders': [{'order': n, 'nats_per_byte': x, 'bits_per_byte': 0}
                                         for n, x in orders]}))
  return str(path)


def test_read_baselines_takes_the_best_orders(tmp_path):
  path = _table(tmp_path / 'ngram.json')
  assert plots.read_baselines(path) == [('n-gram, n=6', 1.2978), ('n-gram, n=5', 1.3746),
                                        ('n-gram, n=4', 1.5448)]
  assert plots.read_baselines(path, 1) == [('n-gram, n=6', 1.2978)]
  # Past the best order the loss can rise again (a 7-gram overfitting): the best still lead.
  path = _table(tmp_path / 'rising.json', ORDERS + [(7, 1.31)])
  assert [b[0] for b in plots.read_baselines(path, 2)] == ['n-gram, n=6', 'n-gram, n=7']


@pytest.mark.parametrize('content', [None, 'not json', '{"rows": []}', '{"orders": []}',
                                     '{"orders": [{"order": 1}]}'])
def test_unreadable_tables_name_the_file(tmp_path, content):
  path = tmp_path / 'ngram.json'
  if content is not None:
    path.write_text(content)
  with pytest.raises(ValueError, match='ngram.json'):
    plots.read_baselines(str(path))


def _hlines(ax):
  return sorted(round(l.get_ydata()[0], 4) for l in ax.get_lines()
                if len(set(l.get_ydata())) == 1 and l.get_xdata()[0] == 0)


def test_loss_axes_carry_the_lines(fixture_fits, tmp_path):
  tab, fits, _, _ = fixture_fits
  baselines = plots.read_baselines(_table(tmp_path / 'ngram.json'))
  want = [1.2978, 1.3746, 1.5448]
  fig1 = plots.kaplan_fig1(tab, fits, baselines=baselines)
  for ax in fig1.axes[:3]:
    assert _hlines(ax) == want
  fig3 = plots.chinchilla_fig3(tab, fits, baselines=baselines)
  assert _hlines(fig3.axes[0]) == want
  labels = [t.get_text() for t in fig3.axes[0].get_legend().get_texts()]
  assert 'n-gram, n=6: 1.298' in labels and 'n-gram, n=4: 1.545' in labels
  assert _hlines(plots.chinchilla_fig3(tab, fits).axes[0]) == []   # none unless asked
  paths = plots.save_all(tab, fits, str(tmp_path / 'figs'), baselines=baselines)
  assert sorted(os.path.basename(p) for p in paths) == sorted(plots.FIGURES)


def _run(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=120)


def test_fit_refuses_a_missing_baseline_table(tmp_path):
  proc = _run('research.scaling', '--results=tests/fixtures/does_not_matter.csv',
              f'--out={tmp_path}/fits', f'--baseline_json={tmp_path}/missing.json')
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert '--baseline_json' in last and 'missing.json' in last, proc.stderr
  assert not (tmp_path / 'fits').exists()


def test_sweep_refuses_a_missing_baseline_table(tmp_path):
  proc = _run('research.sweeps', '--gin_file=gin_configs/sweeps/ci.gin',
              f'--sweep_dir={tmp_path}/sweep', '--fit',
              f'--fit_baseline_json={tmp_path}/missing.json')
  assert proc.returncode == 2
  assert 'missing.json' in proc.stderr.strip().splitlines()[-1], proc.stderr
  assert not (tmp_path / 'sweep').exists()
