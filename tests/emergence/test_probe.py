"""The probe over a sweep directory: rows, skips of bad runs, the entry point."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from research.emergence import checks as checks_lib
from research.emergence import probe
from research.emergence import resolution as resolution_lib
from research.emergence import scoring
from research.emergence import tables
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
                       large_n_per_length=40, log=lines.append)
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
  checks = json.load(open(tmp_path / 'checks.json'))
  assert checks == json.loads(json.dumps(result['checks']))
  assert [o['L'] for o in checks['onset']] == [4, 5, 6, 7, 8]
  assert any(line.startswith('probe: onset L=4') for line in lines)
  # resolution: exactly the final cells with 0/8 hits, re-scored on 40 items whose first 8
  # are the same items (0 hits there again), with Clopper-Pearson against 10^-L
  resolved = pd.read_csv(tmp_path / 'resolution.csv')
  finals = table[table['final'] & (table['task'] == 'add') & (table['metric'] == 'exact_match')]
  zero = {(r, L) for r, L in finals[finals['successes'] == 0][['run_id', 'L']].itertuples(
      index=False)}
  assert zero and {(r, L) for r, L in resolved[['run_id', 'L']].itertuples(index=False)} == zero
  assert (resolved['small_hits'] == 0).all() and (resolved['large_n'] == 40).all()
  from research.emergence import sharpness  # pylint: disable=g-import-not-at-top
  for row in resolved.itertuples():
    low, high = sharpness.clopper_pearson(row.large_hits, 40)
    assert (row.ci_low, row.ci_high) == pytest.approx((float(low), float(high)))
    assert row.chance == 10.0**-row.L and row.above_chance == (low > row.chance)
  assert checks['resolution']['zero_cells'] == len(resolved)
  assert str(tmp_path / 'resolution.png') in result['figures']
  assert str(tmp_path / 'fig3_contrast.png') in result['figures']
  assert (resolved['identity'] >= 0.975).all()  # at most 1 of 40 items an argmax tie


def test_second_look_counts_match_the_decoded_items_and_resume(sweep, tmp_path, monkeypatch):
  """The streamed second look counts what the first look's teacher-forced pass says, item
  for item, and greedy exact match with it (but for argmax ties); interrupted, a rerun goes
  on from the last saved chunk; finished, a rerun reads the counts without the model."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from research.emergence import cache as cache_lib  # pylint: disable=g-import-not-at-top
  from research.emergence import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  runs, _ = scoring.find_runs(sweep)
  run = next(r for r in runs if r.run_id == 'n100000_s0')
  step, out = max(run.steps), str(tmp_path)
  decoded = resolution_lib.large_cache(run, step, 2, 40, out)
  forced = metrics_lib.teacher_forced_scores(
      decoded['logp_target'], decoded['sum_p2'], decoded['argmax'], decoded['target'],
      decoded['target_mask'])['correct'][:, :3]
  assert 0 < forced.all(1).sum() < 40  # the tiny model solves some 2-digit items, not all
  counts = resolution_lib.answer_counts(run, step, 2, 40, out, chunk=16, log=lambda _: None)
  assert int(counts['done']) == 40 and int(counts['hits']) == forced.all(1).sum()
  np.testing.assert_array_equal(counts['position_correct'], forced.sum(0))
  decoded_hits = metrics_lib.item_metrics(decoded)['exact_match']
  assert abs(int(counts['hits']) - decoded_hits.sum()) <= 1
  # A run stopped after its first chunk of 16 goes on from there: 24 more rows, same counts.
  scored, real = [], cache_lib.answer_correct

  def failing(config, params, tokens, answer_len):
    scored.append(len(tokens))
    if len(scored) == 2:
      raise KeyboardInterrupt
    return real(config, params, tokens, answer_len)

  again = str(tmp_path / 'again')
  monkeypatch.setattr(cache_lib, 'answer_correct', failing)
  with pytest.raises(KeyboardInterrupt):
    resolution_lib.answer_counts(run, step, 2, 40, again, chunk=16, log=lambda _: None)
  scored.clear()
  monkeypatch.setattr(cache_lib, 'answer_correct',
                      lambda *a: scored.append(len(a[2])) or real(*a))
  lines = []
  resumed = resolution_lib.answer_counts(run, step, 2, 40, again, chunk=16, log=lines.append)
  assert scored == [16, 8] and lines[-1].startswith(f'probe: resolution {run.run_id} L=2: 40/40')
  assert {k: np.asarray(resumed[k]).tolist() for k in ('done', 'hits', 'position_correct')} == {
      k: np.asarray(counts[k]).tolist() for k in ('done', 'hits', 'position_correct')}
  # A larger look of the same cell starts from the 40 items counted: 8 more rows, the same
  # counts as 48 counted from scratch. Counts of another step or L are never used (decoys
  # with absurd counts), nor a larger one for a smaller look: 16 items are counted again.
  folder = os.path.join(again, 'cache', run.run_id)
  decoy = {'done': np.int64(44), 'hits': np.int64(10**6),
           'position_correct': np.full(3, 10**6), 'version': np.int32(cache_lib.CACHE_VERSION)}
  cache_lib.save(os.path.join(folder, f'step_{step}0_large44_L2_counts.npz'), decoy)
  cache_lib.save(os.path.join(folder, f'step_{step}_large44_L12_counts.npz'), decoy)
  with open(os.path.join(folder, f'step_{step}_large45_L2_counts.npz'), 'w') as f:
    f.write('garbage')
  scored.clear()
  lines.clear()
  bigger = resolution_lib.answer_counts(run, step, 2, 48, again, chunk=16, log=lines.append)
  assert scored == [8] and any('ignoring unreadable count' in line for line in lines)
  fresh = resolution_lib.answer_counts(run, step, 2, 48, str(tmp_path / 'fresh'), chunk=64,
                               log=lambda _: None)
  assert {k: np.asarray(bigger[k]).tolist() for k in ('done', 'hits', 'position_correct')} == {
      k: np.asarray(fresh[k]).tolist() for k in ('done', 'hits', 'position_correct')}
  scored.clear()
  resolution_lib.answer_counts(run, step, 2, 16, again, chunk=16, log=lambda _: None)
  assert scored == [16]
  monkeypatch.setattr(scoring, 'load_params', lambda *a: pytest.fail('reloaded the model'))
  assert int(resolution_lib.answer_counts(run, step, 2, 40, again)['hits']) == int(counts['hits'])
  assert int(resolution_lib.answer_counts(run, step, 2, 48, again)['hits']) == int(bigger['hits'])


