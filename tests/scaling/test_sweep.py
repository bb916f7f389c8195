"""Sweep planning and results.csv aggregation, without training anything."""
import csv
import glob
import io
import json
import os

import gin
import pytest

from research import models
from research import sweeps
from research.scaling import results


def _config(**overrides):
  base = dict(
      sizes=sweeps.depth_width_sizes(depths=(1, 2), widths=(16, 32), head_dim=16),
      flop_budgets=(6e8, 1.2e9), run_gin_files=('gin_configs/runs/tiny.gin',),
      run_bindings=('BATCH_SIZE = 4', "TASK_FEATURE_LENGTHS = {'targets': 64}"),
      min_steps=10)
  base.update(overrides)
  return sweeps.SweepConfig(**base)


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  gin.clear_config()


def test_isoflop_points_spend_their_budget():
  points, skipped = sweeps.plan(_config())
  assert skipped == []
  assert len(points) == 4
  for p in points:
    tokens_per_step = 4 * 64
    assert p.tokens == p.train_steps * tokens_per_step
    # D = C / FLOPs-per-token, rounded to whole steps.
    spent = p.flops_per_token * p.tokens
    assert abs(spent - p.flop_budget) <= p.flops_per_token * tokens_per_step / 2 + 1
    config = models.TransformerConfig(vocab_size=384, max_length=128, d_model=16 if
                                      'd16' in p.size else 32, num_layers=1 if 'L1' in
                                      p.size else 2, num_heads=1 if 'd16' in p.size else 2,
                                      d_ff=64 if 'd16' in p.size else 128)
    assert p.n_params == models.count_params(config)['total']
    assert p.flops_per_token == pytest.approx(models.flops_per_token(config, 64)['6N'])
    assert f'TRAIN_STEPS = {p.train_steps}' in p.bindings
    assert "trainer.train.objective = 'causal_lm'" in p.bindings
    assert 'trainer.train.seed = 0' in p.bindings


def test_run_ids_are_deterministic_and_readable():
  first, _ = sweeps.plan(_config(seeds=(0, 1)))
  second, _ = sweeps.plan(_config(seeds=(0, 1)))
  assert [p.run_id for p in first] == [p.run_id for p in second]
  assert len({p.run_id for p in first}) == 8
  assert 'C6e8-L1d16-decoder-causal_lm-s1' in {p.run_id for p in first}
  assert sweeps.make_run_id('L2d64', 'decoder', 'prefix_lm', 3, flop_budget=3e17) == (
      'C3e17-L2d64-decoder-prefix_lm-s3')
  assert sweeps.make_run_id('x', 'decoder', 'causal_lm', 0, token_budget=2.5e6) == (
      'D2.5e6-x-decoder-causal_lm-s0')


def test_token_budgets_train_every_size_on_the_same_tokens():
  points, _ = sweeps.plan(_config(flop_budgets=(), token_budgets=(2560,)))
  assert {p.train_steps for p in points} == {10}
  assert {p.token_budget for p in points} == {2560.0}
  assert all(p.flop_budget is None for p in points)


def test_points_too_large_for_a_budget_or_misconfigured_are_left_out_with_a_reason():
  sizes = dict(sweeps.depth_width_sizes(depths=(1, 2), widths=(16, 32), head_dim=16))
  sizes['odd'] = {'TransformerConfig.d_model': 30, 'TransformerConfig.num_heads': 4}
  points, skipped = sweeps.plan(_config(sizes=sizes, flop_budgets=(6e8,),
                                       objectives=('causal_lm', 'no_such_objective')))
  reasons = dict(skipped)
  assert [p.run_id for p in points] == ['C6e8-L1d16-decoder-causal_lm-s0',
                                        'C6e8-L2d32-decoder-causal_lm-s0']
  assert 'no gin file' in reasons['C6e8-L1d16-decoder-no_such_objective-s0']
  assert 'does not divide' in reasons['C6e8-odd-decoder-causal_lm-s0']
  _, skipped = sweeps.plan(_config(min_steps=20, flop_budgets=(6e8,)))
  assert 'min_steps=20' in dict(skipped)['C6e8-L2d32-decoder-causal_lm-s0']


