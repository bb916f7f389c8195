"""The probe over a sweep directory: rows, skips of bad runs, the entry point."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from research.emergence import probe
from tests.emergence import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def sweep(tmp_path_factory, tiny_model):
  """Three 'sizes' (snapshots of one tiny model at 40/120/250 steps, labelled as a ladder),
  plus an unfinished run, a corrupt run_info.json and a run whose checkpoint is garbage."""
  root = tmp_path_factory.mktemp('sweep')
  config, _, snaps = tiny_model
  for n, step in zip((10_000, 31_623, 100_000), (40, 120, 250)):
    helpers.write_run(str(root / f'n{n}_s0'), config, {step: snaps[step]}, n_params=n)
  helpers.write_run(str(root / 'unfinished'), config, {40: snaps[40]}, n_params=5,
                    completed=False)
  os.makedirs(root / 'corrupt_info' / 'checkpoints')
  (root / 'corrupt_info' / 'run_info.json').write_text('{"architecture": ')
  helpers.write_run(str(root / 'bad_ckpt'), config, {40: snaps[40]}, n_params=7)
  state = root / 'bad_ckpt' / 'checkpoints' / '40' / 'state'
  for dirpath, _, files in os.walk(state):
    for f in files:
      with open(os.path.join(dirpath, f), 'wb') as fh:
        fh.write(b'garbage')
  return str(root)


def test_probe_scores_good_runs_and_reports_bad_ones(sweep, tmp_path):
  lines = []
  result = probe.probe(sweep, str(tmp_path), n_per_length=8, bootstrap_samples=20,
                       log=lines.append)
  assert sorted(result['runs']) == ['bad_ckpt', 'n100000_s0', 'n10000_s0', 'n31623_s0']
  skipped = dict(result['skipped'])
  assert set(skipped) == {'unfinished', 'corrupt_info', 'bad_ckpt'}
  assert 'unfinished' in skipped['unfinished'] and 'corrupt' in skipped['corrupt_info']
  assert any('bad_ckpt' in line for line in lines)
  table = pd.read_csv(result['csv'])
  assert set(table['run_id']) == {'n100000_s0', 'n10000_s0', 'n31623_s0'}
  one = table[(table['metric'] == 'exact_match')]
  assert set(one['L']) == set(range(1, 9)) and one['n_items'].eq(8).all()
  # one row per run x checkpoint x task x L x metric
  assert not table.duplicated(['run_id', 'step', 'task', 'L', 'metric']).any()
  sharp = pd.read_csv(result['sharpness_csv'])
  assert {'onset_index', 'breakthroughness', 'linearity', 'diff_vs_ted'} <= set(sharp.columns)
  assert all(os.path.exists(p) for p in result['figures']) and len(result['figures']) >= 3
  assert [s['run_id'] for s in json.load(open(tmp_path / 'skipped.json'))]


def test_entry_point_smoke_and_bad_flags(sweep, tmp_path):
  script = os.path.join(REPO, 'experiments', 'probe_emergence.py')
  ok = subprocess.run([sys.executable, script, f'--sweep_dir={sweep}',
                       f'--out={tmp_path}', '--n_per_length=4', '--bootstrap_samples=10',
                       '--nomc'], capture_output=True, text=True, timeout=600)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert os.path.exists(tmp_path / 'emergence.csv')
  assert 'skipped unfinished' in ok.stderr
  bad = subprocess.run([sys.executable, script, '--sweep_dir=/nonexistent', f'--out={tmp_path}'],
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and 'not a directory' in bad.stderr.strip().splitlines()[-1]
