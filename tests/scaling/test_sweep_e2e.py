"""experiments/sweep.py (research/sweeps/main.py) end to end on tiny grids: failure
isolation, kill + re-launch, submitit.

Each run is a real `python -m research.train` process of ~400 steps; start-up dominates its
time.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Two tiny sizes on a token budget of 400 steps (2 x 32 tokens a step): long enough that
# the kill test catches the second run in flight on an idle machine.
GRID = """
include 'gin_configs/sweeps/ci.gin'
sweep.SweepConfig.flop_budgets = []
sweep.SweepConfig.token_budgets = [25600]
sweep.SweepConfig.evals_per_run = 2
sweep.SweepConfig.checkpoints_per_run = 2
sweep.SweepConfig.run_bindings = [
    'BATCH_SIZE = 2',
    "TASK_FEATURE_LENGTHS = {'targets': 32}",
    'trainer.train.eval_batches = 1',
]
sweep.SweepConfig.sizes = {
    'a': {'TransformerConfig.num_layers': 1, 'TransformerConfig.d_model': 16,
          'TransformerConfig.num_heads': 1, 'TransformerConfig.d_ff': 32},
    'b': {'TransformerConfig.num_layers': 1, 'TransformerConfig.d_model': 32,
          'TransformerConfig.num_heads': 2, 'TransformerConfig.d_ff': 64%s},
}
"""
RUN_A = 'D2.56e4-a-decoder-causal_lm-s0'
RUN_B = 'D2.56e4-b-decoder-causal_lm-s0'


def _gin(tmp_path, extra_b=''):
  path = tmp_path / 'grid.gin'
  path.write_text(GRID % extra_b)
  return str(path)


def _sweep_cmd(gin_file, sweep_dir, *flags):
  return [sys.executable, os.path.join(REPO, 'experiments', 'sweep.py'),
          f'--gin_file={gin_file}', f'--sweep_dir={sweep_dir}', '--report_every=5', *flags]


def _events(sweep_dir):
  with open(os.path.join(sweep_dir, 'sweep_events.jsonl')) as f:
    return [json.loads(line) for line in f]


def _launches(sweep_dir, run_id):
  return sum(e['event'] == 'launch' and e['run_id'] == run_id for e in _events(sweep_dir))


def _done(sweep_dir, run_id):
  return os.path.exists(os.path.join(sweep_dir, run_id, 'COMPLETED'))


def _result_runs(sweep_dir):
  with open(os.path.join(sweep_dir, 'results.csv')) as f:
    return {row['run_id'] for row in csv.DictReader(f)}


def test_a_crashing_run_is_reported_and_the_others_complete(tmp_path):
  """Through submitit's LocalExecutor, the slurm executor's code path (the local executor
  is exercised by the kill + re-launch test; failures are handled by the same loop)."""
  import submitit  # noqa: F401  (installed with the package: a broken install fails here)
  sweep_dir = str(tmp_path / 'sweep')
  # Valid gin, but the trainer rejects it at start-up: this run crashes, 'a' must not care.
  gin_file = _gin(tmp_path, extra_b=", 'make_schedule.name': 'no_such_schedule'")
  proc = subprocess.run(
      _sweep_cmd(gin_file, sweep_dir, '--parallel=2', '--executor=submitit_local'),
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert _done(sweep_dir, RUN_A) and not _done(sweep_dir, RUN_B)
  error = open(os.path.join(sweep_dir, RUN_B, 'error.txt')).read()
  assert "unknown schedule 'no_such_schedule'" in error.splitlines()[0]
  assert f'FAILED  {RUN_B}' in proc.stdout
  assert "unknown schedule 'no_such_schedule'" in proc.stdout.split('run(s) failed')[1]
  assert '1/2 done, 0 running, 1 failed, 0 pending' in proc.stdout
  status = json.load(open(os.path.join(sweep_dir, 'sweep_status.json')))
  assert status[RUN_B]['state'] == 'failed' and status[RUN_A]['state'] == 'done'
  # results.csv holds the finished run and says why the other is missing.
  assert _result_runs(sweep_dir) == {RUN_A}
  assert f'{RUN_B}: unfinished' in proc.stdout
  assert os.path.isdir(os.path.join(sweep_dir, '_submitit'))


def test_killed_sweep_relaunch_finishes_without_rerunning_completed_runs(tmp_path):
  sweep_dir = str(tmp_path / 'sweep')
  gin_file = _gin(tmp_path)
  cmd = _sweep_cmd(gin_file, sweep_dir, '--parallel=1')
  first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    # Wait until one run has finished and the next is in flight, then kill the sweep hard.
    deadline = time.time() + 420
    while time.time() < deadline and first.poll() is None:
      done = [r for r in (RUN_A, RUN_B) if _done(sweep_dir, r)]
      if len(done) == 1:
        second = RUN_B if done == [RUN_A] else RUN_A
        # Its trainer is in the loop (metrics written), so SIGTERM makes it checkpoint.
        if os.path.exists(os.path.join(sweep_dir, second, 'metrics.jsonl')):
          break
      time.sleep(0.2)
    assert first.poll() is None, 'the sweep ended before it could be killed'
    first.send_signal(signal.SIGKILL)
    first.wait()
  finally:
    if first.poll() is None:
      first.kill()
  finished = [r for r in (RUN_A, RUN_B) if _done(sweep_dir, r)]
  assert len(finished) >= 1
  marker_times = {r: os.stat(os.path.join(sweep_dir, r, 'COMPLETED')).st_mtime_ns
                  for r in finished}

  # The orphaned trainer got SIGTERM (checkpoint + exit); the re-launch waits for its lock.
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert _done(sweep_dir, RUN_A) and _done(sweep_dir, RUN_B)
  for run_id, mtime in marker_times.items():
    assert os.stat(os.path.join(sweep_dir, run_id, 'COMPLETED')).st_mtime_ns == mtime
    assert _launches(sweep_dir, run_id) == 1, run_id
  assert f'{len(finished)} already done' in proc.stdout
  assert _result_runs(sweep_dir) == {RUN_A, RUN_B}
  # Each run's history reads as one uninterrupted run (the trainer resumed, not restarted).
  for run_id in (RUN_A, RUN_B):
    with open(os.path.join(sweep_dir, run_id, 'metrics.jsonl')) as f:
      steps = [json.loads(line)['step'] for line in f]
    assert steps == sorted(set(steps)) and steps[-1] == 400

  # A third launch has nothing to do.
  launches = len([e for e in _events(sweep_dir) if e['event'] == 'launch'])
  again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and '2 already done' in again.stdout
  assert len([e for e in _events(sweep_dir) if e['event'] == 'launch']) == launches


def test_ci_quickstart_end_to_end(tmp_path):
  """gin_configs/sweeps/ci.gin: the quickstart's IsoFLOP sweep at CI size, then the fit."""
  sweep_dir = str(tmp_path / 'quickstart')
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'sweep.py'),
       '--gin_file=gin_configs/sweeps/ci.gin', f'--sweep_dir={sweep_dir}', '--parallel=2',
       '--fit'], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with open(os.path.join(sweep_dir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert {float(r['flop_budget']) for r in rows} == {6e8, 1.2e9}
  assert len({r['run_id'] for r in rows}) == 6
  assert all(float(r['eval_loss']) > 0 for r in rows)
  assert sum(r['final'] == 'True' for r in rows) == 6
  out = os.path.join(sweep_dir, 'fits')
  with open(os.path.join(out, 'fits.json')) as f:
    fits = json.load(f)
  for key in ('E', 'A', 'B', 'alpha', 'beta', 'a', 'b'):
    assert key in fits['chinchilla']['approach3'], sorted(fits['chinchilla']['approach3'])
  assert 'L_ND' in fits['kaplan'], sorted(fits['kaplan'])
  assert sorted(p for p in os.listdir(out) if p.endswith('.png')), os.listdir(out)


@pytest.mark.parametrize('binding,reason', [
    ('adamw.b2 = 0.99', "No configurable matching 'adamw'"),
    ('MeshConfig.fsdp = 7', 'mesh (data=-1, fsdp=7, tensor=1) does not fit'),
])
def test_a_run_binding_no_point_can_use_fails_at_start_up_with_one_line(tmp_path, binding,
                                                                         reason):
  sweep_dir = tmp_path / 'sweep'
  proc = subprocess.run(
      _sweep_cmd(_gin(tmp_path), sweep_dir,
                 f"--gin_bindings=sweep.SweepConfig.run_bindings = ['{binding}']"),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('sweep.py: error: no point of the grid can run (2 left out)')
  assert reason in lines[0]
  assert not sweep_dir.exists()  # nothing written


def test_a_missing_gin_file_or_a_file_as_sweep_dir_fails_in_one_line(tmp_path):
  a_file = tmp_path / 'a_file'
  a_file.write_text('')
  for cmd, message in (
      (_sweep_cmd(str(tmp_path / 'nope.gin'), tmp_path / 'sweep'), '--gin_file'),
      (_sweep_cmd(_gin(tmp_path), a_file), 'is a file, not a directory')):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith('sweep.py: error: ') and message in lines[0]


@pytest.mark.parametrize('flag,message', [
    ('--gin_bindings=sweep.SweepConfig.flop_budgets = [-1]',
     'bad sweep config: SweepConfig.flop_budgets must be positive, got -1'),
    ('--parallel=0', '--parallel must be positive, got 0'),
])
def test_a_budget_or_parallelism_of_zero_or_less_fails_in_one_line(tmp_path, flag, message):
  sweep_dir = tmp_path / 'sweep'
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'sweep.py'),
       '--gin_file=gin_configs/sweeps/ci.gin', f'--sweep_dir={sweep_dir}', flag],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and lines == [f'sweep.py: error: {message}'], proc.stderr[-2000:]
  assert not sweep_dir.exists()