def test_bad_grids_fail_with_one_clear_message():
  with pytest.raises(sweeps.SweepError, match='exactly one of'):
    sweeps.plan(_config(token_budgets=(1e6,)))
  with pytest.raises(sweeps.SweepError, match='not a multiple of head_dim'):
    sweeps.depth_width_sizes(depths=(1,), widths=(40,), head_dim=32)
  with pytest.raises(sweeps.SweepError, match='2 depths but 1 per_size entries'):
    sweeps.depth_width_sizes(depths=(1, 2), per_size=[{}])
  with pytest.raises(sweeps.SweepError, match='the grid is empty'):
    sweeps.plan(_config(seeds=()))
  with pytest.raises(sweeps.SweepError, match='unknown executor'):
    sweeps.make_executor('kubernetes', '/tmp')
  # A bad run binding leaves out every point: that is an error, not an empty sweep.
  with pytest.raises(sweeps.SweepError, match=r"no point of the grid can run \(4 left out\).*"
                                             "No configurable matching 'no_such_fn'"):
    sweeps.plan(_config(run_bindings=('no_such_fn.x = 1',)))


@pytest.mark.parametrize('budgets', [dict(flop_budgets=(-1,)), dict(token_budgets=(0,)),
                                     dict(flop_budgets=(6e8, float('nan')))])
def test_a_budget_of_zero_or_less_is_refused_where_the_grid_is_defined(budgets):
  # Once planned as 1-step runs and reported as 'model too large for it'.
  name = next(iter(budgets))
  with pytest.raises(sweeps.SweepError, match=f'SweepConfig.{name} must be positive, got'):
    _config(**dict(dict(flop_budgets=(), token_budgets=()), **budgets))


def test_a_batch_size_of_zero_is_a_bad_configuration_of_every_point():
  with pytest.raises(sweeps.SweepError, match=r'no point of the grid can run \(4 left out\).*'
                                              'BATCH_SIZE must be positive, got 0'):
    sweeps.plan(_config(run_bindings=_config().run_bindings + ('BATCH_SIZE = 0',)))


def test_a_mesh_that_does_not_fit_the_devices_is_left_out_and_counted_once():
  asked = []

  def count(n):
    def device_count():
      asked.append(n)
      return n
    return device_count

  # The default mesh fits any device count: nobody asks for one.
  points, _ = sweeps.plan(_config(), device_count=count(1))
  assert len(points) == 4 and asked == []
  # A fixed axis is checked against the count, asked for once for the whole grid.
  sizes = dict(sweeps.depth_width_sizes(depths=(1, 2), widths=(16, 32), head_dim=16))
  sizes['L2d32'] = dict(sizes['L2d32'], **{'MeshConfig.tensor': 4})
  points, skipped = sweeps.plan(_config(sizes=sizes), device_count=count(2))
  assert [p.size for p in points] == ['L1d16', 'L1d16']
  assert asked == [2]
  assert dict(skipped)['C6e8-L2d32-decoder-causal_lm-s0'] == (
      'bad configuration: mesh (data=-1, fsdp=1, tensor=4) does not fit 2 devices: '
      '2 is not divisible by 4')
  with pytest.raises(sweeps.SweepError, match=r'no point of the grid can run \(4 left out\).*'
                                             r'mesh \(data=3, fsdp=1, tensor=1\) needs 3 '
                                             'devices but 1 are available'):
    sweeps.plan(_config(run_bindings=_config().run_bindings + ('MeshConfig.data = 3',)),
               device_count=count(1))
  with pytest.raises(sweeps.SweepError, match='num_devices=4 but 2 devices are available'):
    sweeps.plan(_config(run_bindings=('MeshConfig.num_devices = 4',)
                       + _config().run_bindings), device_count=count(2))
  # Wrongly typed axes are a configuration error of every point, not a traceback, and
  # fsdp = 1.0 or True is not mistaken for the default mesh.
  for binding, reason in (("MeshConfig.num_devices = '2'", "must be an integer, got '2'"),
                          ('MeshConfig.fsdp = 1.0', 'axis sizes must be integers'),
                          ('MeshConfig.fsdp = True', 'axis sizes must be integers')):
    with pytest.raises(sweeps.SweepError, match=r'no point of the grid can run .*' + reason):
      sweeps.plan(_config(run_bindings=(binding,) + _config().run_bindings),
                 device_count=count(2))
  # A count that fails is asked for once, and every point says why.
  calls = []

  def broken():
    calls.append(1)
    raise sweeps.SweepError('cannot count the devices a run would see: boom')
  with pytest.raises(sweeps.SweepError, match='the first: .*cannot count the devices .*: boom'):
    sweeps.plan(_config(run_bindings=_config().run_bindings + ('MeshConfig.data = 3',)),
               device_count=broken)
  assert calls == [1]
  # Without a count (a cluster executor) the mesh is the trainer's to check.
  points, _ = sweeps.plan(_config(run_bindings=_config().run_bindings
                                 + ('MeshConfig.data = 3',)))
  assert len(points) == 4


