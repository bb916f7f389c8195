"""The Kaplan-to-Chinchilla factor table, on sweeps drawn from a known law."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from research.scaling import factors
from research.scaling import frontier

VOCAB = 384


def _sweep_csv(path, lr_penalty=0.0, e=1.0, a_coef=400.0, b_coef=900.0, alpha=0.34,
               beta=0.34):
  """results.csv of an IsoFLOP sweep whose final losses follow L = E + A/N^alpha + B/D^beta in
  total parameters N (so a = beta / (alpha + beta) = 0.5 under Chinchilla's conventions);
  lr_penalty adds a loss growing with log N (a learning rate that suits small models)."""
  rows = []
  shapes = [(1, 16), (1, 24), (1, 32), (2, 40), (2, 48), (2, 64), (3, 64), (3, 96), (4, 128)]
  for budget in (1e11, 3e11, 1e12, 3e12):
    for layers, width in shapes:
      nonembed = 12 * layers * width ** 2
      n = nonembed + VOCAB * width
      d = budget / (6 * n)
      if not 1 <= d / n <= 5000:
        continue
      loss = e + a_coef / n ** alpha + b_coef / d ** beta + lr_penalty * np.log(n / 1e4)
      rows.append(dict(run_id=f'C{budget:g}-L{layers}d{width}', n_params=n,
                       n_params_nonembed=nonembed, vocab_size=VOCAB, d_model=width,
                       tokens=d, flop_budget=budget, eval_loss=loss, step=100, final=True))
  os.makedirs(path, exist_ok=True)
  pd.DataFrame(rows).to_csv(os.path.join(path, 'results.csv'), index=False)
  return os.path.join(path, 'results.csv')


def test_steps_recover_the_law_and_kaplan_counting_raises_a(tmp_path):
  csv = _sweep_csv(str(tmp_path / 'a'))
  steps, budgets = factors.fit_steps({'kaplan_setup': csv}, n_bootstrap=50)
  assert budgets == [1e11, 3e11, 1e12, 3e12]
  by = {s.step: s.fit for s in steps}
  assert set(by) == {'kaplan', 'head_flops', 'total_params'}
  # Chinchilla's conventions on a law in total N give its a = 0.5 (parabolas are approximate).
  assert by['total_params'].a == pytest.approx(0.5, abs=0.05)
  # Non-embedding counting at small scale gives a larger a (Pearce & Song 2024).
  assert by['kaplan'].a > by['total_params'].a + 0.05
  df = factors.table(steps)
  assert list(df.step) == ['kaplan', 'head_flops', 'total_params']
  assert np.isnan(df['shift'].iloc[0])
  assert df['shift'].iloc[2] == pytest.approx(df.a.iloc[2] - df.a.iloc[1])


def test_per_run_compute_moves_c_to_the_optimum():
  rng = np.random.default_rng(0)
  finals = []
  for c in (1e11, 1e12, 1e13):
    for n in np.geomspace(3e3, 3e6, 10):
      d = c / (6 * n)
      finals.append(dict(n=n, d=d, budget=c, loss=1 + 400 / n ** 0.34 + 900 / d ** 0.34,
                         c=6 * n * d * rng.uniform(0.995, 1.005)))
  finals = pd.DataFrame(finals)
  same = frontier.approach2(finals, n_bootstrap=20)
  # Compute counted in another convention (here C doubled for every run) is not the budget.
  doubled = frontier.approach2(finals.assign(c=finals.c * (finals.n / 1e4) ** 0.3),
                               n_bootstrap=20)
  assert same.a == pytest.approx(0.5, abs=0.05)
  assert doubled.a < same.a - 0.05   # C grows with N inside each budget: a falls


def test_table_markdown_figure_and_command(tmp_path):
  _sweep_csv(str(tmp_path / 'a'), lr_penalty=0.02)
  _sweep_csv(str(tmp_path / 'b'), lr_penalty=0.01)
  _sweep_csv(str(tmp_path / 'c'))
  out = tmp_path / 'out'
  proc = subprocess.run(
      [sys.executable, '-m', 'research.scaling.factors', f'--kaplan_setup={tmp_path / "a"}',
       f'--scaled_warmup={tmp_path / "b"}', f'--lr_rule={tmp_path / "c"}', f'--out={out}',
       '--bootstrap=30'], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  df = pd.read_csv(out / 'factors.csv')
  assert list(df.step) == [s[0] for s in factors.STEPS]
  # The penalty on large models lowers a; removing it step by step raises a again.

  shifts = df.set_index('step')['shift']
  assert shifts['warmup'] > 0 and shifts['lr_rule'] > 0
  assert (out / 'factors.png').stat().st_size > 10_000
  assert '| lr_rule |' in (out / 'factors.md').read_text()
  assert '| lr_rule |' in proc.stdout


def test_command_without_sweeps_fails_with_one_line(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'research.scaling.factors',
                         f'--out={tmp_path}'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1
  proc = subprocess.run([sys.executable, '-m', 'research.scaling.factors',
                         f'--lr_rule={tmp_path / "none"}', f'--out={tmp_path}'],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert 'no such file' in proc.stderr
