"""Standard errors of final losses in results.csv, and paired differences between adjacent
sizes on the same held-out sequences."""
import csv
import json
import math

import numpy as np
import pytest

from research import heldout
from research import runs
from research.scaling import results

TOKENS = np.array([100.0, 100.0, 200.0, 200.0])
PRINTS = np.array([11, 22, 33, 44], np.uint32)


def _run(root, run_id, n_params, loss_sum, prints=PRINTS, save=True):
  """A finished run whose final eval saw four sequences with these summed losses."""
  run_dir = root / run_id
  rows = heldout.HeldOutLosses(np.asarray(loss_sum, np.float64), TOKENS, prints)
  loss, se = rows.mean_and_se()
  runs.write_json_atomic(str(run_dir / runs.RUN_INFO), {
      'family': 'decoder', 'objective': 'causal_lm', 'seed': 0, 'n_params': n_params,
      'train_steps': 10, 'feature_lengths': {'targets': 64}})
  runs.append_jsonl(str(run_dir / runs.METRICS), {
      'step': 10, 'train_loss': loss, 'eval_loss': loss, 'eval_loss_se': se,
      'eval_sequences': len(rows)})
  if save:
    rows.save(str(run_dir / runs.FINAL_EVAL_LOSSES))
  runs.mark_complete(str(run_dir), {'step': 10})


@pytest.fixture
def sweep(tmp_path):
  small = np.array([300.0, 300.0, 500.0, 500.0])
  _run(tmp_path, 'C1-a', 1000, small)
  # b - a per sequence: -10, -30, -40, -40 over 600 tokens.
  _run(tmp_path, 'C1-b', 2000, small + [-10, -30, -40, -40])
  _run(tmp_path, 'C1-c', 4000, small - 100, save=False)
  _run(tmp_path, 'C2-a', 1000, small)
  _run(tmp_path, 'C2-b', 2000, small - 50, prints=PRINTS[::-1])
  points = [{'run_id': r, 'size': r[-1], 'flop_budget': float(r[1]), 'token_budget': None}
            for r in ('C1-a', 'C1-b', 'C1-c', 'C2-a', 'C2-b')]
  (tmp_path / results.PLAN_FILE).write_text(json.dumps({'points': points}))
  return tmp_path


def test_ratio_se_of_equal_token_counts_is_the_se_of_the_mean():
  rng = np.random.default_rng(0)
  loss_sum = rng.normal(3.0, 0.5, 50) * 128
  mean, se = heldout.ratio_mean_se(loss_sum, np.full(50, 128.0))
  per_token = loss_sum / 128
  assert mean == pytest.approx(per_token.mean())
  assert se == pytest.approx(per_token.std(ddof=1) / math.sqrt(50))
  assert math.isnan(heldout.ratio_mean_se([5.0], [2.0])[1])


def test_paired_difference_of_adjacent_sizes_is_exact(sweep):
  pairs = results.paired_differences(str(sweep))
  by = {(p['flop_budget'], p['smaller'], p['larger']): p for p in pairs}
  assert set(by) == {(1.0, 'C1-a', 'C1-b'), (1.0, 'C1-b', 'C1-c'), (2.0, 'C2-a', 'C2-b')}
  ab = by[1.0, 'C1-a', 'C1-b']
  # D = -120 / 600; residuals d - D w = 10, -10, 0, 0; SE^2 = 200 / (4 * 3) / 150^2.
  assert ab['difference'] == pytest.approx(-0.2, abs=1e-12)
  assert ab['se'] == pytest.approx(math.sqrt(200 / 12) / 150, rel=1e-12)
  assert ab['note'] == '' and ab['n_params_larger'] == 2000
  assert math.isnan(by[1.0, 'C1-b', 'C1-c']['se'])
  assert by[1.0, 'C1-b', 'C1-c']['note'] == f'C1-c: no {runs.FINAL_EVAL_LOSSES}'
  assert 'different held-out sets' in by[2.0, 'C2-a', 'C2-b']['note']


def test_results_csv_carries_the_se_and_the_report_the_largest_ses(sweep):
  path, report = results.write_results(str(sweep))
  with open(path) as f:
    rows = {r['run_id']: r for r in csv.DictReader(f)}
  assert list(results.load(path).columns) == list(results.COLUMNS)
  expected = heldout.ratio_mean_se(np.array([290.0, 270.0, 460.0, 460.0]), TOKENS)[1]
  assert float(rows['C1-b']['eval_loss_se']) == pytest.approx(expected)
  assert rows['C1-b']['eval_sequences'] == '4'
  lines = report.lines()
  largest = max(float(r['eval_loss_se']) for r in rows.values())
  assert any(f'largest final eval_loss_se {largest:.4f}' in line for line in lines)
  assert any(f'largest paired-difference SE {math.sqrt(200 / 12) / 150:.4f}' in line
             for line in lines)
  assert any('2 adjacent pair(s) not paired' in line for line in lines)
  # The same pairs from the table written to disk.
  from_csv = results.paired_differences(str(sweep), results.load(path))
  assert [p['smaller'] for p in from_csv] == ['C1-a', 'C1-b', 'C2-a']
  assert from_csv[0]['difference'] == pytest.approx(-0.2, abs=1e-12)