def test_depth_width_rule_keeps_the_aspect_ratio():
  sizes = sweeps.depth_width_sizes(depths=(1, 2, 4), width_per_layer=64, head_dim=32)
  assert list(sizes) == ['L1d64', 'L2d128', 'L4d256']
  for params in sizes.values():
    d, depth = params['TransformerConfig.d_model'], params['TransformerConfig.num_layers']
    assert d / depth == 64
    assert params['TransformerConfig.num_heads'] * 32 == d
    assert params['TransformerConfig.d_ff'] == 4 * d


def test_a_size_can_carry_its_own_learning_rate_over_the_run_bindings():
  sizes = sweeps.depth_width_sizes(depths=(1,), widths=(16,), head_dim=16,
                                  per_size=[{'make_schedule.peak': 1e-2}])
  assert sizes['L1d16']['TransformerConfig.d_model'] == 16
  config = _config(sizes=sizes, flop_budgets=(), token_budgets=(2560,),
                   run_bindings=('BATCH_SIZE = 4', "TASK_FEATURE_LENGTHS = {'targets': 64}",
                                 'make_schedule.peak = 3e-3'))
  (point,), _ = sweeps.plan(config)
  cmd = sweeps.command(config, point, '/sweeps/x/' + point.run_id)
  peaks = [c for c in cmd if c.startswith('--gin_bindings=make_schedule.peak')]
  # gin keeps the last binding of a parameter: the size's own wins.
  assert peaks == ['--gin_bindings=make_schedule.peak = 3e-3',
                   '--gin_bindings=make_schedule.peak = 0.01']
  from research.train import schedules  # pylint: disable=unused-import  (registers it)
  gin.parse_config([c[len('--gin_bindings='):] for c in peaks])
  assert gin.query_parameter('make_schedule.peak') == 0.01


def test_command_runs_the_training_module_in_the_run_directory():
  config = _config()
  point = sweeps.plan(config)[0][0]
  cmd = sweeps.command(config, point, '/sweeps/x/' + point.run_id)
  assert cmd[1:3] == ['-m', 'research.train']  # an installed package, no checkout needed
  assert not any('experiments' in c for c in cmd)
  assert cmd[-1] == f'--workdir=/sweeps/x/{point.run_id}'
  # The runs of a sweep share one compilation cache in the sweep directory.
  assert '--compilation_cache_dir=/sweeps/x/.jax_cache' in cmd
  assert any(c.endswith('gin_configs/objectives/causal_lm.gin') for c in cmd)
  assert f'--gin_bindings=TRAIN_STEPS = {point.train_steps}' in cmd


def test_a_run_directory_of_another_configuration_is_refused(tmp_path):
  config = _config()
  point = sweeps.plan(config)[0][0]
  run = sweeps.launch._Run(point, str(tmp_path))
  (tmp_path / sweeps.POINT_FILE).write_text(json.dumps({'bindings': ['TRAIN_STEPS = 1']}))
  with pytest.raises(sweeps.SweepError, match='different configuration'):
    sweeps.launch._check_point_file(run)


def test_a_sweep_of_finished_runs_starts_none_and_prints_its_plan_notes(tmp_path):
  config = _config(min_steps=30)
  points, skipped = sweeps.plan(config)
  for p in points:
    (tmp_path / p.run_id).mkdir()
    (tmp_path / p.run_id / sweeps.COMPLETION_MARKER).write_text('')
  out = io.StringIO()
  summary = sweeps.run_sweep(config, str(tmp_path), stream=out)
  assert sorted(summary['done']) == sorted(p.run_id for p in points)
  assert not summary['failed'] and not summary['pending']
  assert not os.path.exists(tmp_path / sweeps.EVENTS_FILE)  # nothing was launched
  lines = out.getvalue().splitlines()
  assert lines[0].startswith(f'sweep: 2 runs in {tmp_path} (2 already done, 2 grid points '
                             'left out)')
  notes = sweeps.plan_notes(points, skipped)
  assert [n.split(':')[0] for n in notes] == [
      'left out C6e8-L2d32-decoder-causal_lm-s0', 'left out C1.2e9-L2d32-decoder-causal_lm-s0',
      'warning', 'warning']
  assert lines[1:5] == ['  ' + n for n in notes]


