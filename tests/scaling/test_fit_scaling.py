"""Smoke test of experiments/fit_scaling.py, the real entry point, in a subprocess."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'scaling')
PNGS = ['chinchilla_fig2.png', 'chinchilla_fig3.png', 'chinchilla_fig4.png', 'conventions.png',
        'kaplan_fig1.png']


def _run(*args):
  return subprocess.run([sys.executable, 'experiments/fit_scaling.py', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_sweep_table_gives_fits_json_and_figures(tmp_path):
  out = _run(f'--results={FIXTURES}/results_small.csv', f'--out={tmp_path}', '--bootstrap=50',
             '--budgets=1e23')
  assert out.returncode == 0, out.stderr
  assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.png')) == PNGS
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.fits-')]   # temp file renamed
  with open(tmp_path / 'fits.json') as f:
    fits = json.load(f)
  a3 = fits['chinchilla']['approach3']
  for name in ('E', 'A', 'B', 'alpha', 'beta', 'a', 'b'):
    lo, hi = a3[name]['ci95']
    assert lo <= a3[name]['value'] <= hi, name
  assert set(a3['init_spread']) == {'E', 'A', 'B', 'alpha', 'beta'}
  assert '1e+23' in a3['optimal_at_budget']
  for approach in ('approach1', 'approach2'):
    assert set(fits['chinchilla'][approach]) >= {'a', 'b'}
  km = fits['kaplan']
  assert set(km['L_ND']) >= {'alpha_N', 'N_c', 'alpha_D', 'D_c'}
  assert set(km['L_C']) >= {'alpha_C', 'C_c'} and 'alpha_N' in km['L_N']
  assert 'approach3: E=' in out.stdout


def test_published_table_fits_what_it_can(tmp_path):
  out = _run(f'--results={FIXTURES}/published_small.csv', f'--out={tmp_path}', '--bootstrap=20')
  assert out.returncode == 0, out.stderr
  assert 'skipped approach1:' in out.stdout and 'skipped approach2:' in out.stdout
  with open(tmp_path / 'fits.json') as f:
    fits = json.load(f)
  assert 'approach3' in fits['chinchilla'] and 'L_ND' in fits['kaplan']
  assert set(fits['skipped']) == {'approach1', 'approach2', 'kaplan_d', 'kaplan_c'}
  assert len([p for p in os.listdir(tmp_path) if p.endswith('.png')]) == len(PNGS)


@pytest.mark.parametrize('rows, message', [
    ('n_params,tokens,loss\n1e8,1e9,3.0\n2e8,2e9,2.9\n4e8,4e9,2.8\n', '3 points for 5 parameters'),
    ('n_params,tokens,loss\n1e8,1e9,3.0\n1e8,2e9,2.9\n', 'a single model size'),
    ('n_params,tokens,loss\n1e8,1e9,3.0\n2e8,2e9,0\n', 'non-positive'),
    ('n_params,tokens\n1e8,1e9\n', 'missing column(s)'),
])
def test_bad_input_fails_with_one_line(tmp_path, rows, message):
  path = tmp_path / 'bad.csv'
  path.write_text(rows)
  out = _run(f'--results={path}', f'--out={tmp_path}/out')
  assert out.returncode != 0
  errors = [l for l in out.stderr.splitlines() if l.startswith('fit_scaling.py: error:')]
  assert len(errors) == 1 and message in errors[0], out.stderr
  assert not os.path.exists(tmp_path / 'out' / 'fits.json')
