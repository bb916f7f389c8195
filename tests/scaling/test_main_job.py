"""The README's main job, end to end, against what it is meant to show (about 15 min on 2
cores): Approaches 1, 2 and 3 each give a in [0.35, 0.65] with overlapping intervals
(Hoffmann et al. 2022: a ~ 0.50); Approach 2 uses every budget (each has an interior
minimum); counting parameters and compute as Kaplan et al. did gives a larger a (Pearce &
Song 2024); the held-out paired differences are known to better than 0.005 nats.

Marked `sweep`, run by hand (`python -m pytest -m sweep`), not in CI; the CI runs the same
machinery on gin_configs/sweeps/ci.gin (tests/scaling/test_sweep_e2e.py).
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUDGETS = [3e10, 1e11, 3e11, 1e12]


@pytest.mark.sweep
def test_main_job_finds_the_compute_optimal_frontier(tmp_path):
  sweep_dir = tmp_path / 'quickstart'
  # The README's command as a user runs it: without tests/conftest.py's -O0 XLA flag.
  env = dict(os.environ, XLA_FLAGS=' '.join(
      f for f in os.environ.get('XLA_FLAGS', '').split()
      if f != '--xla_backend_optimization_level=0'))
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'sweep.py'),
       '--gin_file=gin_configs/sweeps/quickstart.gin', f'--sweep_dir={sweep_dir}',
       '--parallel=2', '--fit'], cwd=REPO, env=env, capture_output=True, text=True,
      timeout=3600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(sweep_dir / 'fits' / 'fits.json') as f:
    fits = json.load(f)
  ch = fits['chinchilla']
  intervals = []
  for name in ('approach1', 'approach2', 'approach3'):
    assert name in ch, fits.get('skipped')
    a = ch[name]['a']
    assert 0.35 <= a['value'] <= 0.65, (name, a)
    intervals.append(a['ci95'])
  assert max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals), intervals
  assert sorted(ch['approach2']['budgets_used']) == BUDGETS
  conv = fits['conventions']['approaches']['approach3']
  assert conv['a_kaplan']['value'] > conv['a_chinchilla']['value']
  assert 'largest paired-difference SE 0.00' in proc.stdout
  se = float(proc.stdout.split('largest paired-difference SE ')[1].split()[0])
  assert se < 0.005