def test_eta_model_is_linear_in_flops():
  eta = sweeps.EtaModel()
  assert eta.predict(1.0) is None
  eta.add(1e9, 12.0)
  assert eta.predict(2e9) == pytest.approx(12.0)  # one cost seen: the same time per run
  eta.add(1.01e9, 30.0)  # the same budget again: still no trend to extrapolate
  assert eta.predict(1e8) == pytest.approx(21.0)
  eta.samples.pop()
  eta.add(3e9, 16.0)  # 10 s overhead + 2 s per GFLOP
  assert eta.predict(5e9) == pytest.approx(20.0)


# ------------------------------------------------------------------------------------------
# results.csv

def _fake_run(root, run_id, steps=30, eval_every=10, marker=True, nan_at=None, torn=False):
  run_dir = root / run_id
  run_dir.mkdir()
  info = {'family': 'decoder', 'objective': 'causal_lm', 'seed': 0, 'n_params': 1000,
          'n_params_nonembed': 600, 'n_params_embedding': 400, 'train_steps': steps,
          'batch_size': 4, 'feature_lengths': {'targets': 64},
          'architecture': {'d_model': 16, 'num_layers': 1, 'num_heads': 1, 'd_ff': 64,
                           'vocab_size': 384}}
  (run_dir / 'run_info.json').write_text(json.dumps(info))
  lines = []
  for step in range(5, steps + 1, 5):
    row = {'step': step, 'train_loss': 5.0 - step / 100, 'tokens': step * 256,
           'flops': 6000.0 * step * 256, 'learning_rate': 1e-3}
    row.update({f'flops_{c}': 1.0 * step for c in results.FLOP_CONVENTIONS})
    if step % eval_every == 0:
      row['eval_loss'] = 'nan' if step == nan_at else 5.1 - step / 100
    lines.append(json.dumps(row) + '\n')
  text = ''.join(lines)
  (run_dir / 'metrics.jsonl').write_text(text + ('{"step": 99, "tra' if torn else ''))
  if marker:
    (run_dir / results.COMPLETION_MARKER).write_text('{}')
  return run_dir


def test_results_have_one_row_per_eval_step_with_every_convention(tmp_path):
  _fake_run(tmp_path, 'C1e9-a-decoder-causal_lm-s0')
  plan = {'points': [{'run_id': 'C1e9-a-decoder-causal_lm-s0', 'size': 'a',
                      'flop_budget': 1e9, 'token_budget': None}]}
  (tmp_path / results.PLAN_FILE).write_text(json.dumps(plan))
  path, report = results.write_results(str(tmp_path))
  assert report.excluded == {}
  with open(path) as f:
    rows = list(csv.DictReader(f))
  assert [int(r['step']) for r in rows] == [10, 20, 30]
  assert [r['final'] for r in rows] == ['False', 'False', 'True']
  required = ('run_id', 'family', 'objective', 'n_params', 'n_params_nonembed', 'tokens',
              'flops', 'step', 'train_loss', 'eval_loss', 'flops_6N', 'flops_kaplan',
              'flops_chinchilla', 'flops_6N_nonembed', 'flop_budget')
  for column in required:
    assert all(r[column] != '' for r in rows), column
  assert rows[0]['flop_budget'] == '1000000000.0' and rows[0]['size'] == 'a'
  assert float(rows[-1]['eval_loss']) == pytest.approx(4.8)
  assert [p for p in os.listdir(tmp_path) if p.startswith('.tmp')] == []
  assert list(results.load(path).columns) == list(results.COLUMNS)