def test_resolution_takes_one_more_look_only_where_it_can_resolve(monkeypatch):
  """A cell not above chance on `large` items gets one more look, on large x 4^k items
  sized from the rate its per-position accuracies predict, only where that fits under the
  cap; the interval after two looks is Bonferroni-adjusted (97.5%)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from research.emergence import sharpness  # pylint: disable=g-import-not-at-top
  rate = {2: 0.05, 3: 2e-3, 4: 1e-3, 5: 2e-5, 8: 1e-7}  # true and predicted exact match
  scored = []

  def large_cache(run, step, length, n, out_dir):
    del run, step, out_dir
    scored.append((length, n, True))
    return {'L': length, 'n': n}

  def answer_counts(run, step, length, n, out_dir, log):
    del run, step, out_dir, log
    scored.append((length, n, False))
    hits = int(n * rate[length])  # position_correct's product predicts twice the rate
    return {'done': n, 'hits': hits, 'position_correct': np.array([2 * hits] + [n] * length)}

  def hits_of(cache):
    return np.arange(cache['n']) < int(cache['n'] * rate[cache['L']])

  def item_metrics(cache):
    if 'n' not in cache:  # the 200-item eval: no hits anywhere
      return {'exact_match': np.zeros(cache['length'].size)}
    assert cache['n'] == 500, 'only the first look decodes'
    return {'exact_match': hits_of(cache)}

  monkeypatch.setattr(resolution_lib, 'large_cache', large_cache)
  monkeypatch.setattr(resolution_lib, 'answer_counts', answer_counts)
  monkeypatch.setattr(resolution_lib.metrics_lib, 'item_metrics', item_metrics)
  monkeypatch.setattr(resolution_lib, 'all_argmax_correct', hits_of)
  monkeypatch.setattr(tables, 'position_accuracy_product', lambda cache, L: rate[L])
  lengths = np.repeat(list(rate), 200)
  caches = {'r': {7: {'task': np.full(lengths.size, 'add'), 'length': lengths}}}
  run = scoring.Run('r', '', {'n_params': 1}, [7])
  rows = resolution_lib.resolution([run], caches, '', small=200, large=500, max_large=32000,
                          log=lambda _: None).set_index('L')
  # Sized for a 90% chance at the 97.5% level: L=2 is above chance at once; L=3 (needs
  # ~18,000 items) gets one more look on 32,000, L=4 (~6,700) on 8,000; L=5 (~1.8e6) and
  # L=8 (~7e7) are out of reach: no second look.
  assert scored == [(2, 500, True), (3, 500, True), (3, 32000, False), (4, 500, True),
                    (4, 8000, False), (5, 500, True), (8, 500, True)]
  assert list(rows['large_n']) == [500, 32000, 8000, 500, 500]
  assert list(rows['large_hits']) == [25, 64, 8, 0, 0]
  assert list(rows['looks']) == [1, 2, 2, 1, 1] and (rows['identity'] == 1.0).all()
  for length, row in rows.iterrows():
    low, high = sharpness.clopper_pearson(row['large_hits'], row['large_n'],
                                          alpha=0.05 / row['looks'])
    assert (row['ci_low'], row['ci_high']) == pytest.approx((float(low), float(high)))
    assert row['above_chance'] == (low > 10.0**-length)
    # after a second look, the rate its counts predict (twice the first look's here)
    predicted = rate[length] * row['looks']
    assert row['predicted'] == pytest.approx(predicted)
    assert row['items_needed'] == resolution_lib.items_to_resolve(predicted, 10.0**-length,
                                                         alpha=0.025, power=0.9)
  assert list(rows['above_chance']) == [True, True, True, False, False]
  assert 1e6 < rows.loc[5, 'items_needed'] < 3e6 and rows.loc[8, 'items_needed'] > 3e7
  assert resolution_lib.items_to_resolve(1e-8, 1e-8) == float('inf')
  # The rule against a simulation: at the n it gives, about `power` of the draws resolve.
  rng = np.random.default_rng(0)
  for power in (0.5, 0.9):
    n = int(resolution_lib.items_to_resolve(1e-3, 1e-4, alpha=0.025, power=power))
    low, _ = sharpness.clopper_pearson(rng.binomial(n, 1e-3, size=4000), n, alpha=0.025)
    assert abs(np.mean(low > 1e-4) - power) < 0.05
    smaller = int(n * 0.8)
    low, _ = sharpness.clopper_pearson(rng.binomial(smaller, 1e-3, size=4000), smaller,
                                       alpha=0.025)
    assert np.mean(low > 1e-4) < power
  checks = {'resolution': {'zero_cells': 5, 'above_chance': 3, 'small_n': 200,
                           'max_large_n': 8000, 'out_of_reach': 2}}
  line = checks_lib.describe({'onset': [], 'product': dict(
      spearman=1.0, cells=3, min_hits=10, holds=True), **checks})[-1]
  assert line.startswith('resolution: 3 of 5 cells') and line.endswith('2 would need more than that')


def _check_inputs(em_diff, em_high, em_ok=(0.0, 0.3, 0.9), product=(0.0, 0.31, 0.88)):
  """A sharpness table for L = 4 (L = 5..8 absent: fewer than 3 sizes) and an emergence table
  of three cells whose exact match is `em_ok` against products `product`."""
  sharp = pd.DataFrame([
      dict(task='add', L=4, metric='exact_match', onset_index=0.2, diff_vs_ted=em_diff,
           diff_low=em_diff - 0.1, diff_high=em_high),
      dict(task='add', L=4, metric='one_minus_ted_over_L', onset_index=0.6,
           diff_vs_ted=float('nan'), diff_low=float('nan'), diff_high=float('nan'))])
  rows = []
  for i, (em, pr) in enumerate(zip(em_ok, product)):
    cell = dict(run_id=f'r{i}', step=100, task='add', L=4)
    rows += [dict(cell, metric='exact_match', value=em, successes=int(200 * em)),
             dict(cell, metric='product_position_accuracy', value=pr, successes=float('nan'))]
  return pd.DataFrame(rows), sharp


def test_checks_read_the_bootstrap_interval_and_the_rank_correlation():
  table, sharp = _check_inputs(-0.4, -0.1, em_ok=(0.1, 0.3, 0.9, 0.5),
                                    product=(0.12, 0.31, 0.88, 0.45))
  checks = checks_lib.check(table, sharp)
  first = checks['onset'][0]
  assert first['L'] == 4 and first['holds'] and first['onset_one_minus_ted'] == 0.6
  assert not any(o['holds'] for o in checks['onset'][1:])
  assert checks['onset'][1]['why'].startswith('fewer than 3 model sizes')
  assert checks['product']['cells'] == 4 and checks['product']['spearman'] == pytest.approx(1.0)
  assert checks['product']['holds']
  # an interval that reaches 0, and a product that ranks the cells the other way round
  table, sharp = _check_inputs(-0.4, 0.05, em_ok=(0.1, 0.3, 0.9),
                                    product=(0.9, 0.5, 0.1))
  checks = checks_lib.check(table, sharp)
  assert not checks['onset'][0]['holds']
  assert checks['product']['spearman'] == pytest.approx(-1.0) and not checks['product']['holds']
  # cells under min_hits do not count: 0.0 has no hits
  table, sharp = _check_inputs(-0.4, -0.1)
  assert checks_lib.check(table, sharp)['product']['cells'] == 2
  assert any('does not hold' in line for line in checks_lib.describe(checks))


def test_checks_name_the_flat_curve_when_the_onset_is_undefined():
  # No size has an exact match at L = 4 (0 at both ends) while 1 - TED/L rises.
  table, sharp = _check_inputs(float('nan'), float('nan'))
  sharp.loc[sharp['metric'] == 'exact_match', 'onset_index'] = float('nan')
  why = checks_lib.check(table, sharp)['onset'][0]['why']
  assert why == ('exact_match is the same at the smallest and the largest size: '
                 'onset index undefined')
  # Every size solves it: both curves are 1 at both ends.
  sharp['onset_index'] = float('nan')
  why = checks_lib.check(table, sharp)['onset'][0]['why']
  assert why.startswith('exact_match and one_minus_ted_over_L are the same at')


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
  cap = subprocess.run([sys.executable, script, f'--sweep_dir={sweep}', f'--out={tmp_path}',
                        '--large_n_per_length=400', '--max_large_n_per_length=300'],
                       capture_output=True, text=True, timeout=120)
  assert cap.returncode == 2
  assert 'must exceed --large_n_per_length' in cap.stderr.strip().splitlines()[-1]