def test_unfinished_and_corrupt_runs_are_reported_and_left_out(tmp_path):
  _fake_run(tmp_path, 'good')
  _fake_run(tmp_path, 'unfinished', marker=False)
  _fake_run(tmp_path, 'torn', torn=True)
  _fake_run(tmp_path, 'diverged', nan_at=20)
  _fake_run(tmp_path, 'no_evals', eval_every=1000)
  _fake_run(tmp_path, 'short', steps=30).joinpath('run_info.json').write_text(
      json.dumps({'train_steps': 50}))
  report = results.collect(str(tmp_path))
  assert report.runs == ['good']
  assert {r['run_id'] for r in report.rows} == {'good'}
  assert report.excluded['unfinished'].startswith('unfinished')
  assert 'torn' in report.excluded['torn']
  assert 'non-finite eval_loss at step(s) [20]' in report.excluded['diverged']
  assert 'no eval steps' in report.excluded['no_evals']
  assert 'ends at step 30' in report.excluded['short']
  assert '5 left out' in report.lines()[0]


def test_a_planned_run_that_never_started_is_reported(tmp_path):
  (tmp_path / results.PLAN_FILE).write_text(json.dumps({'points': [{'run_id': 'later'}]}))
  report = results.collect(str(tmp_path))
  assert report.excluded == {'later': 'never started'} and report.rows == []


SWEEP_GINS = sorted(os.path.basename(p) for p in glob.glob(
    os.path.join(os.path.dirname(__file__), '..', '..', 'gin_configs', 'sweeps', '*.gin'))
    if os.path.basename(p) != 'pipeline_imports.gin')  # imports for run configs, not a sweep


@pytest.mark.parametrize('name', SWEEP_GINS)
def test_every_sweep_config_plans_without_a_bad_point(name):
  repo = os.path.join(os.path.dirname(__file__), '..', '..')
  gin.clear_config()
  gin.add_config_file_search_path(repo)
  gin.parse_config_files_and_bindings([os.path.join(repo, 'gin_configs', 'sweeps', name)], [],
                                      finalize_config=False)
  points, skipped = sweeps.plan(sweeps.SweepConfig())
  assert points
  assert not [why for _, why in skipped if why.startswith('bad configuration')], skipped
  if name == 'emergence_cpu_graded.gin':  # the ladder's init per size reaches its runs
    init = {p.size: [b for b in p.bindings if b.startswith('TransformerConfig.init_std')]
            for p in points}
    assert init == {'L1d32': ['TransformerConfig.init_std = 0.1'],
                    'L1d56': ['TransformerConfig.init_std = 0.1'],
                    'L2d64': ['TransformerConfig.init_std = 0.02'],
                    'L3d96': ['TransformerConfig.init_std = 0.02']}


def test_budgets_whose_sizes_sit_on_one_side_of_the_optimum_are_named_at_plan_time():
  # 20 tokens per parameter puts N_opt at sqrt(C / 120): 2.2e3 at 6e8 and 3.2e3 at 1.2e9,
  # below every size of this grid; 2.9e4 at 1e11, among them.
  points, _ = sweeps.plan(_config())
  sizes = sorted({p.n_params for p in points})
  assert sizes[0] > 3.2e3 and sizes[0] < 2.9e4 < sizes[-1]
  lines = sweeps.frontier_warnings(points)
  assert len(lines) == 2
  assert lines[0].startswith('budget 6e+08 FLOPs') and 'below the smallest' in lines[0]
  assert lines[1].startswith('budget 1.2e+09 FLOPs')
  points, _ = sweeps.plan(_config(flop_budgets=(1.2e9, 1e11)))
  assert [l.split(' FLOPs')[0] for l in sweeps.frontier_warnings(points)] == [
      'budget 1.2e+09']


def test_learning_rate_rule_binds_a_peak_per_size():
  rule = sweeps.PowerLawLR(peak=1e-2, reference_params=1e4, exponent=0.5)
  points, _ = sweeps.plan(_config(learning_rate=rule))
  peaks = {}
  for p in points:
    bound = [b for b in p.bindings if b.startswith('make_schedule.peak')]
    assert len(bound) == 1
    peaks[p.n_params] = float(bound[0].split('=')[1])
  assert len(peaks) == 2
  for n, peak in peaks.items():
    assert peak == pytest.approx(1e-2 * (n / 1e4) ** -0.5, rel=1e-3)
  # The rule comes after run_bindings, so it is what the trainer reads.
  cmd = sweeps.command(_config(learning_rate=rule), points[0], '/tmp/x')
  flags = [c for c in cmd if 'make_schedule.peak' in c]
  assert flags[-1].endswith(f'{rule(points[0].n_params):.4g}')


def test_learning_rate_rule_from_gin():
  gin.parse_config(['import research.sweeps',
                    'sweep.power_law_lr.peak = 3e-3',
                    'sweep.power_law_lr.exponent = 0.25'])
  rule = gin.get_configurable('sweep.power_law_lr')()
  assert rule(1e4) == pytest.approx(3e-3)
  assert rule(16e4) == pytest.approx(1.5e-3)
  with pytest.raises(sweeps.SweepError, match='peak must be positive'):
    sweeps.PowerLawLR(peak=0.0)


def test_tokens_per_param_window_leaves_out_and_names_points():
  points, skipped = sweeps.plan(_config())
  ratios = {p.run_id: p.tokens / p.n_params for p in points}
  low = sorted(ratios.values())[1] * 0.999  # keeps all but the lowest ratio
  kept, left_out = sweeps.plan(_config(tokens_per_param=(low, 1e9)))
  assert len(kept) == len(points) - 1
  (run_id, why), = left_out
  assert ratios[run_id] < low
  assert 'outside tokens_per_param' in why
  assert any(run_id in line for line in sweeps.plan_notes(kept, left_out))


@pytest.mark.parametrize('window', [(10.0,), (100.0, 10.0), (0.0, 10.0)])
def test_bad_tokens_per_param_window_is_refused(window):
  with pytest.raises(sweeps.SweepError, match='tokens_per_param'):
    _config(tokens_per_param=window)


def test_fixed_warmup_replaces_the_fraction():
  scaled, _ = sweeps.plan(_config(warmup_fraction=0.1))
  fixed, _ = sweeps.plan(_config(warmup_steps=7))
  warm = lambda p: [b for b in p.bindings if b.startswith('make_schedule.warmup_steps')]
  assert {tuple(warm(p)) for p in fixed} == {('make_schedule.warmup_steps = 7',)}
  assert [warm(p) for p in scaled] == [
      [f'make_schedule.warmup_steps = {max(1, int(0.1 * p.train_steps))}'] for p in scaled]
  with pytest.raises(sweeps.SweepError, match='warmup_steps'):
    _config(warmup_steps=-1)


def test_widths_below_head_dim_are_one_head():
  sizes = sweeps.depth_width_sizes(depths=(1, 1), widths=(4, 16), head_dim=8)
  assert sizes['L1d4']['TransformerConfig.num_heads'] == 1
  assert sizes['L1d16']['TransformerConfig.num_heads'] == 2
  with pytest.raises(sweeps.SweepError, match='multiple of head_dim'):
    sweeps.depth_width_sizes(depths=(1,), widths=(12,), head_dim=8)


def test_packing_starts_each_run_when_a_slot_frees():
  assert sweeps.packed_wall([5, 3, 3, 1], 2) == 6      # 5 | 3+3; the 1 after the 5
  assert sweeps.packed_wall([5, 3, 3, 1], 1) == 12
  assert sweeps.packed_wall([4], 8) == 4


def test_plan_only_estimates_each_point_and_the_sweep_from_a_throughput(tmp_path):
  import subprocess
  import sys
  cmd = [sys.executable, '-m', 'research.sweeps', '--gin_file=gin_configs/sweeps/ci.gin',
         '--plan_only', '--flops_per_second=1e8', '--startup_seconds=5', '--parallel=2']
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  config, _ = sweeps.load_config(['gin_configs/sweeps/ci.gin'], [])
  points, _ = sweeps.plan(config)
  seconds = {p.run_id: 5 + p.flops_per_token * p.tokens / 1e8 for p in points}
  for p in points:
    line = next(l for l in proc.stdout.splitlines() if l.startswith(p.run_id))
    assert line.endswith(f'~{seconds[p.run_id]:.0f} s')
  wall = sweeps.packed_wall([seconds[p.run_id] for p in sweeps.launch_order(points)], 2)
  assert (f'{sum(seconds.values()) / 60:.1f} min of runs, {wall / 60:.1f} min wall at '
          '--parallel=2') in proc.stdout
  bad = subprocess.run(cmd[:4] + ['--flops_per_second=-1'], capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
